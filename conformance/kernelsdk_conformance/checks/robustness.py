"""Security and robustness checks: signatures and replays (security), malformed and fuzzed
messages the kernel must survive (robustness, seeded random frames), and the schema of every message
every check received (schema, run last).

Spec references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

import zmq

from kernelsdk.protocol import Session

from .._client import KernelClient, Msg, NoReply
from .._registry import Context, Fail, Skip, check
from .._schema import parentless_outputs, validate
from ._fuzz import MalformedMessages
from ._helpers import MARK, OPTIONAL_WAIT, expect, status_ok

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
    expect(problems, "security")
    return f"{len(attacks) + 2} forged or replayed messages refused; still serving"


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
    "unknown msg_types, a huge message, client churn and seeded random malformed frames "
    "never kill the kernel or stop it answering",
    "Compatibility ('kernels ... must tolerate unknown message types')",
)
def robustness(ctx: Context) -> str:
    kc = ctx.kernel()
    for channel in ("shell", "control"):
        kc.send(channel, f"{MARK.replace('-', '_')}_request", {"x": 1})
    dropped = _still_serving(kc, ctx, "unknown msg_types")
    size = 8 * 2**20
    reply, _ = kc.request("shell", "kernel_info_request", {"padding": "x" * size})
    status_ok(reply, f"kernel_info_request with {size >> 20} MiB of extra content")
    for _ in range(20):
        sock = kc.ctx.socket(zmq.DEALER)
        sock.linger = 0
        kc.secure(sock).connect(kc.km._make_url("shell"))
        _, frames = kc.frames("kernel_info_request", {})
        sock.send_multipart(frames)
        sock.close(linger=0)
    dropped += _still_serving(kc, ctx, "client churn")
    sent, seed = _fuzz(ctx, kc)
    dropped += _still_serving(kc, ctx, f"{sent} malformed messages")
    kc.drain_iopub(0.3)
    note = f" (a valid request dropped on {'; '.join(dropped)})" if dropped else ""
    fuzzed = f"{sent} fuzzed messages (seed {seed})"
    return f"unknown types, {size >> 20} MiB message, churn, {fuzzed} survived{note}"


def _fuzz(ctx: Context, kc: KernelClient) -> tuple[int, int]:
    """Send ``fuzz_budget`` malformed messages; how many, and their seed. Fails if the kernel
    dies, or takes no message for the whole timeout."""
    budget = ctx.options.fuzz_budget
    seed = ctx.options.fuzz_seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    messages = MalformedMessages(seed, kc.session.sign)
    recent: list[tuple[str, list[bytes]]] = []
    for number in range(1, max(0, budget) + 1):
        channel, frames = messages.next()
        recent = [*recent[-4:], (channel, frames)]
        try:
            kc.send_frames(channel, frames)
        except NoReply as exc:
            raise Fail(f"fuzzed message {number} (seed {seed}): {exc}{_shown(recent)}") from None
        time.sleep(0.005)
        if not kc.alive() or (number == budget and kc.wait_exit(0.3)):
            raise Fail(
                f"the kernel died during fuzzing, after message {number} (--fuzz-seed {seed} "
                f"sends the same messages again){_shown(recent)}"
            )
    # Answers and input replies of fuzzed requests: read and forget (they are logged).
    time.sleep(0.2)
    for channel in ("shell", "control", "stdin"):
        while kc.recv_raw(channel, 0.05) is not None:
            pass
    return max(0, budget), seed


def _shown(recent: list[tuple[str, list[bytes]]]) -> str:
    return "; the last ones sent: " + "; ".join(f"{ch}: {fr!r}"[:300] for ch, fr in recent)


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
