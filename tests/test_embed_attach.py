"""Embedded kernels' connection files and the attach provisioner (issue 11).

The file helpers are tested on a private runtime dir (``JUPYTER_RUNTIME_DIR`` under
``tmp_path``); "dead" hosts are real processes that have exited and been reaped.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning import KernelProvisionerFactory

from kernelsdk._cli import main
from kernelsdk._connection import ConnectionInfo
from kernelsdk._exceptions import ConfigError
from kernelsdk._install import attach_kernelspec, kernel_of
from kernelsdk.embed._files import (
    EmbeddedRecord,
    connection_file_path,
    find_embedded,
    host_alive,
    read_record,
    remove_connection_file,
    validate_name,
    write_connection_file,
)

INFO = ConnectionInfo(
    shell_port=5001,
    iopub_port=5002,
    stdin_port=5003,
    control_port=5004,
    hb_port=5005,
    key="k3y",
)


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(directory))
    return directory


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


# -- connection files ----------------------------------------------------------------------------


def test_write_is_a_private_connection_file_in_a_private_runtime_dir(runtime_dir: Path) -> None:
    path = write_connection_file(INFO, "sim", started=123.5, host="heat")
    assert path == runtime_dir / f"kernelsdk-embed-sim-{os.getpid()}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["kernel_name"] == "attach-sim"
    assert data["kernelsdk_embed"] == {
        "name": "sim",
        "pid": os.getpid(),
        "started": 123.5,
        "host": "heat",
    }
    assert [p.name for p in runtime_dir.iterdir()] == [path.name]  # no temp file left


def test_extra_keys_are_accepted_by_kernelsdk_and_jupyter_client(runtime_dir: Path) -> None:
    path = write_connection_file(INFO, "sim")
    assert ConnectionInfo.from_file(path) == ConnectionInfo.from_dict(
        {**INFO.to_dict(), "kernel_name": "attach-sim"}
    )
    km = KernelManager()
    km.load_connection_file(str(path))
    assert (km.shell_port, km.hb_port, km.session.key) == (5001, 5005, b"k3y")
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    assert (client.iopub_port, client.control_port, client.ip) == (5002, 5004, "127.0.0.1")


def test_rewrite_replaces_the_file(runtime_dir: Path) -> None:
    write_connection_file(INFO, "sim")
    path = write_connection_file(INFO.with_ports(shell_port=6001), "sim")
    assert ConnectionInfo.from_file(path).shell_port == 6001
    assert len(list(runtime_dir.iterdir())) == 1


def test_explicit_path(runtime_dir: Path, tmp_path: Path) -> None:
    path = write_connection_file(INFO, "sim", path=tmp_path / "mine.json")
    assert path == tmp_path / "mine.json"
    assert read_record(path).name == "sim"
    assert find_embedded("sim") == []  # only the runtime dir is searched


def test_remove_is_idempotent(runtime_dir: Path) -> None:
    path = write_connection_file(INFO, "sim")
    remove_connection_file(path)
    assert not path.exists()
    remove_connection_file(path)


@pytest.mark.parametrize("name", ["", "a b", "../x", "x/y", "é", "a" * 65, ".", "..", "sim\n", 3])
def test_bad_names_are_refused_with_a_clear_error(name: object, runtime_dir: Path) -> None:
    with pytest.raises(ValueError, match="embedded kernel"):
        validate_name(name)
    with pytest.raises(ValueError, match="embedded kernel"):
        write_connection_file(INFO, name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embedded kernel"):
        find_embedded(name)  # type: ignore[arg-type]
    assert not runtime_dir.exists() or not list(runtime_dir.iterdir())


@pytest.mark.parametrize("name", ["sim", "Heat_2D.v1", "a" * 64, "-x", "0"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


def test_unwritable_place_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="cannot write the connection file of embedded kernel"):
        write_connection_file(INFO, "sim", path=tmp_path / "a-file" / "f.json")


# -- finding live kernels -------------------------------------------------------------------------


def test_find_newest_live_first_dead_and_others_skipped(runtime_dir: Path) -> None:
    me, parent, now = os.getpid(), os.getppid(), time.time()
    old = write_connection_file(INFO, "sim", pid=parent, started=now)
    new = write_connection_file(INFO.with_ports(shell_port=7001), "sim", pid=me, started=now + 1)
    dead = write_connection_file(INFO, "sim", pid=dead_pid(), started=now + 2)
    write_connection_file(INFO, "sim-2", started=now + 3)  # a longer name the glob also matches
    write_connection_file(INFO, "other", started=now + 4)
    (runtime_dir / "kernelsdk-embed-sim-1.json").write_text("{not json")
    (runtime_dir / "kernelsdk-embed-sim-2.json").write_text('{"shell_port": 1}')
    found = find_embedded("sim")
    assert [r.path for r in found] == [new, old]
    assert found[0] == EmbeddedRecord(
        path=new,
        pid=me,
        started=now + 1,
        name="sim",
        host=os.path.basename(sys.argv[0]),
        info=ConnectionInfo.from_file(new),
    )
    assert found[0].info.shell_port == 7001
    assert dead.exists()  # skipped, not deleted
    assert find_embedded("nothing") == []


def test_find_in_a_missing_runtime_dir(runtime_dir: Path) -> None:
    assert find_embedded("sim") == []


def test_host_alive() -> None:
    assert host_alive(os.getpid())
    assert not host_alive(dead_pid())
    assert not host_alive(2**40)


def test_a_reused_pid_is_not_the_host(runtime_dir: Path) -> None:
    # The parent started before this process; a file claiming it started long before that
    # (at the epoch) was written by a host that died, whose pid the parent now has.
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("needs Linux's /proc")
    assert not host_alive(os.getpid(), started=1.0)
    write_connection_file(INFO, "sim", started=1.0)
    assert find_embedded("sim") == []


def test_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Wait for the exit without reaping: waitid with WNOWAIT leaves the zombie.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        assert not host_alive(proc.pid)
    finally:
        proc.wait()


def test_read_record_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_record(tmp_path / "none.json")
    plain = tmp_path / "plain.json"
    INFO.write(plain)
    with pytest.raises(ConfigError, match="not the connection file of an embedded kernel"):
        read_record(plain)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**INFO.to_dict(), "kernelsdk_embed": {"name": "x", "pid": True}}))
    with pytest.raises(ConfigError, match="bad 'kernelsdk_embed'"):
        read_record(bad)
    assert connection_file_path("x", 42).name == "kernelsdk-embed-x-42.json"


# -- install --attach -----------------------------------------------------------------------------


def test_install_attach_writes_a_kernelspec_jupyter_client_finds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "p"
    assert main(["install", "--attach", "Sim.2", "--prefix", str(prefix)]) == 0
    dest = prefix / "share" / "jupyter" / "kernels" / "attach-sim.2"
    assert str(dest) in capsys.readouterr().out
    ksm = KernelSpecManager(kernel_dirs=[str(dest.parent)])
    spec = ksm.get_kernel_spec("attach-sim.2")
    assert spec.display_name == "Attach: Sim.2"
    assert spec.language == "python"
    assert spec.metadata["kernel_provisioner"] == {
        "provisioner_name": "kernelsdk-attach",
        "config": {"name": "Sim.2"},
    }
    assert KernelProvisionerFactory.instance().is_provisioner_available(spec)
    # The placeholder argv, if anything runs it, fails with a message saying why.
    proc = subprocess.run(spec.argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "kernelsdk-attach provisioner" in proc.stderr and "'Sim.2'" in proc.stderr

    assert main(["list"]) == 0  # shown in its own section, not as an unavailable kernel
    assert main(["remove", "attach-sim.2", "--prefix", str(prefix)]) == 0
    assert not dest.exists()


def test_install_attach_options(tmp_path: Path) -> None:
    prefix = str(tmp_path / "p")
    argv = ["install", "--attach", "sim", "--prefix", prefix, "--name", "heat"]
    assert main([*argv, "--display-name", "Heat run", "--language", "c"]) == 0
    spec = json.loads((tmp_path / "p/share/jupyter/kernels/heat/kernel.json").read_text())
    assert (spec["display_name"], spec["language"]) == ("Heat run", "c")
    assert kernel_of(tmp_path / "p/share/jupyter/kernels/heat") == "--attach sim"
    assert main(argv) == 2  # exists
    assert main([*argv, "--replace"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attach", "a b"], "invalid embedded kernel name 'a b'"),
        (["--attach", "sim", "echo"], "--attach NAME takes no KERNEL"),
        (["--attach", "sim", "--mpi", "2"], "--attach NAME takes no KERNEL, --mpi"),
    ],
)
def test_install_attach_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", *argv, "--prefix", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "share").exists()


def test_attach_kernelspec_refuses_bad_names() -> None:
    with pytest.raises(ConfigError, match="invalid embedded kernel name"):
        attach_kernelspec("../x")
