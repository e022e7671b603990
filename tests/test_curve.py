"""Encrypted transport (CurveZMQ, JEP 145) on real sockets, with jupyter_client's own manager
and client in ``required`` mode, and with clients that must get nothing."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import zmq
from conftest import JupyterEnv, KernelPair, drain_iopub
from jupyter_client.manager import KernelManager, _ShutdownStatus
from jupyter_client.session import Session as JupyterSession
from kernelsdk_echo import EchoKernel
from test_registration import (
    Registrar,
    kernel_process,  # noqa: F401 (a fixture)
    launch,
    wait_for_connection_file,
)

from kernelsdk import ConnectionInfo, TransportError, open_kernel
from kernelsdk._runtime import PLAINTEXT_WARNING, QUIET_PLAINTEXT_ENV
from kernelsdk._zmq_transport import ZmqTransport
from kernelsdk.protocol import Registration

pytestmark = pytest.mark.skipif(
    not zmq.has("curve"), reason="this pyzmq's libzmq was built without CURVE (libsodium)"
)

TIMEOUT = 30  # only reached when something hangs
SILENCE = 1.0  # how long a client that must get nothing listens


@pytest.fixture(scope="module")
def probe_curve(jupyter_env: JupyterEnv) -> str:
    """The probe kernel (message-mode interrupts) with a kernelspec that declares CURVE."""
    source = json.loads((jupyter_env.kernels_dir / "probe-msg" / "kernel.json").read_text())
    spec = {**source, "metadata": {"supported_encryption": ["curve"]}}
    target = jupyter_env.kernels_dir / "probe-curve"
    target.mkdir(exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(spec))
    return "probe-curve"


def started_encrypted(start_kernel: Any, name: str, transport: str = "tcp") -> KernelPair:
    km, kc = start_kernel(name, transport, transport_encryption="required")
    info = km.get_connection_info()
    assert info["curve_publickey"] and info["curve_secretkey"]
    return km, kc


def execute(kc: Any, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The reply to ``code`` and its IOPub messages, through busy ... idle."""
    msg_id = kc.execute(code)
    reply = shell_reply(kc, msg_id)
    outputs = []
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        outputs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply, outputs


def shell_reply(kc: Any, msg_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The reply to ``msg_id``, skipping replies to earlier requests (wait_for_ready's)."""
    deadline = time.monotonic() + timeout
    while True:
        reply: dict[str, Any] = kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def wait_for_input(kc: Any, msg_id: str) -> None:
    """Until the cell ``msg_id`` runs (its execute_input is on IOPub)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            return


# -- jupyter_client in required mode --------------------------------------------------------


def test_installed_kernelspec_declares_curve(jupyter_env: JupyterEnv) -> None:
    spec = json.loads((jupyter_env.kernels_dir / "echo" / "kernel.json").read_text())
    assert spec["metadata"]["supported_encryption"] == ["curve"]
    km = KernelManager(kernel_name="echo")
    assert km._kernel_supports_curve_encryption()  # the manager's own test of the spec


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_required_mode_execute_and_shutdown(start_kernel: Any, transport: str) -> None:
    km, kc = started_encrypted(start_kernel, "echo", transport)
    written = json.loads(Path(km.connection_file).read_text())
    assert written["curve_publickey"] == km.curve_publickey.decode()
    reply, outputs = execute(kc, "hello, encrypted")
    assert reply["content"]["status"] == "ok"
    assert "hello, encrypted" in json.dumps([m["content"] for m in outputs])
    assert kc.is_alive() and kc.hb_channel.is_beating()
    proc = km.provisioner.process
    kc.stop_channels()
    km.shutdown_kernel(now=False)  # interrupt + shutdown_request, both on encrypted control
    assert km._shutdown_status == _ShutdownStatus.ShutdownRequest
    assert proc.returncode == 0


def test_required_mode_interrupt_and_restart(start_kernel: Any, probe_curve: str) -> None:
    km, kc = started_encrypted(start_kernel, probe_curve)
    for _ in range(2):
        msg_id = kc.execute("sleep 30")
        wait_for_input(kc, msg_id)
        km.interrupt_kernel()  # an interrupt_request on control: message mode
        reply = shell_reply(kc, msg_id, timeout=20)  # the cell alone would take 30 s
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    keys = (km.curve_publickey, km.curve_secretkey)
    km.restart_kernel(now=False)  # the same keys, from the same connection file
    assert (km.curve_publickey, km.curve_secretkey) == keys
    kc.wait_for_ready(timeout=TIMEOUT)
    drain_iopub(kc, 0.2)
    reply, _ = execute(kc, "print after restart")
    assert reply["content"]["status"] == "ok"


# -- clients without the key get nothing, and the kernel keeps serving ------------------------


def _raw_socket(ctx: zmq.Context[Any], kind: int, url: str, serverkey: bytes | None) -> Any:
    sock = ctx.socket(kind)
    sock.linger = 0
    if serverkey is not None:
        public, secret = zmq.curve_keypair()
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = serverkey
    sock.connect(url)
    return sock


@pytest.mark.parametrize("client", ["plain", "wrong key"])
def test_client_without_the_key_gets_nothing(start_kernel: Any, client: str) -> None:
    km, kc = started_encrypted(start_kernel, "echo")
    info = km.get_connection_info()
    serverkey = None if client == "plain" else zmq.curve_keypair()[0]
    session = JupyterSession(key=info["key"], signature_scheme=info["signature_scheme"])
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        url = f"tcp://{info['ip']}:{{}}"
        shell = _raw_socket(ctx, zmq.DEALER, url.format(info["shell_port"]), serverkey)
        control = _raw_socket(ctx, zmq.DEALER, url.format(info["control_port"]), serverkey)
        iopub = _raw_socket(ctx, zmq.SUB, url.format(info["iopub_port"]), serverkey)
        iopub.subscribe(b"")
        heartbeat = _raw_socket(ctx, zmq.REQ, url.format(info["hb_port"]), serverkey)
        # Even a correctly signed request: without the key, the handshake never completes.
        session.send(shell, "execute_request", {"code": "stolen", "silent": False})
        session.send(control, "kernel_info_request", {})
        heartbeat.send(b"ping")
        # The right client works meanwhile, so IOPub has output that the intruder could see.
        reply, _ = execute(kc, "visible only to the key holder")
        assert reply["content"]["status"] == "ok"
        for sock in (shell, control, iopub, heartbeat):
            assert not sock.poll(SILENCE * 1000), f"{client} client got a message"
        for sock in (shell, control, iopub, heartbeat):
            sock.close()
    finally:
        ctx.term()
    # The kernel survived it and still serves the key holder, on every channel.
    assert km.is_alive()
    reply, _ = execute(kc, "still here")
    assert reply["content"]["status"] == "ok"
    assert kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
    assert kc.hb_channel.is_beating()


def test_heartbeat_answers_only_encrypted_pings(start_kernel: Any) -> None:
    km, _ = started_encrypted(start_kernel, "echo")
    info = km.get_connection_info()
    url = f"tcp://{info['ip']}:{info['hb_port']}"
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        for serverkey, answers in (
            (None, False),
            (zmq.curve_keypair()[0], False),
            (km.curve_publickey, True),
        ):
            sock = _raw_socket(ctx, zmq.REQ, url, serverkey)
            sock.send(b"ping")
            assert bool(sock.poll(SILENCE * 1000 if not answers else TIMEOUT * 1000)) is answers
            if answers:
                assert sock.recv() == b"ping"
            sock.close()
    finally:
        ctx.term()


# -- registration files (JEP 66) ---------------------------------------------------------------


def test_registration_over_curve(
    tmp_path: Path,
    kernel_process: list[subprocess.Popen[str]],  # noqa: F811 (the fixture imported above)
) -> None:
    """With keys in the registration file the kernel's DEALER is a CURVE client of a
    registrar serving with that same key pair; a classic file with the keys is left behind."""
    public, secret = zmq.curve_keypair()
    registrar = Registrar(tmp_path)
    try:
        # A CURVE server of its own: the mechanism applies only to binds made after it is set.
        registrar.router.close()
        registrar.router = registrar.ctx.socket(zmq.ROUTER)
        registrar.router.linger = 0
        registrar.router.curve_secretkey = secret
        registrar.router.curve_server = True
        port = registrar.router.bind_to_random_port("tcp://127.0.0.1")
        data = json.loads(registrar.file.read_text())
        data.update(
            registration_port=port,
            curve_publickey=public.decode(),
            curve_secretkey=secret.decode(),
        )
        registrar.file.write_text(json.dumps(data))
        proc = launch(kernel_process, registrar.file)
        _, identities = registrar.receive()
        registrar.router.send_multipart(Registration.ack_frames(registrar.session, identities))
        written = wait_for_connection_file(registrar.file)
        assert written["curve_secretkey"] == secret.decode()
        from jupyter_client.blocking.client import BlockingKernelClient

        kc = BlockingKernelClient()
        kc.load_connection_info(written)
        kc.start_channels()
        try:
            assert kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
            kc.shutdown()
            assert proc.wait(TIMEOUT) == 0
        finally:
            kc.stop_channels()
    finally:
        registrar.close()


# -- errors and the plain-text warning ------------------------------------------------------


def test_pyzmq_without_curve_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    public, secret = zmq.curve_keypair()
    info = ConnectionInfo(curve_publickey=public.decode(), curve_secretkey=secret.decode())
    monkeypatch.setattr(zmq, "has", lambda capability: capability != "curve")
    with pytest.raises(TransportError, match="built without CURVE \\(libsodium\\)"):
        ZmqTransport.bind(info)


def test_a_mismatched_key_pair_is_a_clear_error() -> None:
    info = ConnectionInfo(
        curve_publickey=zmq.curve_keypair()[0].decode(),
        curve_secretkey=zmq.curve_keypair()[1].decode(),
    )
    with pytest.raises(TransportError, match="not the public key of its curve_secretkey"):
        ZmqTransport.bind(info)


def _open_briefly(info: ConnectionInfo, **options: Any) -> None:
    async def main() -> None:
        async with open_kernel(EchoKernel(), info, **options):
            pass

    trio.run(main)


@pytest.mark.parametrize(
    ("transport", "encrypted", "options", "quiet_env", "warns"),
    [
        ("tcp", False, {}, "", True),
        ("tcp", False, {}, "0", True),
        ("tcp", True, {}, "", False),
        ("ipc", False, {}, "", False),
        ("tcp", False, {"warn_unencrypted": False}, "", False),
        ("tcp", False, {}, "1", False),
    ],
    ids=["tcp", "tcp env=0", "tcp+curve", "ipc", "asked quiet", "env quiet"],
)
def test_plaintext_tcp_warning(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
    encrypted: bool,
    options: dict[str, Any],
    quiet_env: str,
    warns: bool,
) -> None:
    monkeypatch.setenv(QUIET_PLAINTEXT_ENV, quiet_env)
    fields: dict[str, Any] = {"transport": transport}
    if transport == "ipc":
        fields["ip"] = str(tmp_path / "k")
    if encrypted:
        public, secret = zmq.curve_keypair()
        fields.update(curve_publickey=public.decode(), curve_secretkey=secret.decode())
    with caplog.at_level(logging.INFO, logger="kernelsdk"):
        _open_briefly(ConnectionInfo(**fields), **options)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ([PLAINTEXT_WARNING] if warns else [])


def test_plaintext_warning_reaches_the_kernel_log(tmp_path: Path) -> None:
    """``kernelsdk run`` on plain tcp says so on stderr, where Jupyter shows kernel logs."""
    file = tmp_path / "conn.json"
    ConnectionInfo(key="k").write(file)
    argv = ["-m", "kernelsdk", "run", "echo", "-f", str(file)]
    proc = subprocess.Popen([sys.executable, *argv], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "running over TCP without encryption" in line
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()


# -- the conformance suite over CurveZMQ --------------------------------------------------------


def test_conformance_suite_runs_encrypted(jupyter_env: JupyterEnv) -> None:
    """The suite's own client speaks CURVE when jupyter_client provisions keys, and echo
    passes every applicable check over encrypted sockets."""
    conformance = pytest.importorskip("kernelsdk_conformance")
    from kernelsdk_conformance._client import KernelClient

    kc = KernelClient("echo", transport_encryption="required")
    try:
        kc.start()
        assert kc.km.curve_publickey is not None
        assert kc.heartbeat(TIMEOUT)
    finally:
        kc.close()
    options = conformance.Options(
        timeout=8.0, fuzz_budget=10, shutdown_grace=4.0, transport_encryption="required"
    )
    results = conformance.run("echo", conformance.EchoProfile(), options=options)
    failed = [f"{r.name}: {r.message}" for r in results if r.status in ("fail", "error")]
    assert not failed
    passed = {r.name for r in results if r.status == "pass"}
    assert {"kernel_info", "security", "schema", "shutdown", "restart", "robustness"} <= passed


#: A kernel that declares CurveZMQ but ignores the keys: it drops them from the connection
#: file before the echo kernel reads it, and so serves in plain text.
IGNORES_KEYS = """
import json, os, sys
path = sys.argv[1]
with open(path) as f:
    info = json.load(f)
info.pop("curve_publickey", None)
info.pop("curve_secretkey", None)
with open(path, "w") as f:
    json.dump(info, f)
os.execv(sys.executable, [sys.executable, "-m", "kernelsdk", "run", "echo", "-f", path])
"""


def test_conformance_encryption_check(jupyter_env: JupyterEnv, probe_curve: str) -> None:
    """The ``encryption`` check passes echo, catches a kernel that declares CurveZMQ but
    serves in plain text, and skips kernels that do not declare it."""
    conformance = pytest.importorskip("kernelsdk_conformance")
    spec = {
        "argv": [sys.executable, "-c", IGNORES_KEYS, "{connection_file}"],
        "display_name": "ignores its CurveZMQ keys",
        "language": "echo",
        "metadata": {"supported_encryption": ["curve"]},
    }
    faulty = jupyter_env.kernels_dir / "curve-ignored"
    faulty.mkdir(exist_ok=True)
    (faulty / "kernel.json").write_text(json.dumps(spec))
    options = conformance.Options(timeout=8.0, shutdown_grace=4.0)

    def verdict(kernel: str) -> tuple[str, str]:
        [result] = conformance.run(
            kernel, conformance.EchoProfile(), checks=["encryption"], options=options
        )
        return result.status, result.message

    status, message = verdict("echo")
    assert status == "pass", message
    status, message = verdict("curve-ignored")
    assert status == "fail", message
    assert "never reached the kernel" in message
    status, message = verdict("probe")
    assert status == "skip" and "does not declare" in message, message


# -- jupyter_server ---------------------------------------------------------------------------


def test_jupyter_server_in_required_mode(jupyter_env: JupyterEnv, tmp_path: Path) -> None:
    """A jupyter_server configured with transport_encryption="required" starts the echo kernel
    with keys and runs a cell through its websocket."""
    pytest.importorskip("jupyter_server")
    import asyncio
    import secrets
    import socket
    import urllib.request
    import uuid

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}

    def api(method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(f"{url}{path}", data=body, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            data = response.read()
        return json.loads(data) if data else None

    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1"),
            *(f"--port={port}", "--port-retries=0", "--allow-root"),
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp_path}",
            "--MappingKernelManager.transport_encryption=required",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, f"jupyter server exited with {proc.returncode}"
            try:
                api("GET", "/api/status")
                break
            except OSError:
                assert time.monotonic() < deadline, "jupyter server never answered"
                time.sleep(0.2)
        kernel = api("POST", "/api/kernels", json.dumps({"name": "echo"}).encode())
        connection_file = jupyter_env.runtime_dir / f"kernel-{kernel['id']}.json"
        assert json.loads(connection_file.read_text())["curve_secretkey"]

        async def execute() -> str:
            ws = await websocket_connect(
                HTTPRequest(
                    f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels", headers=headers
                )
            )
            msg_id = uuid.uuid4().hex
            request = {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": "over an encrypted kernel", "silent": False},
                "channel": "shell",
            }
            await ws.write_message(json.dumps(request))
            texts = []
            while True:
                raw = await asyncio.wait_for(ws.read_message(), TIMEOUT)
                assert isinstance(raw, str)
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                texts.append(json.dumps(msg["content"]))
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    ws.close()
                    return "".join(texts)

        assert "over an encrypted kernel" in asyncio.run(execute())
        api("DELETE", f"/api/kernels/{kernel['id']}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
