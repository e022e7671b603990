"""Security and robustness checks: signatures and replays (security), malformed and fuzzed
messages the kernel must survive (robustness, with hypothesis), and the schema of every message
every check received (schema, run last).

Spec references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq

from kernelsdk.protocol import Session

from .._client import DELIM, KernelClient, Msg, NoReply
from .._registry import Context, Fail, Skip, check
from .._schema import parentless_outputs, validate
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
    status_ok(reply, f"kernel_info_request with {size >> 20} MiB of extra content")
    for _ in range(20):
        sock = kc.ctx.socket(zmq.DEALER)
        sock.linger = 0
        kc.secure(sock).connect(kc.km._make_url("shell"))
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
    # What went wrong on the client's side while sending. Kept here rather than raised into
    # hypothesis: it would replay the example, and a send that failed once (a timeout on a
    # loaded machine) but not on the replay becomes a FlakyFailure that hides the cause.
    broke: list[tuple[int, BaseException]] = []

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
        if died_after or broke:
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
        recent.append((channel, frames))
        del recent[:-5]
        try:
            kc.send_frames(channel, frames)
            sent += 1
            time.sleep(0.005)
            if not kc.alive():
                died_after.append(sent)
        except Exception as exc:  # raised below, after hypothesis, with the message sent
            broke.append((sent + 1, exc))

    send_one()
    if not died_after and kc.wait_exit(0.3):
        died_after.append(sent)
    shown = "; ".join(f"{ch}: {frames!r}"[:300] for ch, frames in recent[-5:])
    if died_after:
        raise Fail(
            f"the kernel died during fuzzing, after message {died_after[0]}; the last ones "
            f"sent: {shown}"
        )
    if broke:
        number, exc = broke[0]
        if isinstance(exc, NoReply):  # the kernel took no message for the whole timeout
            raise Fail(f"fuzzed message {number}: {exc}; the last ones sent: {shown}")
        raise exc  # the client's own trouble: the check's error, with its traceback
    # Answers and input replies of fuzzed requests: read and forget (they are logged).
    time.sleep(0.2)
    for channel in ("shell", "control", "stdin"):
        while kc.recv_raw(channel, 0.05) is not None:
            pass
    return sent


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
