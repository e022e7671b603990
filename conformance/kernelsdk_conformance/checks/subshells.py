"""The checks of kernel subshells (JEP 91, messaging 5.5 "Kernel subshells"), for kernels
that claim them (``"kernel subshells"`` in ``kernel_info_reply.supported_features``; the
others skip): create, list and delete; parent headers; an unknown subshell; requests in order
within a subshell and concurrent across subshells; an interrupt with subshells busy.

Each check deletes the subshells it created, so the shared kernel is left as it was found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .._client import KernelClient, Msg, NoReply
from .._registry import Context, Fail, Skip, check
from ._helpers import MARK, bracket, expect, status_ok
from .lifecycle import _interrupt, _wait_running

SPEC = "Kernel subshells (5.5, JEP 91)"


def _claimed(ctx: Context) -> None:
    features = ctx.info().get("supported_features")
    if not isinstance(features, list) or "kernel subshells" not in features:
        raise Skip("the kernel does not claim kernel subshells (supported_features)")


def _create(kc: KernelClient) -> str:
    reply = kc.reply("control", kc.send("control", "create_subshell_request", {}))
    if reply.msg_type != "create_subshell_reply":
        raise Fail(f"create_subshell_request answered with {reply.msg_type}")
    status_ok(reply, "create_subshell_request")
    subshell_id = reply.content.get("subshell_id")
    if not isinstance(subshell_id, str) or not subshell_id:
        raise Fail(f"create_subshell_reply.subshell_id is {subshell_id!r}, not a string")
    return subshell_id


def _delete(kc: KernelClient, subshell_id: str) -> Msg:
    return kc.reply(
        "control", kc.send("control", "delete_subshell_request", {"subshell_id": subshell_id})
    )


def _list(kc: KernelClient) -> list[Any]:
    reply = kc.reply("control", kc.send("control", "list_subshell_request", {}))
    status_ok(reply, "list_subshell_request")
    ids = reply.content.get("subshell_id")
    if not isinstance(ids, list):
        raise Fail(f"list_subshell_reply.subshell_id is {ids!r}, not a list")
    return ids


@contextlib.contextmanager
def _subshells(kc: KernelClient, count: int) -> Iterator[list[str]]:
    """``count`` new subshells, deleted afterwards (as far as the kernel still answers)."""
    created: list[str] = []
    try:
        for _ in range(count):
            created.append(_create(kc))
        yield created
    finally:
        for subshell_id in created:
            with contextlib.suppress(Exception):
                _delete(kc, subshell_id)


def _replied_before(kc: KernelClient, msg_id: str) -> bool:
    """Whether the shell reply to ``msg_id`` has arrived already (kept in the backlog)."""
    return any(m.parent_id == msg_id for m in kc._reply_backlog["shell"])


@check(
    "subshells",
    "create_subshell_request gives a new id, list_subshell_request lists the subshells (not "
    "the main shell), delete_subshell_request deletes one: it is no longer listed, deleting it "
    "again is an error, and a request for it gets an error reply",
    f"{SPEC}: create, delete and list subshells",
)
def subshells(ctx: Context) -> str:
    _claimed(ctx)
    kc = ctx.kernel()
    problems: list[str] = []
    before = _list(kc)
    with _subshells(kc, 2) as (a, b):
        if a == b:
            problems.append(f"two create_subshell_request got the same id {a!r}")
        listed = _list(kc)
        if a not in listed or b not in listed:
            problems.append(f"list_subshell_reply {listed} lacks a new subshell ({a}, {b})")
        if None in listed:
            problems.append("list_subshell_reply lists the main shell (None)")
        status_ok(_delete(kc, a), "delete_subshell_request")
        after = _list(kc)
        if a in after:
            problems.append(f"after delete_subshell_request, list_subshell_reply still lists {a}")
        if b not in after:
            problems.append(f"deleting {a} also removed {b} from list_subshell_reply")
        again = _delete(kc, a)
        if again.content.get("status") != "error":
            problems.append(f"deleting {a} a second time: status {again.content.get('status')!r}")
        mid = kc.send("shell", "kernel_info_request", {}, subshell_id=a)
        reply = kc.reply("shell", mid)
        kc.collect(mid)
        if reply.content.get("status") != "error":
            problems.append(
                f"a request for the deleted subshell got status {reply.content.get('status')!r}"
            )
    left = _list(kc)
    if sorted(map(str, left)) != sorted(map(str, before)):
        problems.append(f"after deleting both, list_subshell_reply is {left} (before: {before})")
    expect(problems, "subshells")
    return "created 2, listed, deleted; list after delete, a second delete and a request for it"


@check(
    "subshell_parents",
    "the reply and every IOPub message of a request sent to a subshell carry the request's "
    "header, subshell_id included, as parent header",
    f"{SPEC}: 'IOPub messages do not need an extra optional subshell_id field as this "
    "information is available in the parent header'",
)
def subshell_parents(ctx: Context) -> str:
    _claimed(ctx)
    hello = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    problems: list[str] = []
    with _subshells(kc, 1) as (a,):
        for msg_type, content in (
            ("execute_request", {"code": hello, "silent": False, "store_history": True}),
            ("kernel_info_request", {}),
        ):
            mid = kc.send("shell", msg_type, content, subshell_id=a)
            reply = kc.reply("shell", mid)
            msgs = kc.collect(mid)
            status_ok(reply, f"{msg_type} in a subshell")
            for m in [reply, *msgs]:
                got = (
                    m.parent_header.get("subshell_id")
                    if isinstance(m.parent_header, dict)
                    else None
                )
                if got != a:
                    problems.append(
                        f"{msg_type}: {m.describe()} has parent subshell_id {got!r}, not {a!r}"
                    )
    expect(problems, "subshell_parents")
    return "execute and kernel_info in a subshell: reply and IOPub carry its subshell_id"


@check(
    "subshell_unknown",
    "a request for a subshell_id that names no subshell gets an error reply between busy and "
    "idle, and nothing of it runs; the kernel serves on",
    f"{SPEC}: 'Use of a subshell_id that is not recognised will raise an error'",
)
def subshell_unknown(ctx: Context) -> str:
    _claimed(ctx)
    hello = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    mid = kc.execute(hello, subshell_id=f"{MARK}-no-such-subshell")
    try:
        reply = kc.reply("shell", mid)
    except NoReply:
        raise Fail("no reply to an execute_request for an unknown subshell_id") from None
    msgs = kc.collect(mid)
    problems = []
    if reply.content.get("status") != "error":
        problems.append(f"status {reply.content.get('status')!r}, not 'error'")
    ran = [m.describe() for m in msgs if m.msg_type not in ("status",)]
    if ran:
        problems.append(f"it ran: {ran}")
    problems += bracket(msgs, "the request for an unknown subshell")
    after, _ = kc.run(hello)
    status_ok(after, "an execute after the unknown subshell")
    expect(problems, "subshell_unknown")
    return f"error reply ({reply.content.get('ename')}), nothing run, busy/idle around it"


@check(
    "subshell_order",
    "two executes sent to one subshell run one after the other: the second starts "
    "(execute_input) after the first's idle, and the replies come in order",
    f"{SPEC}: 'Within an individual subshell, requests are processed sequentially'",
)
def subshell_order(ctx: Context) -> str:
    _claimed(ctx)
    sleep = ctx.sample("code_sleep", seconds=0.5)
    hello = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    with _subshells(kc, 1) as (a,):
        first = kc.execute(sleep, subshell_id=a)
        second = kc.execute(hello, subshell_id=a)
        replies = kc.replies_until("shell", second, timeout=kc.timeout + 0.5)
        order = [m.parent_id for m in replies if m.parent_id in (first, second)]
        kc._reply_backlog["shell"] += [m for m in replies if m.parent_id not in (first, second)]
        kc.collect(first)
        kc.collect(second)
    iopub = [m for m in kc.log if m.channel == "iopub"]
    first_idle = next(i for i, m in enumerate(iopub) if m.parent_id == first and _idle(m))
    second_starts = [
        i for i, m in enumerate(iopub) if m.parent_id == second and m.msg_type == "execute_input"
    ]
    problems = []
    if order != [first, second]:
        problems.append("the second execute's reply came before the first's")
    if second_starts and second_starts[0] < first_idle:
        problems.append("the second execute started (execute_input) before the first's idle")
    expect(problems, "subshell_order")
    return "a sleep and a hello in one subshell ran in order"


def _idle(m: Msg) -> bool:
    return (
        m.msg_type == "status"
        and isinstance(m.content, dict)
        and (m.content.get("execution_state") == "idle")
    )


@check(
    "subshell_concurrency",
    "while the main shell and one subshell each run code_sleep, a third shell (another "
    "subshell) runs code_hello_world and answers before either sleep ends",
    f"{SPEC}: 'A subshell request may be processed concurrently with other subshells'",
)
def subshell_concurrency(ctx: Context) -> str:
    _claimed(ctx)
    seconds = max(ctx.profile.busy_seconds, 2.0)
    sleep = ctx.sample("code_sleep", seconds=seconds)
    hello = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    with _subshells(kc, 2) as (a, b):
        main = kc.execute(sleep)
        in_a = kc.execute(sleep, subshell_id=a)
        _wait_running(kc, main)
        _wait_running(kc, in_a)
        mid = kc.execute(hello, subshell_id=b)
        reply = kc.reply("shell", mid, timeout=seconds + kc.timeout)
        over = [
            name
            for name, sid in (("main shell", main), ("subshell", in_a))
            if _replied_before(kc, sid)
        ]
        for sid in (main, in_a):
            kc.reply("shell", sid, timeout=seconds + kc.timeout)
        for sid in (main, in_a, mid):
            kc.collect(sid, timeout=seconds + kc.timeout)
    status_ok(reply, "code_hello_world in a subshell")
    if over:
        raise Fail(
            f"code_hello_world in a subshell was answered only after the {seconds:g} s "
            f"code_sleep of the {' and the '.join(over)} had ended: subshells run one at a time"
        )
    return f"a subshell answered while the main shell and another subshell slept ({seconds:g} s)"


@check(
    "subshell_interrupt",
    "with the main shell and a subshell running code_sleep, an interrupt (per interrupt_mode) "
    "ends the main shell's cell; the subshell's cell ends too (interrupted, or at the end of "
    "its sleep: the spec does not say whether an interrupt reaches subshells); afterwards "
    "both shells serve",
    f"{SPEC}: 'kernel interrupt messages are handled at the kernel (process) rather than "
    "subshell (thread) level'; Kernel interrupt",
)
def subshell_interrupt(ctx: Context) -> str:
    _claimed(ctx)
    short = max(3.0, 2 * ctx.profile.busy_seconds)
    long_sleep = ctx.sample("code_sleep", seconds=60)
    short_sleep = ctx.sample("code_sleep", seconds=short)
    hello = ctx.profile.code_hello_world
    kc = ctx.kernel()
    with _subshells(kc, 1) as (a,):
        main = kc.execute(long_sleep)
        in_a = kc.execute(short_sleep, subshell_id=a)
        _wait_running(kc, main)
        _wait_running(kc, in_a)
        _interrupt(ctx, kc)
        try:
            main_reply = kc.reply("shell", main, timeout=kc.timeout)
        except NoReply:
            raise Fail(
                f"{ctx.interrupt_mode} interrupt with a subshell busy did not stop the main "
                f"shell's 60 s execution within {kc.timeout:g}s"
            ) from None
        try:
            a_reply = kc.reply("shell", in_a, timeout=short + kc.timeout)
        except NoReply:
            raise Fail(
                f"after the interrupt, the subshell's {short:g} s execution never ended"
            ) from None
        kc.collect(main)
        kc.collect(in_a)
        problems = []
        for where, subshell_id in (("the main shell", None), ("the subshell", a)):
            mid = (
                kc.execute(hello, subshell_id=subshell_id)
                if hello is not None
                else kc.send("shell", "kernel_info_request", {}, subshell_id=subshell_id)
            )
            try:
                reply = kc.reply("shell", mid)
                kc.collect(mid)
            except NoReply:
                problems.append(f"after the interrupt, {where} did not answer")
                continue
            if reply.content.get("status") != "ok":
                evalue = reply.content.get("evalue", "")
                problems.append(
                    f"after the interrupt, {where} answered {reply.content.get('status')!r} "
                    f"{evalue}".rstrip()
                )
    expect(problems, "subshell_interrupt")
    subshell = (
        "ran to the end of its sleep"
        if a_reply.content.get("status") == "ok"
        else f"was interrupted too ({a_reply.content.get('status')})"
    )
    return (
        f"{ctx.interrupt_mode} interrupt: the main shell's cell ended "
        f"({main_reply.content.get('status')}), the subshell's {subshell}; both serve after"
    )
