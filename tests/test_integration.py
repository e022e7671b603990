"""Real kernel processes, real sockets (tcp and ipc), real jupyter_client.

No test asserts how long anything takes: "answers within milliseconds while busy" is shown by
answering at all while the shell is busy for seconds. Timeouts are generous and only stop a
hung test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
import zmq
from conftest import (
    STARTUP_TIMEOUT,
    JupyterEnv,
    KernelPair,
    drain_iopub,
    kernel_argv,
    start_kernel_pair,
    stop_kernel_pair,
)
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, _ShutdownStatus
from jupyter_client.session import Session
from jupyter_kernel_test.msgspec_v5 import validate_message

from kernelsdk.protocol import PROTOCOL_VERSION

TIMEOUT = 30  # only reached when something hangs


# -- helpers ---------------------------------------------------------------------------------


def collect(
    kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """IOPub messages whose parent is ``msg_id``, from busy through idle."""
    msgs: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return msgs


def wait_for(
    kc: BlockingKernelClient, msg_id: str, msg_type: str, timeout: float = TIMEOUT
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read IOPub until a ``msg_type`` message for ``msg_id``; also return what came before."""
    before: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == msg_type:
            return msg, before
        before.append(msg)


def shell_reply(kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def control_reply(
    kc: BlockingKernelClient, msg_id: str, timeout: float = TIMEOUT
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply: dict[str, Any] = kc.control_channel.get_msg(
            timeout=max(0.01, deadline - time.monotonic())
        )
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def execute(
    kc: BlockingKernelClient, code: str, timeout: float = TIMEOUT, **kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``code``; return its reply and its IOPub messages (busy..idle)."""
    msg_id = kc.execute(code, **kwargs)
    iopub = collect(kc, msg_id, timeout)
    return shell_reply(kc, msg_id, timeout), iopub


def stdout_of(iopub: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in iopub
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def send_control(
    kc: BlockingKernelClient, msg_type: str, content: dict[str, Any] | None = None
) -> str:
    msg = kc.session.msg(msg_type, content or {})
    kc.control_channel.send(msg)
    return str(msg["header"]["msg_id"])


def send_shell(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any]) -> str:
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg)
    return str(msg["header"]["msg_id"])


def ping_heartbeat(km: KernelManager, count: int = 3, interval: float = 0.3) -> list[float]:
    """Ping the heartbeat with a raw REQ; each ping must be answered within 1 s (the
    jupyter_client heartbeat deadline). Returns the round-trip times."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(km._make_url("hb"))
    rtts = []
    try:
        for i in range(count):
            payload = f"ping-{i}-{uuid.uuid4().hex}".encode()
            start = time.perf_counter()
            sock.send(payload)
            assert sock.poll(1000), f"heartbeat ping {i} not answered within 1 s"
            assert sock.recv() == payload
            rtts.append(time.perf_counter() - start)
            time.sleep(interval)
    finally:
        sock.close()
    return rtts


def kernel_info_checked(kc: BlockingKernelClient, channel: str) -> dict[str, Any]:
    if channel == "shell":
        msg_id = kc.kernel_info()
        reply = shell_reply(kc, msg_id)
    else:
        msg_id = send_control(kc, "kernel_info_request")
        reply = control_reply(kc, msg_id)
    validate_message(reply, "kernel_info_reply", msg_id)
    collect(kc, msg_id)  # busy/idle with the request as parent
    return reply


def assert_alive_and_working(km: KernelManager, kc: BlockingKernelClient) -> None:
    assert km.is_alive()
    reply, iopub = execute(kc, "print still here")
    assert reply["content"]["status"] == "ok"
    assert stdout_of(iopub) == "still here\n"


# -- kernel_info --------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_kernel_info_versions_agree(probe: KernelPair, channel: str) -> None:
    km, kc = probe
    reply = kernel_info_checked(kc, channel)
    content = reply["content"]
    assert content["status"] == "ok"
    assert content["protocol_version"] == PROTOCOL_VERSION
    assert reply["header"]["version"] == PROTOCOL_VERSION
    assert km.kernel_spec is not None
    assert km.kernel_spec.kernel_protocol_version == PROTOCOL_VERSION
    assert content["language_info"]["name"] == "probe"
    assert content["implementation"] == "probe"


# -- responsiveness while busy ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["sleep 3", "spin 3"])
def test_busy_kernel_answers_heartbeat_and_control(probe: KernelPair, command: str) -> None:
    """While the shell runs blocking code in a worker thread, heartbeat and control answer;
    the control reply comes before the execute reply. (The cell is then interrupted rather
    than waited for, to keep the suite fast.)"""
    km, kc = probe
    msg_id = kc.execute(command)
    wait_for(kc, msg_id, "execute_input")
    rtts = ping_heartbeat(km, count=3, interval=0.1)
    print(f"heartbeat during {command!r}: max rtt {max(rtts) * 1000:.2f} ms")
    info_id = send_control(kc, "kernel_info_request")
    info = control_reply(kc, info_id)
    assert info["content"]["status"] == "ok"
    # The control reply came while the execution still ran: its reply has not arrived.
    assert not kc.shell_channel.msg_ready()
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    collect(kc, msg_id)


def test_heartbeat_answers_while_a_c_call_holds_the_gil(probe: KernelPair) -> None:
    """sum(range(N)) on the kernel's main thread: one C call that never releases the GIL.
    The heartbeat echo runs inside libzmq (zmq.proxy) and still answers."""
    km, kc = probe
    msg_id = kc.execute("print started\nasleep 0.05\ngil 1.5e8")
    wait_for(kc, msg_id, "stream")
    time.sleep(0.1)  # past the asleep: inside the C call
    rtts = ping_heartbeat(km, count=3, interval=0.05)
    print(f"heartbeat while the GIL is held: max rtt {max(rtts) * 1000:.2f} ms")
    # Still running: the C call takes seconds, so the reply has not come yet.
    assert not kc.shell_channel.msg_ready()
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    n = 150_000_000
    assert stdout_of(collect(kc, msg_id)) == f"sum {n * (n - 1) // 2}\n"


# -- interrupts ---------------------------------------------------------------------------------


def _interrupt_running(km: KernelManager, kc: BlockingKernelClient, command: str) -> None:
    msg_id = kc.execute(command)
    wait_for(kc, msg_id, "execute_input")
    km.interrupt_kernel()
    reply = shell_reply(kc, msg_id, timeout=20)  # the command alone would take 30 s
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "KeyboardInterrupt"
    rest = collect(kc, msg_id)
    errors = [m for m in rest if m["msg_type"] == "error"]
    assert [e["content"]["ename"] for e in errors] == ["KeyboardInterrupt"]


@pytest.mark.parametrize("command", ["sleep 30", "spin 30", "asleep 30"])
def test_interrupt_signal_mode(probe: KernelPair, command: str) -> None:
    km, kc = probe
    assert km.kernel_spec is not None and km.kernel_spec.interrupt_mode == "signal"
    for _ in range(3):
        _interrupt_running(km, kc, command)
        assert_alive_and_working(km, kc)


@pytest.fixture(scope="module")
def probe_msg(jupyter_env: JupyterEnv, kernel_transport: str) -> Any:
    km, kc = start_kernel_pair(jupyter_env, "probe-msg", kernel_transport)
    yield km, kc
    stop_kernel_pair(km, kc)


@pytest.mark.parametrize("command", ["sleep 30", "spin 30", "asleep 30"])
def test_interrupt_message_mode(probe_msg: KernelPair, command: str) -> None:
    km, kc = probe_msg
    assert km.kernel_spec is not None and km.kernel_spec.interrupt_mode == "message"
    for _ in range(3):
        _interrupt_running(km, kc, command)
        assert_alive_and_working(km, kc)


def test_interrupt_request_reply(probe_msg: KernelPair) -> None:
    """interrupt_request on control gets an interrupt_reply, busy or idle."""
    km, kc = probe_msg
    msg_id = send_control(kc, "interrupt_request")
    reply = control_reply(kc, msg_id)
    assert reply["msg_type"] == "interrupt_reply"
    assert reply["content"]["status"] == "ok"
    collect(kc, msg_id)
    assert_alive_and_working(km, kc)


def test_sigint_while_idle_is_harmless(probe: KernelPair) -> None:
    km, kc = probe
    for _ in range(5):
        km.interrupt_kernel()  # SIGINT to the kernel's process group
        time.sleep(0.05)
    time.sleep(0.3)
    assert_alive_and_working(km, kc)
    # An interrupt that arrived while idle must not hit the next execution.
    reply, iopub = execute(kc, "asleep 0.2\nprint done")
    assert reply["content"]["status"] == "ok"
    assert stdout_of(iopub) == "done\n"


# -- stdin --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "prompt", "password"),
    [("input Your name: ", "Your name: ", False), ("password", "Password: ", True)],
)
def test_stdin_round_trip(probe: KernelPair, code: str, prompt: str, password: bool) -> None:
    _km, kc = probe
    msg_id = kc.execute(code, allow_stdin=True)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    assert request["parent_header"]["msg_id"] == msg_id
    assert request["content"]["prompt"] == prompt
    assert request["content"]["password"] is password
    kc.input("s3cret value")
    reply = shell_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    assert stdout_of(collect(kc, msg_id)) == "s3cret value\n"


def test_stdin_not_allowed(probe: KernelPair) -> None:
    km, kc = probe
    reply, iopub = execute(kc, "input never asked", allow_stdin=False)
    assert reply["content"]["status"] == "error"
    assert "Stdin" in reply["content"]["ename"] or "stdin" in reply["content"]["evalue"]
    assert [m["msg_type"] for m in iopub if m["msg_type"] == "error"] == ["error"]
    time.sleep(0.2)
    assert not kc.stdin_channel.msg_ready()
    assert_alive_and_working(km, kc)


# -- comms ----------------------------------------------------------------------------------------


def test_comm_info_empty_and_unknown_target_closed(probe: KernelPair) -> None:
    _km, kc = probe
    msg_id = kc.comm_info(target_name="nobody")
    reply = shell_reply(kc, msg_id)
    validate_message(reply, "comm_info_reply", msg_id)
    assert reply["content"]["comms"] == {}
    collect(kc, msg_id)

    comm_id = uuid.uuid4().hex
    open_id = send_shell(kc, "comm_open", {"comm_id": comm_id, "target_name": "nobody", "data": {}})
    iopub = collect(kc, open_id)
    closes = [m for m in iopub if m["msg_type"] == "comm_close"]
    assert len(closes) == 1
    assert closes[0]["content"]["comm_id"] == comm_id


def test_comm_round_trip(probe: KernelPair) -> None:
    _km, kc = probe
    comm_id = uuid.uuid4().hex
    open_id = send_shell(
        kc, "comm_open", {"comm_id": comm_id, "target_name": "probe", "data": {"hello": 1}}
    )
    iopub = collect(kc, open_id)
    opened = [m for m in iopub if m["msg_type"] == "comm_msg"]
    assert [m["content"] for m in opened] == [
        {"comm_id": comm_id, "data": {"opened": {"hello": 1}}}
    ]

    msg_id = kc.comm_info(target_name="probe")
    assert shell_reply(kc, msg_id)["content"]["comms"] == {comm_id: {"target_name": "probe"}}
    collect(kc, msg_id)

    for i in range(3):
        sent = send_shell(kc, "comm_msg", {"comm_id": comm_id, "data": {"n": i}})
        echoes = [m for m in collect(kc, sent) if m["msg_type"] == "comm_msg"]
        assert [m["content"]["data"] for m in echoes] == [{"echo": {"n": i}}]
        assert echoes[0]["parent_header"]["msg_id"] == sent

    close_id = send_shell(kc, "comm_close", {"comm_id": comm_id, "data": {}})
    collect(kc, close_id)
    msg_id = kc.comm_info()
    assert comm_id not in shell_reply(kc, msg_id)["content"]["comms"]
    collect(kc, msg_id)


def test_comm_served_during_execution(probe: KernelPair) -> None:
    _km, kc = probe
    comm_id = uuid.uuid4().hex
    collect(
        kc, send_shell(kc, "comm_open", {"comm_id": comm_id, "target_name": "probe", "data": {}})
    )

    exec_id = kc.execute("comm-wait 20")
    stream, _ = wait_for(kc, exec_id, "stream")
    assert stream["content"]["text"] == "waiting for comm\n"
    sent = send_shell(kc, "comm_msg", {"comm_id": comm_id, "data": {"during": True}})
    echo, _ = wait_for(kc, sent, "comm_msg")
    assert echo["content"]["data"] == {"echo": {"during": True}}
    reply = shell_reply(kc, exec_id)
    assert reply["content"]["status"] == "ok"
    rest = collect(kc, exec_id)
    assert stdout_of(rest) == "comm received\n"
    collect(kc, send_shell(kc, "comm_close", {"comm_id": comm_id, "data": {}}))


# -- display ------------------------------------------------------------------------------------


def test_display_update_clear_have_right_parent(probe: KernelPair) -> None:
    _km, kc = probe
    code = "display d1 first\nupdate d1 second\nclear\nprint after"
    reply, iopub = execute(kc, code)
    assert reply["content"]["status"] == "ok"
    types = [m["msg_type"] for m in iopub]
    assert types == [
        "status",
        "execute_input",
        "display_data",
        "update_display_data",
        "clear_output",
        "stream",
        "status",
    ]
    for m in iopub:
        assert m["parent_header"]["msg_id"] == reply["parent_header"]["msg_id"]
        if m["msg_type"] != "status":
            validate_message(m, m["msg_type"], reply["parent_header"]["msg_id"])
    display, update, clear = iopub[2:5]
    assert display["content"]["data"] == {"text/plain": "first"}
    assert display["content"]["transient"] == {"display_id": "d1"}
    assert update["content"]["data"] == {"text/plain": "second"}
    assert update["content"]["transient"] == {"display_id": "d1"}
    assert clear["content"] == {"wait": False}


# -- stop_on_error --------------------------------------------------------------------------------


def _send_executes(kc: BlockingKernelClient, codes: list[str], **kwargs: Any) -> list[str]:
    """Send execute requests back to back: signed first, then written in a tight loop."""
    msgs = [
        kc.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
                **kwargs,
            },
        )
        for code in codes
    ]
    frames = [kc.session.serialize(m) for m in msgs]
    for f in frames:
        kc.shell_channel.socket.send_multipart(f)
    return [m["header"]["msg_id"] for m in msgs]


def _check_aborted(kc: BlockingKernelClient, ids: list[str], first_seen: bool = False) -> None:
    """ids[0] failed and the others were aborted. ``first_seen``: IOPub of ids[0] was
    partly read already."""
    replies = [shell_reply(kc, i) for i in ids]
    assert replies[0]["content"]["status"] == "error"
    assert replies[0]["content"]["ename"] == "ProbeError"
    assert [r["content"]["status"] for r in replies[1:]] == ["aborted"] * (len(ids) - 1)
    for i in ids:  # every request, aborted or not, is bracketed by busy/idle
        iopub = collect(kc, i)
        states = [m["content"]["execution_state"] for m in iopub if m["msg_type"] == "status"]
        assert states == (["idle"] if first_seen and i == ids[0] else ["busy", "idle"])
        if i != ids[0]:  # an aborted request runs nothing
            assert [m["msg_type"] for m in iopub] == ["status", "status"]
    reply, iopub = execute(kc, "print four")
    assert reply["content"]["status"] == "ok"
    assert stdout_of(iopub) == "four\n"


def test_stop_on_error_aborts_queued_executes(probe: KernelPair) -> None:
    """error + two more executes, all queued while the kernel is still busy with an earlier
    cell (in a worker thread): the two after the error are aborted, a later one runs."""
    _km, kc = probe
    busy = kc.execute("sleep 1")
    wait_for(kc, busy, "execute_input")
    ids = _send_executes(kc, ["error", "print two", "print three"])
    assert shell_reply(kc, busy)["content"]["status"] == "ok"
    collect(kc, busy)
    _check_aborted(kc, ids)


def test_stop_on_error_aborts_executes_unread_in_the_socket(probe: KernelPair) -> None:
    """The cell blocks the event loop, then fails: the executes sent meanwhile sit unread in
    the shell socket, sent long before the error. All of them must be aborted.

    Regression test: before a5576d3, KernelServer._execute_failed took in what had arrived
    with a single ``await trio.sleep(0)``, and none of these three was aborted.
    """
    _km, kc = probe
    # asleep lets "started" leave before the event loop blocks for 1.5 s; the client sends
    # 0.5 s after seeing it, so well inside the block.
    first = kc.execute("print started\nasleep 0.05\nblock 1.5\nerror")
    wait_for(kc, first, "stream")
    time.sleep(0.5)
    ids = _send_executes(kc, ["print two", "print three", "print four"])
    _check_aborted(kc, [first, *ids], first_seen=True)


def test_stop_on_error_back_to_back_on_idle_kernel(probe: KernelPair) -> None:
    """Executes written back to back to an idle kernel, the first failing at once (the "Run
    All" case). Only those that reached the kernel before the error are aborted, so how many
    depends on timing (usually all: 28 of 30 rounds on a loaded 2-core machine); what is
    guaranteed is that the aborted ones are exactly those before the first one that ran."""
    _km, kc = probe
    for _ in range(5):
        ids = _send_executes(kc, ["error", "print two", "print three", "print four"])
        statuses = [shell_reply(kc, i)["content"]["status"] for i in ids]
        assert statuses[0] == "error"
        ran = statuses.index("ok") if "ok" in statuses else len(statuses)
        assert statuses[1:ran] == ["aborted"] * (ran - 1)
        assert statuses[ran:] == ["ok"] * (len(statuses) - ran)
        for i in ids:
            collect(kc, i)


def test_stop_on_error_false_runs_the_rest(probe: KernelPair) -> None:
    _km, kc = probe
    ids = [kc.execute("error", stop_on_error=False), kc.execute("print two")]
    replies = [shell_reply(kc, i) for i in ids]
    assert [r["content"]["status"] for r in replies] == ["error", "ok"]
    for i in ids:
        collect(kc, i)


# -- iopub_welcome (JEP 65) -----------------------------------------------------------------------


def _recv_welcome(sock: zmq.Socket[Any], session: Session, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no iopub_welcome"
        if not sock.poll(int(remaining * 1000)):
            continue
        frames = sock.recv_multipart()
        idents, rest = session.feed_identities(frames)
        msg = session.deserialize(rest)
        if msg["msg_type"] == "iopub_welcome":
            msg["topic_frames"] = idents
            return msg


def test_iopub_welcome_for_every_subscriber(probe: KernelPair) -> None:
    km, _kc = probe
    ctx: zmq.Context[Any] = zmq.Context.instance()
    socks = []
    try:
        for topic in (b"", b"", b"kernel."):
            sock = ctx.socket(zmq.SUB)
            sock.linger = 0
            sock.setsockopt(zmq.SUBSCRIBE, topic)
            sock.connect(km._make_url("iopub"))
            socks.append(sock)
            # A fresh session per socket: welcomes to other subscribers reach this one too.
            welcome = _recv_welcome(sock, km.session.clone())
            assert welcome["content"] == {"subscription": topic.decode()}
            assert welcome["parent_header"] == {}
            assert welcome["topic_frames"] == ([topic] if topic else [])
            assert welcome["header"]["version"] == PROTOCOL_VERSION
    finally:
        for sock in socks:
            sock.close()


# -- shutdown and restart (destructive: a kernel per test) ----------------------------------------


def test_shutdown_request_reply_and_clean_exit(start_kernel: Any, kernel_transport: str) -> None:
    km, kc = start_kernel("probe", kernel_transport)
    proc = km.provisioner.process
    msg_id = kc.shutdown()
    reply = control_reply(kc, msg_id)
    validate_message(reply, "shutdown_reply", msg_id)
    assert reply["content"] == {"status": "ok", "restart": False}
    # Every client learns of it on IOPub too.
    broadcast, _ = wait_for(kc, msg_id, "shutdown_reply")
    assert broadcast["content"]["restart"] is False
    assert proc.wait(timeout=5) == 0
    assert not km.is_alive()


def test_manager_shutdown_needs_no_signal(start_kernel: Any, kernel_transport: str) -> None:
    km, kc = start_kernel("probe", kernel_transport)
    proc = km.provisioner.process
    kc.stop_channels()
    km.shutdown_kernel(now=False)  # interrupt + shutdown_request, then 2.5 s before SIGTERM
    assert km._shutdown_status == _ShutdownStatus.ShutdownRequest  # no SIGTERM/SIGKILL
    assert proc.returncode == 0
    assert not km.is_alive()


def test_shutdown_while_busy(start_kernel: Any) -> None:
    km, kc = start_kernel("probe")
    proc = km.provisioner.process
    msg_id = kc.execute("spin 30")
    wait_for(kc, msg_id, "execute_input")
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    assert km._shutdown_status == _ShutdownStatus.ShutdownRequest
    assert proc.returncode == 0


def test_restart_same_ports_new_session(start_kernel: Any, kernel_transport: str) -> None:
    km, kc = start_kernel("probe", kernel_transport)
    before = km.get_connection_info()
    old_session = kernel_info_checked(kc, "shell")["header"]["session"]
    old_proc = km.provisioner.process
    km.restart_kernel(now=False)
    assert old_proc.returncode == 0
    assert km.get_connection_info() == before
    # The old client reconnects to the same ports and sees a new kernel session.
    kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
    drain_iopub(kc, 0.2)
    new_info = kernel_info_checked(kc, "shell")
    assert new_info["header"]["session"] != old_session
    reply, iopub = execute(kc, "print restarted")
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["execution_count"] == 1
    assert stdout_of(iopub) == "restarted\n"


# -- connection file with ports 0 -----------------------------------------------------------------


def test_kernel_writes_back_chosen_ports(jupyter_env: JupyterEnv, kernel_transport: str) -> None:
    transport = kernel_transport
    path = jupyter_env.runtime_dir / f"kernel-zero-{uuid.uuid4().hex[:8]}.json"
    info: dict[str, Any] = {
        "transport": transport,
        "ip": "127.0.0.1" if transport == "tcp" else jupyter_env.ipc_prefix(),
        "key": uuid.uuid4().hex,
        "signature_scheme": "hmac-sha256",
        "kernel_name": "echo",
        **dict.fromkeys(("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"), 0),
    }
    path.write_text(json.dumps(info), encoding="utf-8")
    argv = [a.replace("{connection_file}", str(path)) for a in kernel_argv("echo")]
    proc = subprocess.Popen(argv, start_new_session=True)
    kc = None
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, "kernel exited"
            assert time.monotonic() < deadline, "ports never written back"
            try:
                written = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                written = {}
            if written and all(written[p] for p in info if p.endswith("_port")):
                break
            time.sleep(0.05)
        ports = [written[p] for p in info if p.endswith("_port")]
        assert len(set(ports)) == 5
        assert written["key"] == info["key"] and written["transport"] == transport
        kc = BlockingKernelClient(connection_file=str(path))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        reply, iopub = execute(kc, "zero ports")
        assert reply["content"]["status"] == "ok"
        assert stdout_of(iopub) == "zero ports\n"
        msg_id = kc.shutdown()
        assert control_reply(kc, msg_id)["content"]["status"] == "ok"
        assert proc.wait(timeout=10) == 0
    finally:
        if kc is not None:
            kc.stop_channels()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        path.unlink(missing_ok=True)


def test_cli_run_creates_missing_connection_file(jupyter_env: JupyterEnv) -> None:
    path = jupyter_env.runtime_dir / f"kernel-missing-{uuid.uuid4().hex[:8]}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernelsdk", "run", "echo", "-f", str(path)],
        start_new_session=True,
    )
    kc = None
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not path.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.1)
        kc = BlockingKernelClient(connection_file=str(path))
        kc.load_connection_file()
        assert kc.session.key  # a fresh key was made
        kc.start_channels()
        kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        msg_id = kc.shutdown()
        assert control_reply(kc, msg_id)["content"]["status"] == "ok"
        assert proc.wait(timeout=10) == 0
    finally:
        if kc is not None:
            kc.stop_channels()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        path.unlink(missing_ok=True)


def test_first_request_before_iopub_connects(jupyter_env: JupyterEnv) -> None:
    """A client that sends at once, without waiting for its IOPub connection (as jupyter
    console does), still sees every request's busy and idle."""
    for _ in range(3):  # the client's connections race; a few rounds make a loss likely
        km = KernelManager(kernel_name="echo")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.kernel_info()
            kc.get_shell_msg(timeout=STARTUP_TIMEOUT)
            reply, iopub = execute(kc, "first")
            assert reply["content"]["status"] == "ok"
            assert stdout_of(iopub) == "first\n"
        finally:
            stop_kernel_pair(km, kc)


def test_jupyter_run_passes_extra_arguments(jupyter_env: JupyterEnv, tmp_path: Any) -> None:
    """`jupyter run FILE` hands FILE to the kernel's command line too; the kernel ignores it."""
    script = tmp_path / "cell.txt"
    script.write_text("from a file", encoding="utf-8")
    run = str(Path(sys.executable).with_name("jupyter-run"))
    proc = subprocess.run(
        [run, "--kernel=echo", str(script)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "from a file" in proc.stdout


def test_no_stray_messages_after_everything(probe: KernelPair) -> None:
    """Whatever the earlier tests did, the shared kernel still answers and nothing is left
    over on shell or stdin."""
    km, kc = probe
    drain_iopub(kc, 0.1)
    with pytest.raises(Empty):
        kc.get_shell_msg(timeout=0.2)
    assert not kc.stdin_channel.msg_ready()
    assert_alive_and_working(km, kc)
    assert os.path.exists(km.connection_file)
