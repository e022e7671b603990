"""Lifecycle checks: the heartbeat, control during execution, interrupts (by message and by
SIGINT), shutdown and restart, the start-up handshake; a cell waiting for input meets an
interrupt or a shutdown; the parent process dies.

The input and parent checks each caught a fault a new user of kernelsdk met: the input of an
interrupted cell that kept waiting and printed (with the old parent) after that cell's idle; a
kernel that never exited when shut down during input; a kernel that outlived the process that
launched it.

Spec references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

from kernelsdk import RemoteProtocolError
from kernelsdk.protocol import Session

from .._client import KernelClient, Msg, NoReply, is_status, stream_text
from .._handshake import RegisteringKernel
from .._registry import Context, Fail, Skip, check
from .._schema import validate
from ._helpers import MARK, expect, status_ok, version_tuple

# -- heartbeat and control ------------------------------------------------------------------


#: jupyter_client's ``HBChannel.time_to_dead``: it pings once a second and calls a ping left
#: unanswered for this long a heart failure (the kernel is reported dead)
CLIENT_TIME_TO_DEAD = 1.0


@check(
    "heartbeat",
    "heartbeat echoes while idle and, each within the limit, all through a CPU spin that lasts "
    "twice the limit",
    "Heartbeat for kernels; kernels.rst (hb_port); jupyter_client HBChannel.time_to_dead",
)
def heartbeat(ctx: Context) -> str:
    kc = ctx.kernel()
    t = ctx.options.hb_timeout
    for payload in (b"ping", b"\x00binary\xff" * 3, uuid.uuid4().bytes):
        if not kc.heartbeat(t, payload):
            raise Fail(f"no heartbeat echo of {payload!r} within {t:g}s while idle")
    # A heartbeat served by the busy thread (or by a thread that needs the GIL the cell
    # holds) answers when the spin ends: a spin no longer than the limit lets it pass. Twice
    # the limit leaves a ping that waits at least the limit, however late it was sent.
    seconds = max(ctx.profile.busy_seconds, 2 * t)
    spin = ctx.profile.code("code_spin", seconds=seconds)
    if spin is None:
        return "idle echoes ok (busy part skipped: the profile has no code_spin)"
    msg_id = kc.execute(spin)
    started = time.monotonic()
    pings = 0
    slowest = 0.0
    while True:
        msg = kc.recv_raw("shell", 0)
        if msg is not None and msg.parent_id == msg_id:
            break
        if msg is not None:
            kc._reply_backlog["shell"].append(msg)
        sent = time.monotonic()
        if not kc.heartbeat(t):
            raise Fail(
                f"no heartbeat echo within {t:g}s while the kernel spins the CPU (a ping sent "
                f"{sent - started:.1f} s into a {seconds:g} s code_spin; jupyter_client "
                f"declares a kernel dead after {CLIENT_TIME_TO_DEAD:g} s without an echo)"
            )
        slowest = max(slowest, time.monotonic() - sent)
        pings += 1
        time.sleep(0.2)
    ran = time.monotonic() - started
    kc.collect(msg_id)
    kc.drain_iopub(0.1)
    if ran < seconds / 2:
        raise Skip(
            f"idle echoes ok; busy part not verified: code_spin returned after {ran:.1f} s, "
            f"asked for {seconds:g} s (does the sample use {{seconds}}?)"
        )
    over = (
        f", over jupyter_client's {CLIENT_TIME_TO_DEAD:g} s"
        if slowest > CLIENT_TIME_TO_DEAD
        else ""
    )
    return (
        f"idle echoes ok; {pings} echoes during a {ran:.1f} s spin, slowest "
        f"{slowest * 1000:.0f} ms{over} (limit {t:g} s)"
    )


def _wait_running(kc: KernelClient, msg_id: str) -> None:
    """Wait until IOPub shows ``msg_id`` running (its execute_input); keep what is read."""
    deadline = time.monotonic() + kc.timeout
    for m in kc.log:
        if m.channel == "iopub" and m.parent_id == msg_id and m.msg_type == "execute_input":
            return
    assert kc.iopub is not None
    while (remaining := deadline - time.monotonic()) > 0:
        msg = kc._recv(kc.iopub, "iopub", remaining)
        if msg is None:
            break
        kc._iopub_backlog.append(msg)
        if msg.parent_id == msg_id and msg.msg_type == "execute_input":
            return
    raise NoReply(f"execute {msg_id} never started (no execute_input)")


@check(
    "control_during_execution",
    "control answers kernel_info while shell is busy executing",
    "Control channel ('not queued behind execution requests'); 5.5 kernel_info on control",
)
def control_during_execution(ctx: Context) -> str:
    code = ctx.sample("code_sleep", seconds=ctx.profile.busy_seconds)
    kc = ctx.kernel()
    msg_id = kc.execute(code)
    _wait_running(kc, msg_id)
    started = time.monotonic()
    cid = kc.send("control", "kernel_info_request", {})
    kc.reply("control", cid)
    waited = time.monotonic() - started
    early = kc.recv_raw("shell", 0)
    reply = early if early is not None and early.parent_id == msg_id else None
    if reply is None and early is not None:
        kc._reply_backlog["shell"].append(early)
    # Two signs of a control reply held back until the execution ended: the shell reply is
    # already there, or the control reply took about as long as the execution. (The shell
    # reply alone can lag behind on a loaded machine, even when it was sent first.)
    if reply is None and waited < ctx.profile.busy_seconds / 2:
        kc.reply("shell", msg_id, timeout=ctx.profile.busy_seconds + kc.timeout)
        kc.collect(msg_id)
        return f"control kernel_info answered in {waited * 1000:.0f} ms while the shell executed"
    if reply is None:
        kc.reply("shell", msg_id, timeout=ctx.profile.busy_seconds + kc.timeout)
    kc.collect(msg_id)
    raise Fail(
        f"control kernel_info_reply came only as the execution finished ({waited:.2f} s, for "
        f"a {ctx.profile.busy_seconds:g} s execution)"
    )


# -- interrupts -----------------------------------------------------------------------------


def _interrupt(ctx: Context, kc: KernelClient) -> None:
    if ctx.interrupt_mode == "message":
        reply = kc.reply("control", kc.send("control", "interrupt_request", {}))
        if reply.msg_type != "interrupt_reply":
            raise Fail(f"interrupt_request answered with {reply.msg_type}")
        status_ok(reply, "interrupt_request")
    else:
        kc.sigint()


@check(
    "interrupt",
    "interrupts (per the kernelspec's interrupt_mode) stop a running execution, at random "
    "moments, repeatedly; the kernel stays usable",
    "kernels.rst interrupt_mode; Kernel interrupt (interrupt_request, 5.3)",
)
def interrupt(ctx: Context) -> str:
    long_sleep = ctx.sample("code_sleep", seconds=60)
    hello = ctx.profile.code_hello_world
    kc = ctx.kernel()
    rounds = 3
    statuses = []
    for _ in range(rounds):
        msg_id = kc.execute(long_sleep)
        _wait_running(kc, msg_id)
        time.sleep(random.uniform(0.05, 0.5))
        _interrupt(ctx, kc)
        try:
            reply = kc.reply("shell", msg_id, timeout=kc.timeout)
        except NoReply:
            alive = kc.alive()
            raise Fail(
                f"{ctx.interrupt_mode} interrupt did not stop a 60 s execution within "
                f"{kc.timeout:g}s" + ("" if alive else " (the kernel died)")
            ) from None
        kc.collect(msg_id)
        statuses.append(reply.content.get("status"))
    if not kc.alive():
        raise Fail("the kernel died after interrupts")
    if hello is not None:
        reply, _ = kc.run(hello)
        status_ok(reply, "execution after interrupts")
    else:
        kc.barrier()
    return f"{rounds} {ctx.interrupt_mode} interrupts stopped executions (replies: {statuses})"


@check(
    "sigint_idle",
    "SIGINT while idle (what every client shutdown starts with) never kills the kernel",
    "kernels.rst interrupt_mode 'signal'; jupyter_client KernelManager.shutdown_kernel",
)
def sigint_idle(ctx: Context) -> str:
    if ctx.interrupt_mode != "signal":
        raise Skip("interrupt_mode is 'message': clients do not send SIGINT to this kernel")
    kc = ctx.kernel()
    for _ in range(3):
        kc.sigint()
        time.sleep(0.2)
    time.sleep(0.3)
    if not kc.alive():
        raise Fail("the kernel process died from SIGINT while idle")
    kc.barrier()
    kc.barrier("control")
    return "3 SIGINTs while idle: still alive and answering"


# -- shutdown and restart -------------------------------------------------------------------


@check(
    "shutdown",
    "shutdown_request on control: shutdown_reply, then the process exits within the "
    "client's grace period",
    "Kernel shutdown; jupyter_client shutdown_wait_time (5 s)",
)
def shutdown(ctx: Context) -> str:
    with ctx.fresh() as kc:
        mid = kc.send("control", "shutdown_request", {"restart": False})
        try:
            reply = kc.reply("control", mid)
        except NoReply:
            raise Fail("no shutdown_reply on control") from None
        problems = validate(reply)
        if reply.msg_type != "shutdown_reply":
            problems.append(f"answered with {reply.msg_type}")
        elif reply.content.get("restart") is not False:
            problems.append(f"shutdown_reply.restart is {reply.content.get('restart')!r}")
        grace = ctx.options.shutdown_grace
        if not kc.wait_exit(grace):
            problems.append(f"the process was still running {grace:g}s after shutdown_reply")
        expect(problems, "shutdown")
    return f"shutdown_reply, process exited within {grace:g}s"


@check(
    "restart",
    "shutdown_request(restart=True): reply says restart, the process exits and a new one "
    "serves on the same ports with a new session",
    "Kernel shutdown (restart); JEP 118",
)
def restart(ctx: Context) -> str:
    with ctx.fresh() as kc:
        reply, _ = kc.request("shell", "kernel_info_request", {})
        old_session = reply.header.get("session")
        mid = kc.send("control", "shutdown_request", {"restart": True})
        reply = kc.reply("control", mid)
        problems = []
        if reply.content.get("restart") is not True:
            problems.append(f"shutdown_reply.restart is {reply.content.get('restart')!r}")
        if not kc.wait_exit(ctx.options.shutdown_grace):
            problems.append("the process did not exit after shutdown_reply(restart=True)")
        expect(problems, "restart")
        kc.km.restart_kernel(now=True)
        kc.connect()
        kc.wait_ready()
        reply, _ = kc.request("shell", "kernel_info_request", {})
        if reply.header.get("session") == old_session:
            raise Fail("the restarted kernel kept the old header.session")
    return "restarted in place on the same ports with a new session"


# -- start-up handshake ---------------------------------------------------------------------


@check(
    "handshake",
    "started from a registration file, the kernel reports its ports, signed, and serves them",
    "Kernel startup handshake (JEP 66; kernels.rst, protocol 5.6)",
)
def handshake(ctx: Context) -> str:
    claimed_text = str(ctx.kernelspec.get("kernel_protocol_version") or "5.0")
    claimed = (version_tuple(claimed_text) or (0,)) >= (5, 6)
    kernel = RegisteringKernel(
        ctx.kernel_name, ctx.spec_manager, output=ctx.options.kernel_output, budget=ctx.budget
    )
    kc = KernelClient(
        ctx.kernel_name,
        timeout=ctx.options.timeout,
        spec_manager=ctx.spec_manager,
        budget=ctx.budget,
    )
    try:
        if (why := kernel.cannot_launch()) is not None:
            raise Skip(f"not supported: {why}")
        # A kernel that reads the file connects to the registrar while it starts: one that
        # has not connected after three times its usual start-up (>= 5 s) ignores the file.
        usual = ctx.typical_startup()
        connect_within = max(5.0, 3 * usual) if usual is not None else 10.0
        kernel.launch()
        try:
            outcome = kernel.wait_registration(
                ctx.options.startup_timeout, min(connect_within, ctx.options.startup_timeout)
            )
        except RemoteProtocolError as exc:
            raise Fail(f"the kernel's registration is not valid: {exc}") from None
        if isinstance(outcome, str):
            if claimed:
                raise Fail(f"{outcome}, though its kernelspec claims protocol {claimed_text}")
            # JEP 66 reads kernel_protocol_version >= 5.5 as a claim; jupyter_client's
            # kernels.rst puts the handshake in 5.6. Only the latter is counted as a claim.
            raise Skip(
                f"not supported: {outcome} (kernelspec protocol {claimed_text}; the handshake "
                "is claimed from 5.6)"
            )
        registration, identities = outcome
        if registration.kernel_id != kernel.kernel_id:
            raise Fail(
                f"registered kernel_id {registration.kernel_id!r}, the file said "
                f"{kernel.kernel_id!r}"
            )
        kernel.acknowledge(identities)
        kernel.client(registration, kc)
        for channel in ("shell", "control"):
            msg_id = kc.send(channel, "kernel_info_request", {})
            try:
                kc.reply(channel, msg_id)
            except NoReply:
                port = registration.ports[f"{channel}_port"]
                raise Fail(
                    f"no kernel_info_reply on the registered {channel} port {port}"
                ) from None
        kc.send("control", "shutdown_request", {"restart": False})
        written = kernel.written_ports()
        if written is None:
            rewritten = "; the registration file was not replaced by a connection file"
        elif all(written.get(k) == v for k, v in registration.ports.items()):
            rewritten = ", and wrote them into a connection file"
        else:
            raise Fail(
                f"the connection file the kernel wrote has other ports than it registered: "
                f"{ {k: written.get(k) for k in registration.ports} } vs "
                f"{dict(registration.ports)}"
            )
        return f"registered its ports, answered kernel_info on them{rewritten}"
    finally:
        kc.close()
        kernel.close(ctx.options.shutdown_grace)


# -- input meets an interrupt or a shutdown -------------------------------------------------

PROMPT = "conformance prompt: "


def _await_input(kc: KernelClient, msg_id: str, what: str) -> Msg:
    """The input_request of ``msg_id`` on stdin (another parent's is a failure)."""
    req = kc.recv_raw("stdin", kc.timeout)
    if req is None:
        state = "" if kc.alive() else " (the kernel process has exited)"
        raise Fail(f"{what} sent no input_request on stdin within {kc.timeout:g} s{state}")
    if req.msg_type != "input_request":
        raise Fail(f"{what}: stdin got {req.msg_type}, not an input_request")
    if req.parent_id != msg_id:
        raise Fail(f"{what}: the input_request's parent is not the cell's execute_request")
    return req


def _after_idle(kc: KernelClient, parent_id: str) -> list[Msg]:
    """IOPub messages of ``parent_id`` logged after its idle status."""
    seen_idle = False
    late = []
    for m in kc.log:
        if m.channel != "iopub" or m.parent_id != parent_id:
            continue
        if seen_idle:
            late.append(m)
        elif is_status(m, "idle"):
            seen_idle = True
    return late


def _show(msgs: list[Msg]) -> str:
    parts = []
    for m in msgs:
        text = ""
        if m.msg_type == "stream" and isinstance(m.content, dict):
            text = f" {str(m.content.get('text', ''))[:60]!r}"
        parts.append(m.describe() + text)
    return ", ".join(parts)


@check(
    "input_interrupt",
    "an interrupt while a cell waits for input ends that cell (an error or abort reply, its "
    "idle, nothing of it after the idle); the next cell's input_request is its own and answered",
    "Kernel interrupt; Messages on the stdin channel; Kernel status ('idle ... IOPub messages "
    "associated with a given request have all been received')",
)
def input_interrupt(ctx: Context) -> str:
    code = ctx.sample("code_input", prompt=PROMPT)
    kc = ctx.kernel()
    first = kc.execute(code, allow_stdin=True)
    first_req = _await_input(kc, first, "the cell reading input")
    _interrupt(ctx, kc)
    try:
        reply = kc.reply("shell", first)
    except NoReply:
        state = "" if kc.alive() else " (the kernel died)"
        raise Fail(
            f"a {ctx.interrupt_mode} interrupt of a cell waiting for input brought no "
            f"execute_reply within {kc.timeout:g} s{state}"
        ) from None
    problems = []
    status = reply.content.get("status") if isinstance(reply.content, dict) else None
    if status not in ("error", "aborted", "abort"):  # messaging.rst spells it both ways
        problems.append(f"the interrupted cell's execute_reply has status {status!r}")
    try:
        kc.collect(first)
    except NoReply:
        raise Fail(
            f"the interrupted cell got its reply ({status!r}) but no idle status within "
            f"{kc.timeout:g} s"
        ) from None
    kc.drain_iopub(0.5)  # anything of the interrupted cell still on its way
    if not kc.alive():
        raise Fail("the kernel died after the interrupt of a cell waiting for input")
    # The next cell reads input too: its input_request must be its own, and answered. The
    # answer has no parent header, as jupyter_client's KernelClient.input sends it (nbclient,
    # papermill, jupyter console): the kernel must give it to the input waiting now.
    value = f"{MARK}-{uuid.uuid4().hex[:6]}"
    second = kc.execute(code, allow_stdin=True)
    req = kc.recv_raw("stdin", kc.timeout)
    while req is not None and req.parent_id == first:
        problems.append("another input_request for the interrupted cell")
        req = kc.recv_raw("stdin", kc.timeout)
    next_ok = False
    if req is None or req.msg_type != "input_request" or req.parent_id != second:
        got = "nothing" if req is None else f"{req.msg_type} of another parent"
        problems.append(f"the next cell reading input got {got} on stdin, not its input_request")
    else:
        kc.send("stdin", "input_reply", {"value": value})
        try:
            reply2 = kc.reply("shell", second)
            msgs2 = kc.collect(second)
        except NoReply:
            problems.append(
                f"the next cell got no execute_reply and idle within {kc.timeout:g} s of the "
                "input_reply to its input_request (sent without parent header, as "
                "jupyter_client does)"
            )
        else:
            status2 = reply2.content.get("status") if isinstance(reply2.content, dict) else None
            if status2 != "ok":
                problems.append(f"the next cell reading input ended with status {status2!r}")
            elif value not in stream_text(msgs2):
                problems.append("the next cell did not print the value of its input_reply")
            else:
                next_ok = True
    # A frontend may still show the interrupted cell's prompt, and a user answer it: that
    # late reply must reach nothing (the cell is over).
    stale = f"{MARK}-stale-{uuid.uuid4().hex[:6]}"
    kc.send("stdin", "input_reply", {"value": stale}, parent=first_req.header)
    kc.drain_iopub(0.5)
    late = _after_idle(kc, first)
    if late:
        sent = ""
        if any(value in stream_text([m]) for m in late):
            sent = " (the value sent to the next cell)"
        elif any(stale in stream_text([m]) for m in late):
            sent = " (the value of a late input_reply to its input_request)"
        problems.insert(
            0, f"published after the interrupted cell's idle, with its parent: {_show(late)}{sent}"
        )
    if problems:
        raise Fail("input interrupted: " + "; ".join(problems))
    return (
        f"{ctx.interrupt_mode} interrupt during input: reply {status!r}, idle, nothing after "
        f"it; the next cell's input {'answered' if next_ok else '?'}"
    )


@check(
    "shutdown_input",
    "shutdown_request on control while a cell waits for input: shutdown_reply, and the "
    "process exits within the client's grace period",
    "Kernel shutdown; jupyter_client shutdown_wait_time (5 s)",
)
def shutdown_input(ctx: Context) -> str:
    code = ctx.sample("code_input", prompt=PROMPT)
    grace = ctx.options.shutdown_grace
    with ctx.fresh() as kc:
        msg_id = kc.execute(code, allow_stdin=True)
        _await_input(kc, msg_id, "the cell reading input")
        sent = time.monotonic()
        mid = kc.send("control", "shutdown_request", {"restart": False})
        try:
            reply = kc.reply("control", mid)
        except NoReply:
            state = "still running" if kc.alive() else "exited"
            raise Fail(
                f"no shutdown_reply within {kc.timeout:g} s of a shutdown_request sent while a "
                f"cell waited for input (the process {state})"
            ) from None
        answered = time.monotonic() - sent
        if reply.msg_type != "shutdown_reply":
            raise Fail(f"shutdown_request during input answered with {reply.msg_type}")
        if not kc.wait_exit(grace):
            raise Fail(
                f"shutdown_reply came ({answered:.1f} s), but the process was still running "
                f"{grace:g} s later; a cell was waiting for input (a client kills the kernel "
                "after its shutdown_wait_time)"
            )
        exited = time.monotonic() - sent
    return (
        f"shutdown_reply after {answered * 1000:.0f} ms, process exited {exited:.1f} s after "
        "the request, while a cell waited for input"
    )


# -- parent death ---------------------------------------------------------------------------

#: Starts the kernel as its child with JPY_PARENT_PID set to its own pid (what jupyter_client
#: does), prints the child's pid, and waits: the check kills it with SIGKILL.
LAUNCHER = """
import os, subprocess, sys, json
argv, quiet = json.loads(sys.argv[1]), sys.argv[2] == "quiet"
env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))
out = subprocess.DEVNULL if quiet else None
child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
print(child.pid, flush=True)
child.wait()
"""


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may wait for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_gone(ctx: Context, pid: int, seconds: float) -> float | None:
    """Seconds until ``pid`` is gone, or None if it still runs after ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if not _running(pid):
            return time.monotonic() - start
        ctx.budget.check(f"the kernel (pid {pid}) to exit after its parent was killed")
        time.sleep(0.05)
    return None if _running(pid) else time.monotonic() - start


@check(
    "parent_death",
    "launched by a process that then dies (SIGKILL), the kernel exits: its parent's pid is "
    "in JPY_PARENT_PID, as jupyter_client sets it",
    "jupyter_client launcher (JPY_PARENT_PID); ipykernel's parent poller",
)
def parent_death(ctx: Context) -> str:
    spec = ctx.kernelspec
    argv = [str(a) for a in spec.get("argv") or []]
    if not any("{connection_file}" in a for a in argv):
        raise Skip("cannot be launched by another process: the argv has no {connection_file}")
    provisioner = (spec.get("metadata") or {}).get("kernel_provisioner", {})
    name = provisioner.get("provisioner_name") if isinstance(provisioner, dict) else None
    if name not in (None, "local-provisioner"):
        raise Skip(f"the kernel is started by provisioner {name!r}, not as a local process")
    kc = KernelClient(
        ctx.kernel_name,
        timeout=ctx.options.timeout,
        spec_manager=ctx.spec_manager,
        budget=ctx.budget,
    )
    ctx.clients.append(kc)  # its messages go to the schema check too
    launcher: subprocess.Popen[str] | None = None
    kernel_pid: int | None = None
    try:
        km = kc.km
        km.write_connection_file()
        cmd = km.format_kernel_cmd()
        env = {**os.environ, **(km.kernel_spec.env if km.kernel_spec else {})}
        quiet = "loud" if ctx.options.kernel_output else "quiet"
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, json.dumps(cmd), quiet],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert launcher.stdout is not None
        with ctx.budget.paused():
            line = launcher.stdout.readline().strip()
            if not line.isdigit():
                raise Skip(
                    "cannot be launched by another process: the launcher could not start the "
                    f"kernelspec's argv (exit status {launcher.wait()})"
                )
            kernel_pid = int(line)
            _connect(ctx, kc, kernel_pid)
        launcher.kill()  # SIGKILL: nothing gets a chance to tell the kernel
        launcher.wait()
        gone = _wait_gone(ctx, kernel_pid, ctx.options.parent_death_grace)
        if gone is None:
            raise Fail(
                f"the kernel (pid {kernel_pid}) was still running "
                f"{ctx.options.parent_death_grace:g} s after its parent (pid {launcher.pid}, "
                "the JPY_PARENT_PID it was given) was killed: it would outlive a crashed "
                "client or server forever"
            )
        return f"the kernel exited {gone:.1f} s after its parent (JPY_PARENT_PID) was killed"
    finally:
        kc.close_sockets()
        if launcher is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(launcher.pid, signal.SIGKILL)  # the kernel is in its group
            with contextlib.suppress(Exception):
                launcher.kill()
                launcher.wait(5)
            if launcher.stdout is not None:
                launcher.stdout.close()
        with contextlib.suppress(Exception):
            kc.km.cleanup_connection_file()
        kc.ctx.destroy(linger=0)


def _connect(ctx: Context, kc: KernelClient, pid: int) -> None:
    """Connect ``kc`` to the kernel launched on its km's connection file; wait until it
    answers kernel_info (the kernel must be running, not starting, when its parent dies)."""
    info: dict[str, Any] = dict(kc.km.get_connection_info())
    key = info["key"]
    kc.key = key if isinstance(key, bytes) else str(key).encode()
    kc.signature_scheme = str(info["signature_scheme"])
    kc.session = Session(kc.key, kc.signature_scheme, replay_history=0)
    kc.connect()
    deadline = time.monotonic() + ctx.options.startup_timeout
    while True:
        if not _running(pid):
            raise Skip(
                "cannot be launched by another process: the kernel exited at start-up when "
                "launched with JPY_PARENT_PID by an intermediate process"
            )
        msg_id = kc.send("shell", "kernel_info_request", {})
        try:
            kc.reply("shell", msg_id, timeout=1.0)
            return
        except NoReply:
            if time.monotonic() > deadline:
                raise Skip(
                    "cannot be launched by another process: no kernel_info_reply within "
                    f"{ctx.options.startup_timeout:g} s"
                ) from None
