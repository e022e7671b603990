"""Connection files (ConnectionInfo) and the kernelspec model (KernelSpec)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.connect import write_connection_file
from jupyter_client.kernelspec import KernelSpec as JupyterKernelSpec

import kernelsdk.protocol
from kernelsdk import BaseKernel, ConfigError, ConnectionInfo, KernelSpec

FULL: dict[str, Any] = {
    "shell_port": 57503,
    "iopub_port": 40885,
    "stdin_port": 52597,
    "control_port": 50160,
    "hb_port": 42540,
    "ip": "127.0.0.1",
    "key": "a0436f6c-1916-498b-8eb9-e81ab9368e84",
    "transport": "tcp",
    "signature_scheme": "hmac-sha256",
    "kernel_name": "mykernel",
}
PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- from_dict ------------------------------------------------------------------------------------


def test_from_dict_full() -> None:
    info = ConnectionInfo.from_dict({**FULL, "unknown_key": [1], "curve_future": "x"})
    assert info.transport == "tcp"
    assert info.ip == "127.0.0.1"
    assert info.ports == {name: FULL[name] for name in PORTS}
    assert info.key == FULL["key"]
    assert info.signature_scheme == "hmac-sha256"
    assert info.kernel_name == "mykernel"
    assert info.to_dict() == FULL


def test_defaults() -> None:
    info = ConnectionInfo.from_dict({})
    assert info.transport == "tcp"
    assert info.ip == "127.0.0.1"
    assert set(info.ports.values()) == {0}
    assert info.key == ""
    assert info.signature_scheme == "hmac-sha256"


def test_string_ports() -> None:
    info = ConnectionInfo.from_dict({**FULL, **{name: str(FULL[name]) for name in PORTS}})
    assert info.ports == {name: FULL[name] for name in PORTS}
    assert all(type(p) is int for p in info.ports.values())
    assert ConnectionInfo.from_dict({"shell_port": "0"}).shell_port == 0
    assert ConnectionInfo.from_dict({"hb_port": "65535"}).hb_port == 65535


@pytest.mark.parametrize(
    "transport_fields",
    [{"transport": "ipc"}, {"transport": "ipc", "ip": ""}],
    ids=["no-ip", "empty-ip"],
)
def test_ipc_default_prefix(transport_fields: dict[str, Any]) -> None:
    info = ConnectionInfo.from_dict({**transport_fields, "shell_port": 1, "hb_port": "5"})
    assert info.ip == "kernel-ipc"
    assert info.endpoint("shell_port") == "ipc://kernel-ipc-1"
    assert info.endpoint("hb_port") == "ipc://kernel-ipc-5"


def test_ipc_explicit_prefix() -> None:
    info = ConnectionInfo.from_dict(
        {"transport": "ipc", "ip": "/tmp/k/kernel-1-ipc", "iopub_port": 2}
    )
    assert info.endpoint("iopub_port") == "ipc://" + "/tmp/k/kernel-1-ipc-2"


def test_tcp_endpoints() -> None:
    info = ConnectionInfo.from_dict(FULL)
    for name in PORTS:
        assert info.endpoint(name) == f"tcp://127.0.0.1:{FULL[name]}"
    assert ConnectionInfo(ip="0.0.0.0", control_port=9).endpoint("control_port") == (
        "tcp://0.0.0.0:9"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"shell_port": -1},
        {"iopub_port": 65536},
        {"stdin_port": "abc"},
        {"stdin_port": ""},
        {"control_port": "12.5"},
        {"hb_port": 1.5},
        {"hb_port": None},
        {"shell_port": True},
        {"shell_port": [1]},
        {"transport": "udp"},
        {"transport": "inproc"},
        {"transport": "TCP"},
    ],
    ids=repr,
)
def test_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ConnectionInfo.from_dict({**FULL, **bad})


@pytest.mark.parametrize("not_a_dict", [[], "x", None, 3])
def test_not_a_dict(not_a_dict: Any) -> None:
    with pytest.raises(ConfigError):
        ConnectionInfo.from_dict(not_a_dict)


@pytest.mark.parametrize("bad", [{"key": 123}, {"ip": None}, {"signature_scheme": 256}], ids=repr)
def test_non_string_fields_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ConnectionInfo.from_dict({**FULL, **bad})


def test_with_ports() -> None:
    info = ConnectionInfo.from_dict({**FULL, "shell_port": 0})
    new = info.with_ports(shell_port=1234, hb_port="4321")  # type: ignore[arg-type]
    assert new.shell_port == 1234
    assert new.hb_port == 4321
    assert info.shell_port == 0  # frozen: the original is unchanged
    with pytest.raises(ConfigError):
        info.with_ports(shell_port=70000)


# -- files -----------------------------------------------------------------------------------------


def test_from_file_reads_jupyter_client_files(tmp_path: Path) -> None:
    path = tmp_path / "kernel-1.json"
    fname, cfg = write_connection_file(
        str(path), key=b"secret-key", signature_scheme="hmac-sha512", kernel_name="echo"
    )
    info = ConnectionInfo.from_file(fname)
    assert info.key == "secret-key"
    assert info.signature_scheme == "hmac-sha512"
    assert info.kernel_name == "echo"
    assert info.transport == "tcp"
    assert info.ip == cfg["ip"]
    ports: dict[str, Any] = dict(cfg)
    assert info.ports == {name: ports[name] for name in PORTS}
    assert all(p > 0 for p in info.ports.values())


def test_from_file_ipc_jupyter_client(tmp_path: Path) -> None:
    path = tmp_path / "kernel-2.json"
    prefix = str(tmp_path / "kipc")
    fname, cfg = write_connection_file(str(path), transport="ipc", ip=prefix, key=b"k")
    info = ConnectionInfo.from_file(fname)
    assert info.transport == "ipc"
    assert info.endpoint("shell_port") == f"ipc://{prefix}-{cfg['shell_port']}"


def test_from_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        ConnectionInfo.from_file(tmp_path / "missing.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ConfigError):
        ConnectionInfo.from_file(bad_json)
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError):
        ConnectionInfo.from_file(a_list)
    bad_port = tmp_path / "port.json"
    bad_port.write_text(json.dumps({**FULL, "shell_port": "x"}), encoding="utf-8")
    with pytest.raises(ConfigError):
        ConnectionInfo.from_file(bad_port)
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(b'{"key": "\xe9"}')
    with pytest.raises(ConfigError):
        ConnectionInfo.from_file(not_utf8)
    with pytest.raises(ConfigError):
        ConnectionInfo.from_file(tmp_path)  # a directory


def test_write_round_trip_and_permissions(tmp_path: Path, umask_022: None) -> None:
    info = ConnectionInfo.from_dict(FULL)
    path = tmp_path / "conn.json"
    info.write(path)
    assert mode(path) == 0o600
    assert ConnectionInfo.from_file(path) == info
    assert json.loads(path.read_text(encoding="utf-8")) == FULL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conn.json"]  # no temp file left


def test_write_replaces_a_world_readable_file(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "conn.json"
    path.write_text("{}", encoding="utf-8")
    path.chmod(0o644)
    ConnectionInfo.from_dict(FULL).with_ports(shell_port=1).write(path)
    assert mode(path) == 0o600
    assert ConnectionInfo.from_file(path).shell_port == 1


def test_write_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "conn.json"
        ConnectionInfo.from_dict(FULL).write(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_write_is_private_even_with_a_stale_temp_file(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "conn.json"
    stale = tmp_path / "conn.json.tmp"
    stale.write_text("", encoding="utf-8")
    stale.chmod(0o644)
    ConnectionInfo.from_dict(FULL).write(path)
    assert mode(path) == 0o600


def test_written_file_is_readable_by_jupyter_client(tmp_path: Path) -> None:
    from jupyter_client.connect import ConnectionFileMixin

    path = tmp_path / "conn.json"
    ConnectionInfo.from_dict(FULL).write(path)
    mixin = ConnectionFileMixin()
    mixin.load_connection_file(str(path))
    assert mixin.session.key == FULL["key"].encode()
    assert mixin.session.signature_scheme == "hmac-sha256"
    assert mixin.shell_port == FULL["shell_port"]
    assert mixin.hb_port == FULL["hb_port"]
    assert mixin.ip == "127.0.0.1"


# -- CurveZMQ keys (JEP 145) ----------------------------------------------------------------------

# A key pair from zmq.curve_keypair(), fixed so that the core's tests need no libsodium.
PUBLIC = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
SECRET = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"


def test_curve_keys_read_from_a_jupyter_client_file(tmp_path: Path) -> None:
    fname, _ = write_connection_file(
        str(tmp_path / "k.json"), curve_publickey=PUBLIC.encode(), curve_secretkey=SECRET.encode()
    )
    info = ConnectionInfo.from_file(fname)
    assert (info.curve_publickey, info.curve_secretkey) == (PUBLIC, SECRET)
    assert info.encrypted and not info.plaintext_on_network
    assert SECRET not in repr(info)


def test_curve_keys_round_trip_and_stay_absent_when_unset(tmp_path: Path) -> None:
    from jupyter_client.connect import ConnectionFileMixin

    encrypted = {**FULL, "curve_publickey": PUBLIC, "curve_secretkey": SECRET}
    assert ConnectionInfo.from_dict(encrypted).to_dict() == encrypted
    assert "curve_publickey" not in ConnectionInfo.from_dict(FULL).to_dict()
    path = tmp_path / "conn.json"
    ConnectionInfo.from_dict(encrypted).write(path)
    mixin = ConnectionFileMixin()
    mixin.load_connection_file(str(path))
    assert (mixin.curve_publickey, mixin.curve_secretkey) == (PUBLIC.encode(), SECRET.encode())


def test_plaintext_on_network_is_tcp_without_keys() -> None:
    assert ConnectionInfo.from_dict(FULL).plaintext_on_network
    assert not ConnectionInfo.from_dict({**FULL, "transport": "ipc"}).plaintext_on_network


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"curve_publickey": PUBLIC}, "has curve_publickey but no curve_secretkey"),
        ({"curve_secretkey": SECRET}, "has curve_secretkey but no curve_publickey"),
        ({"curve_publickey": PUBLIC, "curve_secretkey": SECRET[:-1]}, "got 39 characters"),
        ({"curve_publickey": PUBLIC[:-1] + "~", "curve_secretkey": SECRET}, "outside Z85"),
        ({"curve_publickey": 5, "curve_secretkey": SECRET}, "must be a string"),
    ],
    ids=["public only", "secret only", "short", "not z85", "not a string"],
)
def test_malformed_curve_keys_are_clear_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        ConnectionInfo.from_dict({**FULL, **fields})
    assert SECRET[:-1] not in str(caught.value)


# -- kernelspec model ----------------------------------------------------------------------------


def test_protocol_version_is_5_5_everywhere() -> None:
    assert kernelsdk.protocol.PROTOCOL_VERSION == "5.5"
    spec = KernelSpec(
        argv=["python", "-m", "k", "-f", "{connection_file}"], display_name="K", language="k"
    )
    d = spec.to_dict()
    assert d["kernel_protocol_version"] == kernelsdk.protocol.PROTOCOL_VERSION == "5.5"
    assert BaseKernel().kernel_info()["protocol_version"] == "5.5"


def test_kernelspec_to_dict() -> None:
    spec = KernelSpec(argv=["run", "{connection_file}"], display_name="Ké", language="lua")
    assert spec.to_dict() == {
        "argv": ["run", "{connection_file}"],
        "display_name": "Ké",
        "language": "lua",
        "interrupt_mode": "signal",
        "kernel_protocol_version": "5.5",
    }
    full = KernelSpec(
        argv=["run"],
        display_name="K",
        language="lua",
        interrupt_mode="message",
        env={"A": "1"},
        metadata={"debugger": False},
    )
    d = full.to_dict()
    assert d["interrupt_mode"] == "message"
    assert d["env"] == {"A": "1"}
    assert d["metadata"] == {"debugger": False}
    assert KernelSpec.from_dict(d) == full
    json.dumps(d)  # JSON-serializable as is


@pytest.mark.parametrize("mode_", ["Signal", "sigint", "", "none", None])
def test_invalid_interrupt_mode(mode_: Any) -> None:
    with pytest.raises(ConfigError):
        KernelSpec(argv=["x"], display_name="x", language="x", interrupt_mode=mode_)
    with pytest.raises(ConfigError):
        KernelSpec.from_dict(
            {"argv": ["x"], "display_name": "x", "language": "x", "interrupt_mode": mode_}
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"argv": []},
        {"argv": ["ok", 3]},
        {"argv": None},
        {"argv": 5},
        {"display_name": None, "drop": "display_name"},
        {"drop": "language"},
        {"drop": "argv"},
        {"env": 5},
    ],
    ids=repr,
)
def test_invalid_kernelspec_dicts(bad: dict[str, Any]) -> None:
    d: dict[str, Any] = {"argv": ["x"], "display_name": "x", "language": "x"}
    d.update({k: v for k, v in bad.items() if k != "drop"})
    d.pop(bad.get("drop", ""), None)
    with pytest.raises(ConfigError):
        KernelSpec.from_dict(d)


def test_kernelspec_readable_by_jupyter_client(tmp_path: Path) -> None:
    spec = KernelSpec(
        argv=["python", "-m", "k", "-f", "{connection_file}"],
        display_name="K",
        language="k",
        interrupt_mode="message",
        env={"X": "y"},
    )
    (tmp_path / "kernel.json").write_text(json.dumps(spec.to_dict()), encoding="utf-8")
    theirs = JupyterKernelSpec.from_resource_dir(str(tmp_path))
    assert theirs.argv == spec.argv
    assert theirs.display_name == "K"
    assert theirs.language == "k"
    assert theirs.interrupt_mode == "message"
    assert theirs.env == {"X": "y"}
    assert theirs.kernel_protocol_version == "5.5"
