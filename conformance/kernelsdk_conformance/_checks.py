"""The checks. Each returns a pass message, or raises Skip / Fail with a precise reason.

Spec references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from kernelsdk import RemoteProtocolError, Session

from ._client import (
    DELIM,
    KernelClient,
    Msg,
    NoReply,
    is_status,
    stream_text,
)
from ._handshake import RegisteringKernel
from ._runner import Context, Fail, Skip, check
from ._schema import parentless_outputs, validate

MARK = "kernelsdk-conformance"
#: how long to wait for the reply to an optional message type before deciding it is unhandled
OPTIONAL_WAIT = 5.0


def _expect(problems: list[str], what: str) -> None:
    if problems:
        raise Fail(f"{what}: " + "; ".join(problems))


def _status_ok(reply: Msg, what: str) -> None:
    status = reply.content.get("status") if isinstance(reply.content, dict) else None
    if status != "ok":
        evalue = reply.content.get("evalue", "") if isinstance(reply.content, dict) else ""
        raise Fail(f"{what}: reply status {status!r} (expected 'ok') {evalue}".rstrip())


def _bracket(msgs: list[Msg], what: str) -> list[str]:
    """busy first, idle last, exactly once each."""
    problems = []
    kinds = [m.describe() for m in msgs]
    if not msgs or not is_status(msgs[0], "busy"):
        problems.append(f"{what}: first IOPub message is not status busy ({kinds})")
    if not msgs or not is_status(msgs[-1], "idle"):
        problems.append(f"{what}: last IOPub message is not status idle ({kinds})")
    busy = sum(is_status(m, "busy") for m in msgs)
    idle = sum(is_status(m, "idle") for m in msgs)
    if busy != 1 or idle != 1:
        problems.append(f"{what}: {busy} busy and {idle} idle statuses ({kinds})")
    return problems


def _late(kc: KernelClient, parent_id: str, quiet: float = 0.5) -> list[Msg]:
    """IOPub messages for ``parent_id`` arriving after its idle (within ``quiet`` s)."""
    late = []
    deadline = time.monotonic() + quiet
    while (remaining := deadline - time.monotonic()) > 0:
        msg = kc.recv_iopub(remaining)
        if msg is None:
            break
        if msg.parent_id == parent_id:
            late.append(msg)
    return late


def _version_tuple(version: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(version).split(".")[:2])
    except ValueError:
        return None


# -- kernel_info ----------------------------------------------------------------------------


@check(
    "kernel_info",
    "kernel_info on shell and on control: valid reply, busy/idle around it, language",
    "Messages on the shell channel > Kernel info; 5.5: kernel_info on control (JEP 80)",
)
def kernel_info(ctx: Context) -> str:
    kc = ctx.kernel()
    problems = []
    reply, msgs = kc.request("shell", "kernel_info_request", {})
    _status_ok(reply, "kernel_info on shell")
    problems += validate(reply)
    if (missing := kc.missing_status(str(reply.parent_id))) is not None:
        # Found at start-up and said here only; checks that need the status skip.
        problems.append(f"{missing}; every request is bracketed by status busy and idle")
    else:
        problems += _bracket(msgs, "kernel_info on shell")
    content = reply.content
    li = content.get("language_info", {}) if isinstance(content, dict) else {}
    p = ctx.profile
    if p.language_name and li.get("name") != p.language_name:
        problems.append(f"language_info.name {li.get('name')!r}, profile says {p.language_name!r}")
    if p.file_extension and li.get("file_extension") != p.file_extension:
        problems.append(
            f"language_info.file_extension {li.get('file_extension')!r}, "
            f"profile says {p.file_extension!r}"
        )
    control_note = ""
    try:
        creply = kc.reply("control", kc.send("control", "kernel_info_request", {}))
    except NoReply:
        claimed = _version_tuple(content.get("protocol_version")) or (0,)
        if claimed >= (5, 5):
            problems.append("no kernel_info_reply on the control channel (required since 5.5)")
        else:
            control_note = "; no kernel_info on control (not required before 5.5)"
    else:
        if creply.msg_type != "kernel_info_reply":
            problems.append(f"control answered kernel_info with {creply.msg_type}")
        problems += [f"control reply: {x}" for x in validate(creply)]
    _expect(problems, "kernel_info")
    return (
        f"{content.get('implementation')} {content.get('implementation_version')}, "
        f"protocol {content.get('protocol_version')}{control_note}"
    )


@check(
    "protocol_version",
    "the same protocol version in kernelspec, kernel_info and headers; claimed features answer",
    "kernels.rst 'Kernel specs' (kernel_protocol_version); Kernel info (protocol_version, "
    "supported_features, JEP 92)",
)
def protocol_version(ctx: Context) -> str:
    kc = ctx.kernel()
    reply, msgs = kc.request("shell", "kernel_info_request", {})
    content = reply.content if isinstance(reply.content, dict) else {}
    claimed = content.get("protocol_version")
    problems = []
    versions = {f"kernel_info.protocol_version {claimed}": _version_tuple(claimed)}
    spec_version = ctx.kernelspec.get("kernel_protocol_version")
    if spec_version:  # absent: JEP 105 says clients then assume < 5.5; nothing to compare
        versions[f"kernelspec kernel_protocol_version {spec_version}"] = _version_tuple(
            spec_version
        )
    header_versions = {
        m.header.get("version") for m in [reply, *msgs] if isinstance(m.header, dict)
    }
    for hv in sorted(str(v) for v in header_versions):
        versions[f"header version {hv}"] = _version_tuple(hv)
    distinct = {v for v in versions.values()}
    if len(distinct) > 1:
        problems.append("versions disagree: " + ", ".join(versions))
    features = content.get("supported_features") or []
    if not isinstance(features, list):
        features = []
    if "debugger" in features or content.get("debugger") is True:
        request = {"type": "request", "seq": 1, "command": "debugInfo", "arguments": {}}
        try:
            dreply = kc.reply("control", kc.send("control", "debug_request", request))
        except NoReply:
            problems.append("claims the debugger but debug_request (debugInfo) got no reply")
        else:
            if dreply.msg_type != "debug_reply":
                problems.append(f"debug_request answered with {dreply.msg_type}")
            elif isinstance(dreply.content, dict) and dreply.content.get("success") is False:
                problems.append(f"debugInfo failed: {dreply.content.get('message')}")
    if "kernel subshells" in features:
        try:
            sreply = kc.reply("control", kc.send("control", "list_subshell_request", {}))
        except NoReply:
            problems.append("claims kernel subshells but list_subshell_request got no reply")
        else:
            if not isinstance(sreply.content, dict) or sreply.content.get("status") != "ok":
                problems.append(f"list_subshell_request failed: {sreply.content}")
    _expect(problems, "protocol version")
    claims = f"; features {features} answer" if features else ""
    return f"{' = '.join(sorted(versions))}{claims}"


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
    _status_ok(reply, "execute hello world")
    problems += _bracket(msgs, "execute")
    if len(msgs) < 2 or msgs[1].msg_type != "execute_input":
        problems.append(
            f"second IOPub message is not execute_input ({[m.describe() for m in msgs]})"
        )
    elif msgs[1].content.get("code") != code:
        problems.append("execute_input.code is not the request's code")
    late = _late(kc, str(reply.parent_id))
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
        problems += _bracket(kc.collect(msg_id), msg_type)
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
    _expect(problems, "ordering")
    note = f" (no reply, optional: {', '.join(unanswered)})" if unanswered else ""
    if unbracketed:
        note += f" (no busy/idle, failed by kernel_info: {', '.join(unbracketed)})"
    return (
        f"busy/execute_input/outputs/idle; {bracketed} request types bracketed{note}; "
        "4 pipelined in order"
    )


# -- execution counts -----------------------------------------------------------------------


def _count(reply: Msg) -> Any:
    return reply.content.get("execution_count") if isinstance(reply.content, dict) else None


@check(
    "execution_count",
    "execution_count grows by one per store_history execution only; execute_input and "
    "execute_result carry the reply's count",
    "Execute: execution_count ('incremented ... when store_history is True'), execute_input",
)
def execution_count(ctx: Context) -> str:
    code = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    problems = []
    r1, m1 = kc.run(code)
    r2, m2 = kc.run(code)
    n1, n2 = _count(r1), _count(r2)
    if not isinstance(n1, int) or not isinstance(n2, int):
        raise Fail(f"execute_reply.execution_count is not an int: {n1!r}, {n2!r}")
    if n2 != n1 + 1:
        problems.append(f"two executions counted {n1} then {n2}")
    for reply, msgs in ((r1, m1), (r2, m2)):
        for m in msgs:
            if m.msg_type in ("execute_input", "execute_result") and m.content.get(
                "execution_count"
            ) != _count(reply):
                problems.append(
                    f"{m.msg_type}.execution_count {m.content.get('execution_count')} "
                    f"!= execute_reply's {_count(reply)}"
                )
    kc.run(code, store_history=False)
    r3, _ = kc.run(code)
    kc.run(code, silent=True)
    r5, _ = kc.run(code)
    n3, n5 = _count(r3), _count(r5)
    if n3 != n2 + 1:
        problems.append(f"a store_history=False execution advanced the count ({n2} -> {n3})")
    if isinstance(n3, int) and n5 != n3 + 1:
        problems.append(f"a silent execution advanced the count ({n3} -> {n5})")
    _expect(problems, "execution_count")
    return f"counts {n1}, {n2}; unchanged by store_history=False ({n3}) and silent ({n5})"


@check(
    "silent",
    "silent executions publish nothing but busy/idle (no execute_input, no output)",
    "Execute: silent ('will not broadcast output on the IOPUB channel, or have an execute_result')",
)
def silent(ctx: Context) -> str:
    code = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    reply, msgs = kc.run(code, silent=True)
    _status_ok(reply, "silent execute")
    extra = [m.describe() for m in msgs if m.msg_type != "status"]
    if extra:
        raise Fail(f"a silent execution published {extra}")
    return "only busy/idle"


@check(
    "user_expressions",
    "user_expressions evaluated after the cell, each {status, data, metadata}",
    "Execute: user_expressions",
)
def user_expressions(ctx: Context) -> str:
    samples = ctx.profile.user_expressions
    if not samples:
        raise Skip("not supported by the profile (user_expressions is empty)")
    code = ctx.profile.code_hello_world or ""
    kc = ctx.kernel()
    exprs = {f"e{i}": expr for i, expr in enumerate(samples)}
    reply, _ = kc.run(code, user_expressions=exprs)
    _status_ok(reply, "execute with user_expressions")
    got = reply.content.get("user_expressions")
    if not isinstance(got, dict):
        raise Fail(f"execute_reply.user_expressions is {got!r}, not a dict")
    problems = []
    for key, expr in exprs.items():
        item = got.get(key)
        if not isinstance(item, dict):
            problems.append(f"{key} ({expr!r}) missing from the reply")
            continue
        if item.get("status") != "ok":
            problems.append(f"{expr!r} status {item.get('status')!r}: {item.get('evalue')}")
            continue
        data = item.get("data")
        if not isinstance(data, dict) or not isinstance(item.get("metadata"), dict):
            problems.append(f"{expr!r}: data/metadata missing")
        elif data.get("text/plain") != samples[expr]:
            problems.append(f"{expr!r} gave {data.get('text/plain')!r}, expected {samples[expr]!r}")
    _expect(problems, "user_expressions")
    return f"{len(exprs)} expression(s) evaluated"


# -- security -------------------------------------------------------------------------------


def _barriers(kc: KernelClient, channel: str, code: str | None) -> tuple[list[Msg], bool]:
    """Send two valid requests back to back; return the replies that came before them, and
    whether the first one was dropped (no reply, though the second one got its reply).

    On shell with ``code``, the barriers are executes of it: requests of the same type as a
    suspect execute (executes are handled in order; some kernels answer kernel_info on shell
    ahead of queued executes). Otherwise they are kernel_info requests.
    """
    execute = channel == "shell" and code is not None
    if execute:
        first, second = (
            kc.execute(code or "", silent=True, store_history=False, stop_on_error=False)
            for _ in range(2)
        )
    else:
        first, second = (kc.send(channel, "kernel_info_request", {}) for _ in range(2))
    got = kc.replies_until(channel, second)
    dropped = not any(m.parent_id == first for m in got)
    if dropped:
        with contextlib.suppress(NoReply):  # a reply out of order is no drop
            got.append(kc.reply(channel, first, timeout=0.5))
            dropped = False
    if execute:
        if not dropped:
            kc.collect(first)
        kc.collect(second)
    return [m for m in got if m.parent_id not in (first, second)], dropped


def _evidence(
    kc: KernelClient, msg_id: str, channel: str, code: str = ""
) -> tuple[list[str], bool]:
    """Everything showing ``msg_id`` was acted on (replies before the barriers, IOPub
    traffic), and whether the valid request sent right after it was dropped."""
    others, dropped = _barriers(kc, channel, code)
    kc.drain_iopub(0.3)
    found = [f"{m.channel}:{m.msg_type}" for m in others if m.parent_id == msg_id]
    found += [m.describe() for m in kc.log if m.channel == "iopub" and m.parent_id == msg_id]
    return found, dropped


@check(
    "security",
    "tampered, unsigned, wrong-key, wrong-scheme and replayed messages are never acted on; "
    "the kernel still serves",
    "Wire protocol: 'the HMAC signature ... used to authenticate messages'; security.rst",
)
def security(ctx: Context) -> str:
    kc = ctx.kernel()
    if not kc.session.signs:
        raise Skip("the connection file has no key: signing is disabled")
    code = ctx.profile.code_hello_world or ""

    def execute_frames(session: Session | None = None) -> tuple[str, list[bytes]]:
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        return kc.frames("execute_request", content, session=session)

    # The control experiment: a valid message is acted on, visibly.
    msg_id, frames = execute_frames()
    kc.send_frames("shell", frames)
    seen, _ = _evidence(kc, msg_id, "shell", code)
    if "shell:execute_reply" not in seen or "iopub:execute_input" not in seen:
        raise Fail(f"control experiment: a valid execute_request showed only {seen}")
    attacks: list[tuple[str, str, str, list[bytes]]] = []
    # replay: the same bytes again; its msg_id has evidence already, so count it
    kc.send_frames("shell", frames)
    # What each forgery made the kernel drop: the valid request sent right behind it.
    dropped: dict[str, list[str]] = {"shell": [], "control": []}
    again, lost = _evidence(kc, msg_id, "shell", code)
    if lost:
        dropped["shell"].append("a replay")
    problems = []
    if again.count("iopub:execute_input") > 1 or "shell:execute_reply" in again:
        problems.append("shell: a replayed execute_request was executed again")
    other_key = kc.key + b"-wrong"
    wrong_scheme = "hmac-sha512" if kc.signature_scheme != "hmac-sha512" else "hmac-sha256"
    for channel, msg_type in (("shell", "execute_request"), ("control", "kernel_info_request")):

        def make(session: Session | None = None, mt: str = msg_type) -> tuple[str, list[bytes]]:
            if mt == "execute_request":
                return execute_frames(session)
            return kc.frames(mt, {}, session=session)

        mid, f = make(Session(b"", "hmac-sha256"))
        attacks.append((channel, "unsigned", mid, f))
        mid, f = make(Session(other_key, kc.signature_scheme))
        attacks.append((channel, "wrong key", mid, f))
        mid, f = make(Session(kc.key, wrong_scheme))
        attacks.append((channel, f"wrong scheme ({wrong_scheme})", mid, f))
        mid, f = make()
        _, innocent = make()
        attacks.append((channel, "signature of another message", mid, [*innocent[:2], *f[2:]]))
        mid, f = make()
        flipped = bytearray(f[-1])
        flipped[-2] ^= 0x01
        attacks.append((channel, "one flipped content byte", mid, [*f[:-1], bytes(flipped)]))
    mid, f = kc.frames("kernel_info_request", {})
    kc.send_frames("control", f)
    kc.reply("control", mid)
    kc.send_frames("control", f)
    others, lost = _barriers(kc, "control", code)
    if lost:
        dropped["control"].append("a replay")
    if any(m.parent_id == mid for m in others):
        problems.append("control: a replayed kernel_info_request was answered again")
    for channel, what, mid, f in attacks:
        kc.send_frames(channel, f)
        try:
            evidence, lost = _evidence(kc, mid, channel, code)
        except NoReply:
            state = "alive" if kc.alive() else "dead"
            problems.append(
                f"{channel}: after a message with {what}, the kernel stopped answering "
                f"(a valid request got no reply in {kc.timeout:g}s; process {state})"
            )
            break
        if evidence:
            problems.append(f"{channel}: {what}: acted on ({', '.join(evidence)})")
        if lost:
            dropped[channel].append(what)
    for channel, after in dropped.items():
        if after:
            problems.append(
                f"{channel}: dropped the valid request sent after a forged one (after "
                f"{len(after)} of them: {', '.join(after)}); the next request was answered"
            )
    if not kc.alive():
        problems.append("the kernel died during the attacks")
    elif not any("stopped answering" in p for p in problems):
        kc.barrier()
    _expect(problems, "security")
    return f"{len(attacks) + 2} forged or replayed messages refused; still serving"


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
        _status_ok(reply, "interrupt_request")
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
        _status_ok(reply, "execution after interrupts")
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
        _expect(problems, "shutdown")
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
        _expect(problems, "restart")
        kc.km.restart_kernel(now=True)
        kc.connect()
        kc.wait_ready()
        reply, _ = kc.request("shell", "kernel_info_request", {})
        if reply.header.get("session") == old_session:
            raise Fail("the restarted kernel kept the old header.session")
    return "restarted in place on the same ports with a new session"


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
    _status_ok(reply, "execute with input")
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
    _expect(problems, "stdin")
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
    _status_ok(reply, "comm_info_request")
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
            _status_ok(r, "code_comm_setup")
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
    _expect(problems, "comms")
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
        problems += _bracket(msgs, msg_type)
    kc.drain_iopub(0.3)
    _expect(problems, "comm_status")
    return "busy/idle around comm_info_request, comm_open, comm_msg and comm_close"


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
    _status_ok(reply, "hello world")
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
    _expect(problems, "streams")
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
        _status_ok(reply, "display with display_id")
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
            _status_ok(reply, "update_display")
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
        _status_ok(reply, "clear_output")
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
    _expect(problems, "display")
    return ", ".join(done)


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
    _expect(problems, "stop_on_error")
    return f"queued request {r2.content.get('status')}, later ones ran"


def _what(reply: Msg, msgs: list[Msg]) -> str:
    c = reply.content if isinstance(reply.content, dict) else {}
    err = f"{c.get('ename')}: {c.get('evalue')}; " if c.get("ename") else ""
    return err + f"IOPub {[m.describe() for m in msgs]}"


# -- robustness -----------------------------------------------------------------------------


def _still_serving(kc: KernelClient, ctx: Context, after: str) -> list[str]:
    """Fail unless the kernel is alive and answers on shell and control. Two requests are
    sent on each: a kernel that drops the first one (as some do after an invalid message:
    the security check's business) but answers the second still serves. Returns what was
    dropped, for the pass message."""
    if not kc.alive():
        raise Fail(f"the kernel died after {after}")
    dropped = []
    try:
        for channel in ("shell", "control"):
            if _barriers(kc, channel, None)[1]:
                dropped.append(f"{channel} after {after}")
    except NoReply:
        raise Fail(f"the kernel stopped answering after {after}") from None
    return dropped


@check(
    "robustness",
    "unknown msg_types, a huge message, client churn and hypothesis-generated malformed "
    "frames never kill the kernel or stop it answering",
    "Compatibility ('kernels ... must tolerate unknown message types')",
)
def robustness(ctx: Context) -> str:
    kc = ctx.kernel()
    for channel in ("shell", "control"):
        kc.send(channel, f"{MARK.replace('-', '_')}_request", {"x": 1})
    dropped = _still_serving(kc, ctx, "unknown msg_types")
    size = 8 * 2**20
    reply, _ = kc.request("shell", "kernel_info_request", {"padding": "x" * size})
    _status_ok(reply, f"kernel_info_request with {size >> 20} MiB of extra content")
    for _ in range(20):
        sock = kc.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(kc.km._make_url("shell"))
        _, frames = kc.frames("kernel_info_request", {})
        sock.send_multipart(frames)
        sock.close(linger=0)
    dropped += _still_serving(kc, ctx, "client churn")
    sent = _fuzz(ctx, kc)
    dropped += _still_serving(kc, ctx, f"{sent} malformed messages")
    kc.drain_iopub(0.3)
    note = f" (a valid request dropped on {'; '.join(dropped)})" if dropped else ""
    return f"unknown types, {size >> 20} MiB message, churn, {sent} fuzzed messages survived{note}"


#: one fuzz run at a time per process: hypothesis' storage directory is a global
_FUZZ_LOCK = threading.Lock()


@contextlib.contextmanager
def _hypothesis_storage() -> Iterator[None]:
    """Hypothesis' storage directory (its charmap and constants caches; the example database
    is off) in the user's cache dir, not ``.hypothesis/`` in the working directory."""
    from hypothesis import configuration

    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield  # the user chose where
        return
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    saved = getattr(configuration, "__hypothesis_home_directory", None)
    configuration.set_hypothesis_home_dir(
        os.path.join(cache, "kernelsdk-conformance", "hypothesis")
    )
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(saved)


def _fuzz(ctx: Context, kc: KernelClient) -> int:
    with _FUZZ_LOCK, _hypothesis_storage():
        return _fuzz_unlocked(ctx, kc)


def _fuzz_unlocked(ctx: Context, kc: KernelClient) -> int:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    budget = ctx.options.fuzz_budget
    if budget <= 0:
        return 0
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    json_values = (
        scalars
        | st.lists(scalars, max_size=3)
        | st.dictionaries(st.text(max_size=8), scalars, max_size=3)
    )
    header_fields = st.fixed_dictionaries(
        {},
        optional={
            "msg_id": json_values,
            "msg_type": st.sampled_from(
                [
                    "execute_request",
                    "kernel_info_request",
                    "complete_request",
                    "comm_open",
                    "comm_msg",
                    "inspect_request",
                    "history_request",
                    "shutdown_request",
                    "interrupt_request",
                    "input_reply",
                    "is_complete_request",
                ]
            )
            | json_values,
            "session": json_values,
            "username": json_values,
            "date": json_values,
            "version": json_values,
        },
    )
    signed_garbage = st.tuples(header_fields, json_values, json_values, json_values).map(
        lambda t: ("signed", [json.dumps(x).encode() for x in t])
    )
    raw_frames = st.tuples(st.booleans(), st.lists(st.binary(max_size=64), max_size=8)).map(
        lambda t: ("raw", [DELIM, *t[1]] if t[0] else t[1])
    )
    undecodable = st.lists(st.binary(max_size=32), min_size=4, max_size=4).map(
        lambda f: ("signed", f)
    )
    messages = st.tuples(
        st.sampled_from(["shell", "control"]), st.one_of(signed_garbage, raw_frames, undecodable)
    )
    sent = 0
    recent: list[tuple[str, list[bytes]]] = []
    died_after: list[int] = []

    @settings(
        max_examples=budget,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(messages)
    def send_one(item: tuple[str, tuple[str, list[bytes]]]) -> None:
        nonlocal sent
        if died_after:
            return
        channel, (kind, parts) = item
        if kind == "signed":
            # Validly signed garbage, but never a real shutdown request.
            if parts and b"shutdown_request" in parts[0]:
                parts = [parts[0].replace(b"shutdown_request", b"shutdown_requesx"), *parts[1:]]
            frames = [DELIM, kc.session.sign(parts), *parts]
        else:
            frames = parts
        if not frames:
            frames = [b""]
        kc.send_frames(channel, frames)
        sent += 1
        recent.append((channel, frames))
        del recent[:-5]
        time.sleep(0.005)
        if not kc.alive():
            died_after.append(sent)

    send_one()
    if not died_after and kc.wait_exit(0.3):
        died_after.append(sent)
    if died_after:
        shown = "; ".join(f"{ch}: {frames!r}"[:300] for ch, frames in recent)
        raise Fail(
            f"the kernel died during fuzzing, after message {died_after[0]}; the last ones "
            f"sent: {shown}"
        )
    # Answers and input replies of fuzzed requests: read and forget (they are logged).
    time.sleep(0.2)
    for channel in ("shell", "control", "stdin"):
        while kc.recv_raw(channel, 0.05) is not None:
            pass
    return sent


# -- iopub_welcome --------------------------------------------------------------------------


@check(
    "iopub_welcome",
    "an iopub_welcome (empty parent, subscription '') for each new IOPub subscriber",
    "IOPub welcome (5.5, JEP 65)",
)
def iopub_welcome(ctx: Context) -> str:
    kc = ctx.kernel()
    claimed_text = str(ctx.info().get("protocol_version"))
    claimed = _version_tuple(claimed_text) or (0,)
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
    _expect(problems, "iopub_welcome")
    return "welcome on first and second subscription"


@check(
    "handshake",
    "started from a registration file, the kernel reports its ports, signed, and serves them",
    "Kernel startup handshake (JEP 66; kernels.rst, protocol 5.6)",
)
def handshake(ctx: Context) -> str:
    claimed_text = str(ctx.kernelspec.get("kernel_protocol_version") or "5.0")
    claimed = (_version_tuple(claimed_text) or (0,)) >= (5, 6)
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


# -- samples (what jupyter_kernel_test covers, kept for completeness) -----------------------


@check(
    "completion",
    "complete_request and is_complete_request samples",
    "Completion; Code completeness",
)
def completion(ctx: Context) -> str:
    p = ctx.profile
    kc = ctx.kernel()
    problems = []
    n = 0
    for sample in p.completion_samples:
        text = sample["text"]
        reply, _ = kc.request("shell", "complete_request", {"code": text, "cursor_pos": len(text)})
        _status_ok(reply, f"complete {text!r}")
        problems += validate(reply)
        expected = sample.get("matches")
        got = reply.content.get("matches") or []
        if expected is not None and not set(expected) <= set(got):
            problems.append(f"complete {text!r}: {sorted(got)} lacks {sorted(expected)}")
        n += 1
    for status, samples in (
        ("complete", p.complete_code_samples),
        ("incomplete", p.incomplete_code_samples),
        ("invalid", p.invalid_code_samples),
    ):
        for code in samples:
            reply, _ = kc.request("shell", "is_complete_request", {"code": code})
            problems += validate(reply)
            if reply.content.get("status") != status:
                problems.append(
                    f"is_complete {code!r}: {reply.content.get('status')!r}, not {status!r}"
                )
            n += 1
    if not n:
        raise Skip("not supported by the profile (no completion or is_complete samples)")
    _expect(problems, "completion")
    return f"{n} samples"


# -- schema (last: validates everything every check received) -------------------------------


@check(
    "schema",
    "every message received during the run: 5.5 header fields and version, ISO dates, known "
    "message types on their channels, every content field (history entries with and without "
    "output, completion, inspection, is_complete indent, comm_info, kernel_info and "
    "language_info), parent headers (outputs of a request carry it), replies of the "
    "request's type, unique msg_ids, valid signatures",
    "General Message Format; Message Header; The Wire Protocol; each message's section",
)
def schema(ctx: Context) -> str:
    kc = ctx.kernel()
    # Make sure the common message types were seen at least once, and the replies whose
    # shape depends on the request (history with and without output) with known requests.
    code = ctx.profile.code_hello_world or ""
    kc.run(code)
    kc.request("shell", "kernel_info_request", {})
    asked: dict[str, dict[str, Any]] = {}
    incomplete = ctx.profile.incomplete_code_samples[:1]
    requests: list[tuple[str, dict[str, Any]]] = [
        ("comm_info_request", {}),
        ("is_complete_request", {"code": code}),
        *(("is_complete_request", {"code": c}) for c in incomplete),
        ("complete_request", {"code": code, "cursor_pos": len(code)}),
        ("inspect_request", {"code": code, "cursor_pos": len(code), "detail_level": 0}),
        ("history_request", {"output": False, "raw": True, "hist_access_type": "tail", "n": 3}),
        ("history_request", {"output": True, "raw": True, "hist_access_type": "tail", "n": 3}),
    ]
    for msg_type, content in requests:
        asked[kc.send("shell", msg_type, content)] = content
    deadline = time.monotonic() + OPTIONAL_WAIT  # one wait for all: these types are optional
    for msg_id in asked:
        try:
            kc.reply("shell", msg_id, timeout=max(0.0, deadline - time.monotonic()))
        except NoReply:
            continue
        with contextlib.suppress(NoReply):  # a missing idle is the ordering check's business
            kc.collect(msg_id, timeout=max(0.5, deadline - time.monotonic()))
    kc.drain_iopub(0.2)
    problems: dict[str, int] = {}
    examples: dict[str, str] = {}
    total = 0
    for client in ctx.clients:
        seen_ids: dict[str, str] = {}
        orphans: dict[int, str] = {id(m): why for m, why in parentless_outputs(client.log)}
        for msg in client.log:
            total += 1
            found = validate(msg, asked.get(msg.parent_id or "") if client is kc else None)
            if id(msg) in orphans:
                found.append(orphans[id(msg)])
            mid = msg.header.get("msg_id") if isinstance(msg.header, dict) else None
            if isinstance(mid, str):
                if mid in seen_ids:
                    found.append(f"msg_id {mid!r} reused (first by {seen_ids[mid]})")
                else:
                    seen_ids[mid] = msg.describe()
            sent = client.sent_headers.get(msg.parent_id or "")
            if sent is not None and isinstance(msg.parent_header, dict):
                differ = sorted(
                    k for k in sent if k != "date" and msg.parent_header.get(k) != sent[k]
                )
                if differ:
                    found.append(f"parent_header is not the request's header (differs in {differ})")
                request_type = str(sent.get("msg_type", ""))
                if (
                    msg.channel in ("shell", "control")
                    and request_type.endswith("_request")
                    and msg.msg_type != request_type[: -len("_request")] + "_reply"
                ):
                    found.append(f"answers a {request_type}")
            for problem in found:
                key = f"{msg.channel}:{msg.msg_type}: {problem}"
                problems[key] = problems.get(key, 0) + 1
                examples.setdefault(key, repr(msg.header)[:160])
    if problems:
        lines = [f"{k} (x{n})" for k, n in sorted(problems.items())]
        raise Fail(f"{len(problems)} kind(s) of invalid message: " + "; ".join(lines[:12]))
    return f"{total} messages valid"
