"""Kernel subshells (JEP 91) through the full protocol in memory: create, list and delete on
control; requests in order within a subshell and concurrent across subshells; parents that
carry the subshell; unknown ids refused without touching the kernel; stop_on_error per
subshell; interrupts and shutdown for the whole kernel; stdin and comms in subshells.

Cells block on named gates that another cell (in another shell) opens, so a test that needs
two cells running at once deadlocks (and the guard fails it at once) when they do not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import trio

from kernelsdk import BaseKernel, ExecuteContext, ExecutionError, RemoteProtocolError
from kernelsdk.protocol import Channel
from kernelsdk.testing import RequestResult, TestClient, open_test_kernel

from .conftest import check_bracketed, check_reply


class Gates(BaseKernel):
    """Cells: ``wait NAME`` (until a cell runs ``open NAME``), ``open NAME``, ``wait-fail
    NAME`` (wait, then fail), ``print TEXT``, ``input PROMPT``. ``log`` records each cell's
    start and end."""

    implementation = "gates"
    concurrent_subshells = True

    def __init__(self) -> None:
        super().__init__()
        self.gates: defaultdict[str, trio.Event] = defaultdict(trio.Event)
        self.log: list[tuple[str, str]] = []
        self.interrupts = 0

    async def do_execute(self, code: str, ctx: ExecuteContext) -> Any:
        self.log.append(("start", code))
        command, _, arg = code.partition(" ")
        if command == "wait":
            await self.gates[arg].wait()
        elif command == "open":
            self.gates[arg].set()
        elif command == "print":
            ctx.print(arg)
        elif command == "wait-fail":
            await self.gates[arg].wait()
            raise ExecutionError("GateError", "failed at the gate", [])
        elif command == "input":
            ctx.print(f"got {await ctx.input(arg)}")
        self.log.append(("end", code))
        return None

    def do_interrupt(self) -> None:
        self.interrupts += 1


class SerialGates(Gates):
    concurrent_subshells = False


async def started(client: TestClient, msg_id: str) -> None:
    """Wait until the execute ``msg_id`` runs (its execute_input); the rest stays for its
    collect."""
    while True:
        msg = await client.receive(Channel.IOPUB)
        if msg.parent_header is not None:
            client._held_iopub.setdefault(msg.parent_header.msg_id, []).append(msg)
            if msg.parent_header.msg_id == msg_id and msg.msg_type == "execute_input":
                return


def subshells_of(result: RequestResult) -> set[str | None]:
    messages = [result.reply, *result.iopub]
    return {m.parent_header.subshell_id if m.parent_header else "none" for m in messages}


# -- claiming them, creating, listing, deleting ---------------------------------------------


async def test_kernel_info_claims_subshells_only_when_the_kernel_says_so() -> None:
    for kernel, features in ((Gates(), ["kernel subshells"]), (SerialGates(), [])):
        async with open_test_kernel(kernel) as client:
            reply = (await client.request("kernel_info_request")).reply
            assert reply.content["supported_features"] == features


async def test_create_list_delete() -> None:
    async with open_test_kernel(Gates()) as client:
        assert await client.list_subshells() == []
        a, b = await client.create_subshell(), await client.create_subshell()
        assert a != b
        assert await client.list_subshells() == [a, b]
        msg_id = client.send("delete_subshell_request", {"subshell_id": a}, Channel.CONTROL)
        result = await client.collect(msg_id, Channel.CONTROL)
        check_bracketed(result, msg_id, "delete_subshell_request")
        check_reply(result, msg_id, "delete_subshell_request")
        assert result.reply.content == {"status": "ok"}
        assert await client.list_subshells() == [b]
        again = (await client.delete_subshell(a)).reply.content
        assert again["status"] == "error"
        assert again["evalue"] == f"unknown subshell_id {a!r}"
        ran = await client.execute("print deleted", subshell_id=a)
        assert ran.reply.content["ename"] == "UnknownSubshellError"


async def test_a_kernel_that_does_not_claim_them_refuses_them() -> None:
    kernel = SerialGates()
    async with open_test_kernel(kernel) as client:
        with pytest.raises(RemoteProtocolError, match="does not support kernel subshells"):
            await client.create_subshell()
        reply = (await client.request("list_subshell_request", {}, Channel.CONTROL)).reply
        assert reply.content["ename"] == "SubshellsNotSupported"
        # JEP 91: such a kernel ignores subshell_id; the cell runs in the main shell.
        result = await client.execute("print main", subshell_id="any")
        assert result.reply.content["status"] == "ok"
        assert result.stdout == "main\n"


# -- scheduling ------------------------------------------------------------------------------


async def test_subshells_run_concurrently_with_the_main_shell_and_each_other() -> None:
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        a, b = await client.create_subshell(), await client.create_subshell()
        main = client.send("execute_request", {"code": "wait main"})
        in_a = client.send("execute_request", {"code": "wait a"}, subshell_id=a)
        await started(client, main)
        await started(client, in_a)
        # Both wait; b runs meanwhile, and opens their gates.
        result = await client.execute("print while they wait", subshell_id=b)
        assert result.stdout == "while they wait\n"
        assert (await client.execute("open a", subshell_id=b)).reply.content["status"] == "ok"
        assert (await client.collect(in_a)).reply.content["status"] == "ok"
        await client.execute("open main", subshell_id=a)
        assert (await client.collect(main)).reply.content["status"] == "ok"
    assert kernel.log.index(("end", "wait a")) < kernel.log.index(("end", "wait main"))


async def test_kernel_info_on_the_main_shell_is_answered_while_it_is_busy() -> None:
    """JupyterLab's subshell console asks kernel_info on the main shell before creating its
    subshell: a busy main shell must not hold it up."""
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        main = client.send("execute_request", {"code": "wait g"})
        await started(client, main)
        info = await client.request("kernel_info_request")
        assert "kernel subshells" in info.reply.content["supported_features"]
        a = await client.create_subshell()
        await client.execute("open g", subshell_id=a)
        assert (await client.collect(main)).reply.content["status"] == "ok"
    # Without subshells the main shell keeps its order: kernel_info waits for the cell.
    serial = SerialGates()
    async with open_test_kernel(serial) as client:
        main = client.send("execute_request", {"code": "print first"})
        info_id = client.send("kernel_info_request", {})
        first = await client.collect(main)
        info = await client.collect(info_id)
        assert first.iopub[-1].header.date <= info.iopub[0].header.date


async def test_requests_of_one_subshell_run_in_order() -> None:
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        a = await client.create_subshell()
        first = client.send("execute_request", {"code": "wait g"}, subshell_id=a)
        second = client.send("execute_request", {"code": "print second"}, subshell_id=a)
        await started(client, first)
        await trio.testing.wait_all_tasks_blocked()
        assert ("start", "print second") not in kernel.log  # queued behind the first
        await client.execute("open g")  # from the main shell
        assert (await client.collect(first)).reply.content["status"] == "ok"
        assert (await client.collect(second)).stdout == "second\n"
    assert kernel.log.index(("end", "wait g")) < kernel.log.index(("start", "print second"))


async def test_replies_and_every_output_carry_the_subshell_in_their_parent() -> None:
    async with open_test_kernel(Gates()) as client:
        a = await client.create_subshell()
        for msg_type, content in (
            ("execute_request", {"code": "print x"}),
            ("kernel_info_request", {}),
            ("complete_request", {"code": "x", "cursor_pos": 1}),
            ("is_complete_request", {"code": "x"}),
        ):
            msg_id = client.send(msg_type, content, subshell_id=a)
            result = await client.collect(msg_id)
            check_bracketed(result, msg_id, msg_type)
            check_reply(result, msg_id, msg_type)
            assert subshells_of(result) == {a}
        main = await client.execute("print y")
        assert subshells_of(main) == {None}


async def test_an_unknown_subshell_is_refused_without_touching_the_kernel() -> None:
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        for msg_type, content in (
            ("execute_request", {"code": "print x"}),
            ("history_request", {}),
        ):
            msg_id = client.send(msg_type, content, subshell_id="no-such-subshell")
            result = await client.collect(msg_id)
            check_bracketed(result, msg_id, msg_type)
            check_reply(result, msg_id, msg_type)
            assert [m.msg_type for m in result.iopub] == ["status", "status"]
            assert result.reply.content["status"] == "error"
            assert result.reply.content["ename"] == "UnknownSubshellError"
            assert "'no-such-subshell'" in result.reply.content["evalue"]
        assert kernel.log == []
        assert (await client.execute("print still here")).stdout == "still here\n"


async def test_a_deleted_subshell_finishes_what_it_had_queued() -> None:
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        a = await client.create_subshell()
        running = client.send("execute_request", {"code": "wait g"}, subshell_id=a)
        queued = client.send("execute_request", {"code": "print queued"}, subshell_id=a)
        await started(client, running)
        assert (await client.delete_subshell(a)).reply.content == {"status": "ok"}
        refused = await client.execute("print refused", subshell_id=a)
        assert refused.reply.content["ename"] == "UnknownSubshellError"
        await client.execute("open g")
        assert (await client.collect(running)).reply.content["status"] == "ok"
        assert (await client.collect(queued)).stdout == "queued\n"


# -- execution counts and history, per subshell ---------------------------------------------


async def test_each_subshell_has_its_own_execution_count_and_history() -> None:
    """JEP 91: 'Each subshell will store its own execution count and history'."""
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        a, b = await client.create_subshell(), await client.create_subshell()
        runs = [
            (None, "print m1"),
            (a, "print a1"),
            (None, "print m2"),
            (a, "print a2"),
            (a, "print a3"),
            (b, "print b1"),
        ]
        counts = []
        for subshell, code in runs:
            result = await client.execute(code, subshell_id=subshell)
            (execute_input,) = [m for m in result.iopub if m.msg_type == "execute_input"]
            assert (
                execute_input.content["execution_count"] == result.reply.content["execution_count"]
            )
            counts.append(result.reply.content["execution_count"])
        assert counts == [1, 1, 2, 2, 3, 1]

        async def history(subshell: str | None, **content: Any) -> list[Any]:
            content.setdefault("hist_access_type", "tail")
            content.setdefault("n", 10)
            content.setdefault("output", False)
            content.setdefault("raw", True)
            msg_id = client.send("history_request", content, subshell_id=subshell)
            reply = (await client.collect(msg_id)).reply
            assert reply.content["status"] == "ok"
            return [tuple(entry) for entry in reply.content["history"]]

        assert await history(None) == [(1, 1, "print m1"), (1, 2, "print m2")]
        assert await history(a) == [(1, 1, "print a1"), (1, 2, "print a2"), (1, 3, "print a3")]
        assert await history(b) == [(1, 1, "print b1")]
        ranged = await history(a, hist_access_type="range", session=0, start=2, stop=3)
        assert ranged == [(1, 2, "print a2")]
        assert await history(a, hist_access_type="search", pattern="*a3") == [(1, 3, "print a3")]
        # A deleted subshell's history goes with it; a new one starts afresh.
        await client.delete_subshell(a)
        assert a not in kernel.subshell_histories
        c = await client.create_subshell()
        assert (await client.execute("print c1", subshell_id=c)).reply.content[
            "execution_count"
        ] == 1
        assert await history(c) == [(1, 1, "print c1")]
        assert await history(None) == [(1, 1, "print m1"), (1, 2, "print m2")]


# -- stop_on_error, interrupt, shutdown -------------------------------------------------------


async def test_stop_on_error_aborts_only_the_failing_subshells_queue() -> None:
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        a, opener = await client.create_subshell(), await client.create_subshell()
        failing = client.send("execute_request", {"code": "wait-fail g"}, subshell_id=a)
        behind_a = client.send("execute_request", {"code": "print a"}, subshell_id=a)
        main = client.send("execute_request", {"code": "wait main"})
        behind_main = client.send("execute_request", {"code": "print main"})
        await started(client, failing)
        await started(client, main)
        await client.execute("open g", subshell_id=opener)
        assert (await client.collect(failing)).reply.content["status"] == "error"
        assert (await client.collect(behind_a)).reply.content["status"] == "aborted"
        await client.execute("open main", subshell_id=opener)
        assert (await client.collect(main)).reply.content["status"] == "ok"
        assert (await client.collect(behind_main)).stdout == "main\n"  # not aborted
        assert (await client.execute("print later", subshell_id=a)).stdout == "later\n"


async def test_an_interrupt_interrupts_every_running_execution() -> None:
    kernel = Gates()
    async with open_test_kernel(kernel) as client:
        a, b = await client.create_subshell(), await client.create_subshell()
        main = client.send("execute_request", {"code": "wait never"})
        in_a = client.send("execute_request", {"code": "wait never"}, subshell_id=a)
        queued_a = client.send("execute_request", {"code": "print after"}, subshell_id=a)
        await started(client, main)
        await started(client, in_a)
        reply = (await client.request("interrupt_request", {}, Channel.CONTROL)).reply
        assert reply.content == {"status": "ok"}
        assert kernel.interrupts == 1  # do_interrupt once, for the whole kernel
        for msg_id in (main, in_a):
            result = await client.collect(msg_id)
            assert result.reply.content["status"] == "error"
            assert result.reply.content["ename"] == "KeyboardInterrupt"
        # The interrupted cell failed: stop_on_error aborts what its subshell had queued.
        assert (await client.collect(queued_a)).reply.content["status"] == "aborted"
        # Every shell still serves.
        for subshell_id in (None, a, b):
            result = await client.execute("print ok", subshell_id=subshell_id)
            assert result.stdout == "ok\n"


async def test_shutdown_stops_the_kernel_with_subshells_busy() -> None:
    async with open_test_kernel(Gates()) as client:
        a = await client.create_subshell()
        in_a = client.send("execute_request", {"code": "wait never"}, subshell_id=a)
        await started(client, in_a)
        result = await client.request("shutdown_request", {"restart": False}, Channel.CONTROL)
        assert result.reply.content == {"status": "ok", "restart": False}
        server = client.server  # type: ignore[attr-defined]
        await server.wait_stopped()


# -- stdin and comms --------------------------------------------------------------------------


async def test_input_in_a_subshell_while_the_main_shell_waits_for_input() -> None:
    async with open_test_kernel(Gates()) as client:
        a = await client.create_subshell()
        main = client.send("execute_request", {"code": "input main?", "allow_stdin": True})
        main_asks = await client.input_request_of(main)
        in_a = client.send(
            "execute_request", {"code": "input a?", "allow_stdin": True}, subshell_id=a
        )
        a_asks = await client.input_request_of(in_a)
        assert a_asks.parent_header is not None
        assert a_asks.parent_header.subshell_id == a
        client.reply_input(a_asks, "for a")
        assert (await client.collect(in_a)).stdout == "got for a\n"
        client.reply_input(main_asks, "for main")
        assert (await client.collect(main)).stdout == "got for main\n"


async def test_comm_messages_on_a_subshell_are_handled_as_before() -> None:
    """JupyterLab sends comm messages on a subshell: they reach the comm handlers as comm
    messages without one do, also while the main shell runs a cell."""
    async with open_test_kernel(Gates()) as client:
        a = await client.create_subshell()
        main = client.send("execute_request", {"code": "wait never"})
        await started(client, main)
        opened = client.send(
            "comm_open", {"comm_id": "c1", "target_name": "nothing-here", "data": {}}, subshell_id=a
        )
        while True:
            msg = await client.receive(Channel.IOPUB)
            if msg.msg_type == "comm_close":
                break
        assert msg.content["comm_id"] == "c1"
        assert msg.parent_header is not None
        assert msg.parent_header.msg_id == opened
        assert msg.parent_header.subshell_id == a
