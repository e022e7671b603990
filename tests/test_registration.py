"""The startup handshake (JEP 66): the sans-IO messages, and a real kernel process that
registers its ports with a real ZeroMQ registrar, then serves a real jupyter_client."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from conftest import JupyterEnv
from jupyter_client.blocking.client import BlockingKernelClient

from kernelsdk import ConnectionInfo, RemoteProtocolError
from kernelsdk.protocol import DELIMITER, Registration, Session

KEY = b"a-key"
PORTS = {"shell_port": 5001, "iopub_port": 5002, "stdin_port": 5003, "control_port": 5004}
PORTS["hb_port"] = 5005
TIMEOUT = 30  # only reached when something hangs


# -- the messages ---------------------------------------------------------------------------


def test_registration_round_trip_signs_the_content_frame_only() -> None:
    session = Session(KEY, "hmac-sha256")
    frames = Registration("k1", PORTS).to_frames(session)
    assert frames[0] == DELIMITER and len(frames) == 3
    content = json.loads(frames[2])
    assert content == {"kernel_id": "k1", **{k: str(v) for k, v in PORTS.items()}}
    assert frames[1] == hmac.new(KEY, frames[2], hashlib.sha256).hexdigest().encode()
    registration, identities = Registration.from_frames(session, [b"peer", *frames])
    assert registration == Registration("k1", PORTS)
    assert identities == [b"peer"]


def test_registrar_accepts_integer_ports() -> None:
    session = Session(KEY, "hmac-sha512")
    content = json.dumps({"kernel_id": "k", **PORTS}).encode()
    frames = [b"id", DELIMITER, session.sign([content]), content]
    assert Registration.from_frames(session, frames)[0].ports == PORTS


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([b"id", b"no delimiter"], "no <IDS|MSG>"),
        ([DELIMITER, b"sig"], "1 frames after"),
        ([DELIMITER, b"bad", b'{"kernel_id": "k"}'], "invalid signature"),
    ],
)
def test_registrar_rejects_malformed_frames(frames: list[bytes], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        Registration.from_frames(Session(KEY), frames)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "undecodable"),
        (b"[]", "kernel_id"),
        (json.dumps({"kernel_id": 3, **PORTS}).encode(), "kernel_id"),
        (json.dumps({"kernel_id": "k", **PORTS, "hb_port": "x"}).encode(), "hb_port"),
        (json.dumps({"kernel_id": "k", **PORTS, "shell_port": 0}).encode(), "shell_port"),
        (json.dumps({"kernel_id": "k", **PORTS, "stdin_port": True}).encode(), "stdin_port"),
        (json.dumps({"kernel_id": "k"}).encode(), "shell_port"),
    ],
)
def test_registrar_rejects_bad_content(content: bytes, message: str) -> None:
    session = Session(KEY)
    with pytest.raises(RemoteProtocolError, match=message):
        Registration.from_frames(session, [DELIMITER, session.sign([content]), content])


def test_ack_round_trip_and_forgery() -> None:
    session = Session(KEY)
    ack = Registration.ack_frames(session, [b"peer"])
    assert ack[0] == b"peer"
    Registration.check_ack(session, ack[1:])  # what the kernel's DEALER receives
    with pytest.raises(RemoteProtocolError, match="invalid signature"):
        Registration.check_ack(Session(b"other key"), ack[1:])
    Registration.check_ack(Session(), [DELIMITER, b"", b"{}"])  # unsigned: nothing to check


# -- the registration file ------------------------------------------------------------------


def test_registration_file_fields() -> None:
    info = ConnectionInfo.from_dict(
        {
            "kernel_id": "k",
            "transport": "tcp",
            "registration_ip": "127.0.0.1",
            "registration_port": "4000",  # a string in xeus's files, an int in the docs
            "signature_scheme": "hmac-sha256",
            "key": "x",
        }
    )
    assert info.registers and info.ip == "127.0.0.1"
    assert info.registration_endpoint == "tcp://127.0.0.1:4000"
    assert set(info.ports.values()) == {0}  # the kernel chooses
    classic = info.connection_file()
    assert not classic.registers
    assert "registration_ip" not in classic.to_dict()
    assert classic.to_dict()["kernel_id"] == "k"
    assert "kernel_id" not in ConnectionInfo().to_dict()  # classic files keep their fields
    ipc = ConnectionInfo(transport="ipc", registration_ip="/tmp/r", registration_port=7)
    assert ipc.registration_endpoint == "ipc:///tmp/r-7"


# -- a real kernel process --------------------------------------------------------------------


class Registrar:
    """The client's end: a ROUTER the kernel's DEALER reports to."""

    def __init__(self, tmp_path: Path, transport: str = "tcp") -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        if transport == "tcp":
            port = self.router.bind_to_random_port("tcp://127.0.0.1")
            ip = "127.0.0.1"
        else:
            ip, port = str(tmp_path / "reg"), 1
            self.router.bind(f"ipc://{ip}-{port}")
        self.kernel_id = str(uuid.uuid4())
        self.key = str(uuid.uuid4())
        self.session = Session(self.key.encode())
        self.file = tmp_path / "kernel-registration.json"
        self.file.write_text(
            json.dumps(
                {
                    "kernel_id": self.kernel_id,
                    "transport": transport,
                    "registration_ip": ip,
                    "registration_port": port,
                    "signature_scheme": "hmac-sha256",
                    "key": self.key,
                }
            )
        )

    def receive(self) -> tuple[Registration, list[bytes]]:
        assert self.router.poll(TIMEOUT * 1000), "the kernel never registered"
        return Registration.from_frames(self.session, self.router.recv_multipart())

    def close(self) -> None:
        self.router.close()
        self.ctx.term()


@pytest.fixture
def kernel_process(jupyter_env: JupyterEnv) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()


def launch(procs: list[subprocess.Popen[str]], file: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "kernelsdk", "run", "echo", "-f", str(file)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc


def wait_for_connection_file(path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        written: dict[str, Any] = json.loads(path.read_text())  # replaced atomically
        if "shell_port" in written:
            return written
        time.sleep(0.01)
    raise AssertionError(f"{path} still holds no ports")


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_kernel_registers_its_ports_and_serves_them(
    tmp_path: Path, kernel_process: list[subprocess.Popen[str]], transport: str
) -> None:
    registrar = Registrar(tmp_path, transport)
    try:
        proc = launch(kernel_process, registrar.file)
        registration, identities = registrar.receive()
        assert registration.kernel_id == registrar.kernel_id
        registrar.router.send_multipart(Registration.ack_frames(registrar.session, identities))
        # What the kernel leaves for other clients, once registered: a classic connection
        # file, with the same ports.
        written = wait_for_connection_file(registrar.file)
        assert {k: written[k] for k in registration.ports} == dict(registration.ports)
        assert "registration_port" not in written and written["key"] == registrar.key
        kc = BlockingKernelClient()
        kc.load_connection_info(written)
        kc.start_channels()
        try:
            reply = kc.kernel_info(reply=True, timeout=TIMEOUT)
            assert reply["content"]["status"] == "ok"
            reply = kc.execute("hello", reply=True, timeout=TIMEOUT)
            assert reply["content"]["status"] == "ok"
            kc.shutdown()
            assert proc.wait(TIMEOUT) == 0
        finally:
            kc.stop_channels()
    finally:
        registrar.close()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (None, "did not acknowledge within 5.0 s"),
        (b"not the key", "answered badly: registration acknowledgement: invalid signature"),
    ],
    ids=["no-ack", "forged-ack"],
)
def test_kernel_exits_with_a_clear_error_without_a_valid_ack(
    tmp_path: Path,
    kernel_process: list[subprocess.Popen[str]],
    answer: bytes | None,
    error: str,
) -> None:
    registrar = Registrar(tmp_path)
    try:
        proc = launch(kernel_process, registrar.file)
        _, identities = registrar.receive()
        if answer is not None:  # an acknowledgement signed with another key
            registrar.router.send_multipart(Registration.ack_frames(Session(answer), identities))
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode != 0
        assert error in stderr and "Traceback" not in stderr, stderr
        # The registration file is still there, for a retry.
        assert json.loads(registrar.file.read_text())["registration_ip"] == "127.0.0.1"
    finally:
        registrar.close()
