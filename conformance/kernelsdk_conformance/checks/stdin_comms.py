"""The checks of conversations beyond one reply: stdin (input and password requests), comms
(open, msg, close, comm_info, and their busy/idle), and stop_on_error (what a failing cell
aborts).

Spec references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import zmq

from .._client import KernelClient, Msg, NoReply, stream_text
from .._registry import Context, Fail, Skip, check
from ._helpers import MARK, OPTIONAL_WAIT, bracket, expect, status_ok

# -- stdin ----------------------------------------------------------------------------------


def _answer_input(kc: KernelClient, msg_id: str, value: str) -> Msg:
    req = kc.recv_raw("stdin", kc.timeout)
    if req is None:
        raise Fail("no input_request on stdin")
    if req.msg_type != "input_request":
        raise Fail(f"stdin got {req.msg_type}, not input_request")
    if req.parent_id != msg_id:
        if isinstance(req.parent_header, dict) and not req.parent_header:
            kc.send("stdin", "input_reply", {"value": value}, parent=req.header)  # unblock it
            raise Fail("input_request was sent with an empty parent header (not the execute's)")
        raise Fail("input_request.parent_header is not the execute_request")
    kc.send("stdin", "input_reply", {"value": value}, parent=req.header)
    return req


@check(
    "stdin",
    "input_request round trip with prompt and password flag; nothing asked when "
    "allow_stdin is false",
    "Messages on the stdin (ROUTER/DEALER) channel; Execute: allow_stdin",
)
def stdin(ctx: Context) -> str:
    prompt = "conformance prompt: "
    code = ctx.sample("code_input", prompt=prompt)
    kc = ctx.kernel()
    problems = []
    value = f"{MARK}-{uuid.uuid4().hex[:6]}"
    msg_id = kc.execute(code, allow_stdin=True)
    req = _answer_input(kc, msg_id, value)
    # A template without {prompt} reads without one (e.g. Lua's io.read): nothing to compare.
    wants_prompt = "{prompt" in str(ctx.profile.code_input)
    got = req.content.get("prompt")
    # Compared without surrounding whitespace: no protocol rule covers it, and languages that
    # trim their arguments drop the trailing space of the suite's prompt.
    if wants_prompt and (not isinstance(got, str) or got.strip() != prompt.strip()):
        problems.append(f"input_request.prompt {got!r}, expected {prompt!r}")
    if req.content.get("password") is not False:
        problems.append(f"input_request.password is {req.content.get('password')!r} for input")
    reply = kc.reply("shell", msg_id)
    msgs = kc.collect(msg_id)
    status_ok(reply, "execute with input")
    if value not in stream_text(msgs):
        problems.append("the value sent in input_reply was not printed")
    done = ["round trip"]
    pw = ctx.profile.code("code_password")
    if pw is not None:
        msg_id = kc.execute(pw, allow_stdin=True)
        req = _answer_input(kc, msg_id, value)
        if req.content.get("password") is not True:
            problems.append(
                f"input_request.password is {req.content.get('password')!r} for a password"
            )
        kc.reply("shell", msg_id)
        kc.collect(msg_id)
        done.append("password flag")
    msg_id = kc.execute(code, allow_stdin=False)
    poller = zmq.Poller()
    poller.register(kc.socks["shell"], zmq.POLLIN)
    poller.register(kc.socks["stdin"], zmq.POLLIN)
    ready = dict(poller.poll(int(kc.timeout * 1000)))
    stray = kc.recv_raw("stdin", 0.3 if kc.socks["shell"] in ready else 0)
    if stray is not None:
        problems.append(f"allow_stdin=False but the kernel sent {stray.msg_type} on stdin")
        kc.send("stdin", "input_reply", {"value": ""}, parent=stray.header)  # unblock it
    else:
        done.append("allow_stdin=False honoured")
    kc.reply("shell", msg_id)
    kc.collect(msg_id)
    expect(problems, "stdin")
    return ", ".join(done)


# -- comms ----------------------------------------------------------------------------------


def _wait_iopub(
    kc: KernelClient, since: int, pred: Callable[[Msg], bool], timeout: float
) -> Msg | None:
    """The first IOPub message since ``kc.log[since]`` matching ``pred``, waiting up to
    ``timeout`` (what is read meanwhile stays in the backlog for later collects)."""
    assert kc.iopub is not None
    deadline = time.monotonic() + timeout
    while True:
        for m in kc.log[since:]:
            if m.channel == "iopub" and pred(m):
                return m
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        msg = kc._recv(kc.iopub, "iopub", remaining)
        if msg is None:
            return None
        kc._iopub_backlog.append(msg)


def _comm_answer(kc: KernelClient, since: int, mid: str, msg_type: str, comm_id: str) -> str | None:
    """Wait for the kernel's ``msg_type`` on ``comm_id`` answering the comm message ``mid``;
    None if it came with ``mid`` as parent, else what is wrong with it."""

    def of_comm(m: Msg) -> bool:
        content = m.content if isinstance(m.content, dict) else {}
        return m.msg_type == msg_type and content.get("comm_id") == comm_id

    got = _wait_iopub(kc, since, lambda m: of_comm(m) and m.parent_id == mid, kc.timeout)
    if got is not None:
        return None
    others = [m for m in kc.log[since:] if m.channel == "iopub" and of_comm(m)]
    if any(isinstance(m.parent_header, dict) and not m.parent_header for m in others):
        return f"{msg_type} was sent with an empty parent header (it must carry the request's)"
    if others:
        return f"{msg_type} was sent with another parent header than the message it answers"
    seen = [m.describe() for m in kc.log[since:] if m.channel == "iopub" and m.parent_id == mid]
    return f"no {msg_type} (IOPub for it: {seen})"


@check(
    "comms",
    "comm_info; comm_open to an unknown target answered with comm_close; round trip "
    "through the profile's comm target (busy/idle around them: comm_status)",
    "Custom messages (comm_open: 'the receiver MUST ... immediately send a comm_close'); "
    "comm_info (5.1)",
)
def comms(ctx: Context) -> str:
    kc = ctx.kernel()
    problems = []
    try:
        reply = kc.reply("shell", kc.send("shell", "comm_info_request", {}), timeout=OPTIONAL_WAIT)
    except NoReply:
        raise Skip(
            f"no comm_info_reply within {OPTIONAL_WAIT:g}s: the kernel does not claim comms "
            "(comm_info is optional)"
        ) from None
    status_ok(reply, "comm_info_request")
    if not isinstance(reply.content.get("comms"), dict):
        problems.append("comm_info_reply.comms is not a dict")
    comm_id = uuid.uuid4().hex
    since = len(kc.log)
    mid = kc.send(
        "shell",
        "comm_open",
        {"comm_id": comm_id, "target_name": f"{MARK}-no-such-target", "data": {}},
    )
    wrong = _comm_answer(kc, since, mid, "comm_close", comm_id)
    if wrong is not None:
        problems.append(f"comm_open to an unknown target: {wrong}")
    done = ["comm_info", "unknown target closed"] if not problems else []
    target = ctx.profile.comm_target
    if target:
        setup = ctx.profile.code_comm_setup
        if setup:
            r, _ = kc.run(setup)
            status_ok(r, "code_comm_setup")
        comm_id = uuid.uuid4().hex
        kc.send("shell", "comm_open", {"comm_id": comm_id, "target_name": target, "data": {}})
        # Shell messages are handled in order: comm_info sees the comm opened.
        info = kc.reply("shell", kc.send("shell", "comm_info_request", {"target_name": target}))
        listed = info.content.get("comms", {})
        if comm_id not in listed:
            problems.append(f"comm_info_reply does not list the open comm ({listed})")
        since = len(kc.log)
        mid = kc.send("shell", "comm_msg", {"comm_id": comm_id, "data": {"ping": MARK}})
        wrong = _comm_answer(kc, since, mid, "comm_msg", comm_id)
        if wrong is not None:
            problems.append(f"comm_msg to target {target!r}: {wrong}")
        kc.send("shell", "comm_close", {"comm_id": comm_id, "data": {}})
        done.append(f"round trip through {target!r}")
    kc.barrier()
    kc.drain_iopub(0.3)
    expect(problems, "comms")
    return ", ".join(done)


@check(
    "comm_status",
    "status busy and idle around comm_info_request, comm_open, comm_msg and comm_close sent "
    "to an idle kernel",
    "Kernel status ('When the kernel receives a request and begins processing it, the kernel "
    "shall immediately publish ... busy'; ... 'idle'); Custom messages",
)
def comm_status(ctx: Context) -> str:
    kc = ctx.kernel()
    try:
        kc.reply("shell", kc.send("shell", "comm_info_request", {}), timeout=OPTIONAL_WAIT)
    except NoReply:
        raise Skip(
            f"no comm_info_reply within {OPTIONAL_WAIT:g}s: the kernel does not claim comms "
            "(comm_info is optional)"
        ) from None
    kc.drain_iopub(0.3)
    comm_id = uuid.uuid4().hex
    sent = [
        ("comm_info_request", {}),
        ("comm_open", {"comm_id": comm_id, "target_name": f"{MARK}-no-such-target", "data": {}}),
        ("comm_msg", {"comm_id": comm_id, "data": {}}),  # to the comm closed at once
        ("comm_close", {"comm_id": comm_id, "data": {}}),
    ]
    problems: list[str] = []
    for msg_type, content in sent:
        # One at a time, nothing sent behind it: a kernel may handle a comm message without
        # status while a request is queued (not to flip the frontend to idle mid-request).
        mid = kc.send("shell", msg_type, content)
        wait = 1.0 if problems else kc.timeout  # once one failed, the rest refine the message
        try:
            msgs = kc.collect(mid, timeout=wait)
        except NoReply:
            msgs = [m for m in kc.log if m.channel == "iopub" and m.parent_id == mid]
            kinds = [m.describe() for m in msgs] or "no IOPub message at all"
            problems.append(f"{msg_type}: no status idle within {wait:g} s ({kinds})")
            continue
        problems += bracket(msgs, msg_type)
    kc.drain_iopub(0.3)
    expect(problems, "comm_status")
    return "busy/idle around comm_info_request, comm_open, comm_msg and comm_close"


# -- stop_on_error --------------------------------------------------------------------------


@check(
    "stop_on_error",
    "after an error with stop_on_error, requests already queued are aborted (not run); "
    "later ones run; stop_on_error=False aborts nothing",
    "Execute: stop_on_error",
)
def stop_on_error(ctx: Context) -> str:
    fail = ctx.sample("code_generate_error")
    hello = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    problems = []
    # A sleep first, so the failing request and the one behind it are both surely queued
    # when the error happens ("already queued" is what gets aborted).
    sleep = ctx.profile.code("code_sleep", seconds=0.5)
    e0 = kc.execute(sleep) if sleep is not None else None
    e1 = kc.execute(fail, stop_on_error=True)
    e2 = kc.execute(hello)
    if e0 is not None:
        kc.reply("shell", e0, timeout=kc.timeout + 0.5)
        kc.collect(e0)
    r1, r2 = kc.reply("shell", e1), kc.reply("shell", e2)
    kc.collect(e1)
    m2 = kc.collect(e2)
    if r1.content.get("status") != "error":
        problems.append(f"failing code: status {r1.content.get('status')!r}")
    if r2.content.get("status") == "ok" or any(m.msg_type == "execute_input" for m in m2):
        problems.append(
            f"a request queued behind the error ran (status {r2.content.get('status')!r}, "
            f"{_what(r2, m2)})"
        )
    r3, _ = kc.run(hello)
    if r3.content.get("status") != "ok":
        problems.append(
            f"a request sent after the abort was not run ({r3.content.get('status')!r})"
        )
    e4 = kc.execute(fail, stop_on_error=False)
    e5 = kc.execute(hello)
    kc.reply("shell", e4)
    r5 = kc.reply("shell", e5)
    kc.collect(e4)
    m5 = kc.collect(e5)
    if r5.content.get("status") != "ok":
        problems.append(
            f"after an error with stop_on_error=False the next request was not run normally "
            f"(status {r5.content.get('status')!r}, {_what(r5, m5)})"
        )
    expect(problems, "stop_on_error")
    return f"queued request {r2.content.get('status')}, later ones ran"


def _what(reply: Msg, msgs: list[Msg]) -> str:
    c = reply.content if isinstance(reply.content, dict) else {}
    err = f"{c.get('ename')}: {c.get('evalue')}; " if c.get("ename") else ""
    return err + f"IOPub {[m.describe() for m in msgs]}"
