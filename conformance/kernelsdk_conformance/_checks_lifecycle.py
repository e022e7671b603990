"""Lifecycle checks: a cell waiting for input meets an interrupt or a shutdown; the parent dies.

Each of them caught a fault a new user of kernelsdk met: the input of an interrupted cell that
kept waiting and printed (with the old parent) after that cell's idle; a kernel that never
exited when shut down during input; a kernel that outlived the process that launched it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

from kernelsdk import Session

from ._checks import MARK, _interrupt
from ._client import KernelClient, Msg, NoReply, is_status, stream_text
from ._runner import Context, Fail, Skip, check

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
    if status not in ("error", "abort"):
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
