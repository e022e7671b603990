"""IOPub checks: busy/idle ordering around every request, streams, display data (and its
updates and clearing), and the IOPub welcome of protocol 5.5.

Spec references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .._client import KernelClient, Msg, NoReply, is_status, stream_text
from .._registry import Context, Fail, Skip, check
from .._schema import validate
from ._helpers import MARK, OPTIONAL_WAIT, bracket, expect, late_outputs, status_ok, version_tuple

# -- ordering -------------------------------------------------------------------------------


@check(
    "ordering",
    "busy, execute_input, outputs, idle for every request; nothing after idle; pipelined "
    "requests answered in order, their IOPub never interleaved",
    "Request-Reply; Kernel status ('busy' ... 'idle' for every request); execute_input",
)
def ordering(ctx: Context) -> str:
    code = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    problems: list[str] = []
    reply, msgs = kc.run(code)
    status_ok(reply, "execute hello world")
    problems += bracket(msgs, "execute")
    if len(msgs) < 2 or msgs[1].msg_type != "execute_input":
        problems.append(
            f"second IOPub message is not execute_input ({[m.describe() for m in msgs]})"
        )
    elif msgs[1].content.get("code") != code:
        problems.append("execute_input.code is not the request's code")
    late = late_outputs(kc, str(reply.parent_id))
    if late:
        problems.append(f"published after idle: {[m.describe() for m in late]}")
    # Every other request type gets its own busy/idle too.
    unanswered: list[str] = []
    unbracketed: list[str] = []
    bracketed = 0
    for msg_type, content in (
        ("kernel_info_request", {}),
        ("is_complete_request", {"code": code}),
        ("complete_request", {"code": code, "cursor_pos": len(code)}),
        ("inspect_request", {"code": code, "cursor_pos": len(code), "detail_level": 0}),
        ("history_request", {"output": False, "raw": True, "hist_access_type": "tail", "n": 1}),
        # comm_info_request: the comm_status check
    ):
        msg_id = kc.send("shell", msg_type, content)
        try:
            kc.reply(
                "shell",
                msg_id,
                timeout=OPTIONAL_WAIT if msg_type != "kernel_info_request" else None,
            )
        except NoReply:
            # Optional message types need no reply ("Kernels do not need to send any reply
            # for messages they don't handle"): not this check's business.
            unanswered.append(msg_type)
            continue
        if kc.missing_status(msg_id) is not None:
            unbracketed.append(msg_type)  # known from start-up; kernel_info reports it
            continue
        problems += bracket(kc.collect(msg_id), msg_type)
        bracketed += 1
    # Pipelined executes: sent back to back, answered in order.
    ids = [kc.execute(code) for _ in range(4)]
    got = kc.replies_until("shell", ids[-1])
    order = [m.parent_id for m in got if m.parent_id in ids]
    if order != ids:
        problems.append(f"pipelined replies out of order: {order} for requests {ids}")
    start = len(kc.log)
    for msg_id in ids:
        kc.collect(msg_id)
    # busy (and execute_input) may be published on receipt, ahead of earlier requests'
    # idle ("the kernel receives that request and immediately publishes a status: busy");
    # outputs and idle must come in request order, one request after the other.
    seq = [
        m
        for m in kc.log[start:]
        if m.channel == "iopub"
        and m.parent_id in ids
        and not is_status(m, "busy")
        and m.msg_type != "execute_input"
    ]
    seq_parents = [m.parent_id for m in seq]
    blocks = [p for i, p in enumerate(seq_parents) if i == 0 or seq_parents[i - 1] != p]
    if blocks != ids:
        problems.append(
            "outputs/idle of pipelined requests interleaved or out of order: "
            + ", ".join(f"{ids.index(str(m.parent_id))}:{m.describe()}" for m in seq)
        )
    expect(problems, "ordering")
    note = f" (no reply, optional: {', '.join(unanswered)})" if unanswered else ""
    if unbracketed:
        note += f" (no busy/idle, failed by kernel_info: {', '.join(unbracketed)})"
    return (
        f"busy/execute_input/outputs/idle; {bracketed} request types bracketed{note}; "
        "4 pipelined in order"
    )


# -- outputs --------------------------------------------------------------------------------


@check(
    "streams",
    "stdout and stderr streams by name; errors as an error reply plus an error message",
    "IOPub: Streams (name 'stdout'/'stderr'); Execution errors",
)
def streams(ctx: Context) -> str:
    kc = ctx.kernel()
    problems = []
    done = []
    hello = ctx.sample("code_hello_world")
    reply, msgs = kc.run(hello)
    status_ok(reply, "hello world")
    if "hello, world" not in stream_text(msgs):
        problems.append(f"no stdout stream with 'hello, world' ({[m.describe() for m in msgs]})")
    done.append("stdout")
    err = ctx.profile.code("code_stderr")
    if err is not None:
        reply, msgs = kc.run(err)
        if not any(m.msg_type == "stream" and m.content.get("name") == "stderr" for m in msgs):
            problems.append(f"no stderr stream ({[m.describe() for m in msgs]})")
        done.append("stderr")
    fail = ctx.profile.code("code_generate_error")
    if fail is not None:
        reply, msgs = kc.run(fail, stop_on_error=False)
        if reply.content.get("status") != "error":
            problems.append(f"failing code: reply status {reply.content.get('status')!r}")
        errors = [m for m in msgs if m.msg_type == "error"]
        if len(errors) != 1:
            problems.append(f"failing code published {len(errors)} error messages (expected 1)")
        elif errors[0].content.get("ename") != reply.content.get("ename"):
            problems.append("error message and execute_reply disagree on ename")
        done.append("error")
    expect(problems, "streams")
    return ", ".join(done)


def _parentless(kc: KernelClient, msg_type: str, since: int) -> list[Msg]:
    """``msg_type`` messages with an empty parent header received since ``kc.log[since]``."""
    return [
        m
        for m in kc.log[since:]
        if m.msg_type == msg_type and isinstance(m.parent_header, dict) and not m.parent_header
    ]


def _not_found(kc: KernelClient, msg_type: str, since: int, what: str, msgs: list[Msg]) -> str:
    """Why ``what`` (a ``msg_type``) is missing among a request's messages ``msgs``: not
    sent, or sent with an empty parent header (so no client can tell what it belongs to)."""
    if _parentless(kc, msg_type, since):
        return f"{what} was sent with an empty parent header (it must carry the request's header)"
    return f"no {what} ({[m.describe() for m in msgs]})"


def _display_id(m: Msg) -> Any:
    transient = m.content.get("transient") if isinstance(m.content, dict) else None
    return transient.get("display_id") if isinstance(transient, dict) else None


@check(
    "display",
    "display_data with transient.display_id, update_display_data of that id (the suite's id, "
    "or the one the kernel picked), clear_output, mime types",
    "IOPub: Display Data, Update Display Data (5.1), Clear output",
)
def display(ctx: Context) -> str:
    kc = ctx.kernel()
    p = ctx.profile
    problems = []
    done = []
    # A sample without {display_id} is for a language whose display call picks the id: the
    # id is then read from the display_data, and the same sample updates that display.
    own_id = p.code_display_id is not None and "{display_id" not in p.code_display_id
    display_id = f"{MARK}-{uuid.uuid4().hex[:8]}"
    code = p.code("code_display_id", display_id=display_id, text="first")
    if code is not None:
        since = len(kc.log)
        reply, msgs = kc.run(code)
        status_ok(reply, "display with display_id")
        shown = [
            m
            for m in msgs
            if m.msg_type == "display_data"
            and (isinstance(_display_id(m), str) if own_id else _display_id(m) == display_id)
        ]
        wanted = (
            "display_data with a transient.display_id"
            if own_id
            else f"display_data with transient.display_id {display_id!r}"
        )
        upd = None
        updates: list[Msg] = []
        if not shown:
            problems.append(_not_found(kc, "display_data", since, wanted, msgs))
        else:
            display_id = str(_display_id(shown[0]))
            done.append("display_id (picked by the kernel)" if own_id else "display_id")
            upd = p.code("code_update_display", display_id=display_id, text="second")
            if upd is None and own_id:
                updates = [m for m in msgs if m.msg_type == "update_display_data"]
                if not updates:
                    why = _not_found(kc, "update_display_data", since, "update_display_data", msgs)
                    problems.append(
                        "code_display_id has no {display_id}: it must display and then update "
                        f"that display, but {why}"
                    )
        if upd is not None:
            since = len(kc.log)
            reply, msgs = kc.run(upd)
            status_ok(reply, "update_display")
            updates = [m for m in msgs if m.msg_type == "update_display_data"]
            if not updates:
                problems.append(
                    _not_found(
                        kc,
                        "update_display_data",
                        since,
                        f"update_display_data for {display_id!r}",
                        msgs,
                    )
                )
        if updates:
            mine = [m for m in updates if _display_id(m) == display_id]
            if not mine:
                problems.append(
                    f"update_display_data for {sorted({str(_display_id(m)) for m in updates})}, "
                    f"not for the display's id {display_id!r}"
                )
            else:
                problems += [f"update_display_data: {x}" for x in validate(mine[0])]
                done.append("update_display_data")
    clear = p.code("code_clear_output")
    if clear is not None:
        since = len(kc.log)
        reply, msgs = kc.run(clear)
        status_ok(reply, "clear_output")
        if not any(m.msg_type == "clear_output" for m in msgs):
            problems.append(_not_found(kc, "clear_output", since, "clear_output", msgs))
        done.append("clear_output")
    for sample in p.code_display_data:
        since = len(kc.log)
        reply, msgs = kc.run(sample["code"])
        if not any(
            m.msg_type == "display_data" and sample["mime"] in (m.content.get("data") or {})
            for m in msgs
        ):
            what = f"display_data with {sample['mime']} for {sample['code']!r}"
            problems.append(_not_found(kc, "display_data", since, what, msgs))
        done.append(sample["mime"])
    if not done:
        raise Skip("not supported by the profile (no display samples)")
    expect(problems, "display")
    return ", ".join(done)


# -- iopub_welcome --------------------------------------------------------------------------


@check(
    "iopub_welcome",
    "an iopub_welcome (empty parent, subscription '') for each new IOPub subscriber",
    "IOPub welcome (5.5, JEP 65)",
)
def iopub_welcome(ctx: Context) -> str:
    kc = ctx.kernel()
    claimed_text = str(ctx.info().get("protocol_version"))
    claimed = version_tuple(claimed_text) or (0,)
    sub = kc.new_iopub()
    welcome = None
    try:
        deadline = time.monotonic() + 3.0
        while (remaining := deadline - time.monotonic()) > 0:
            msg = kc._recv(sub, "iopub", remaining, log=False)
            if msg is None:
                break
            if msg.msg_type == "iopub_welcome":
                welcome = msg
                break
    finally:
        sub.close(linger=0)
    first = bool(kc.welcomes)
    if welcome is None:
        if first:
            raise Fail(
                "the first IOPub subscriber got an iopub_welcome, a second one (same '' "
                "subscription, as every other client) got none within 3 s: an XPUB socket "
                "without ZMQ_XPUB_VERBOSE passes only the first identical subscription on"
            )
        if claimed >= (5, 5):
            raise Fail(
                f"no iopub_welcome, though kernel_info claims protocol {claimed_text} "
                "(5.5 replaced PUB by XPUB with a welcome message)"
            )
        raise Skip("no iopub_welcome and protocol < 5.5: not claimed")
    problems = validate(welcome)
    if welcome.content.get("subscription") != "":
        problems.append(f"subscription {welcome.content.get('subscription')!r}, expected ''")
    expect(problems, "iopub_welcome")
    return "welcome on first and second subscription"
