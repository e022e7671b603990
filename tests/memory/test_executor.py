"""The executor seam (where cells run) and detach-on-shutdown, through the full protocol in
memory: what a kernel embedded in a host program relies on (``kernelsdk.embed``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from kernelsdk import Executor
from kernelsdk.protocol import Channel
from kernelsdk.testing import open_test_kernel

from .conftest import Scripted, iopub_until, is_

T = TypeVar("T")


class Gate:
    """An executor that holds each cell until the test opens the gate, as a host's safe point
    does, and keeps a log of what the handlers asked of it."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.open = trio.Event()

    def cell(self) -> AbstractAsyncContextManager[None]:
        return self._cell()

    @asynccontextmanager
    async def _cell(self) -> AsyncIterator[None]:
        self.log.append("waiting")
        await self.open.wait()
        self.log.append("enter")
        try:
            yield
        finally:
            self.log.append("exit")

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        self.log.append("run_blocking")
        return fn(*args)  # "on the host's thread": here, the test's own

    def interrupt(self) -> None:
        self.log.append("executor interrupt")


class LoggingKernel(Scripted):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def do_interrupt(self) -> None:
        super().do_interrupt()
        self.log.append("do_interrupt")


def test_a_gate_is_an_executor() -> None:
    gate: Executor = Gate([])  # mypy checks the Protocol here
    assert callable(gate.cell)


async def test_the_cell_waits_for_the_executor_and_is_bracketed_by_it() -> None:
    log: list[str] = []
    gate = Gate(log)
    async with open_test_kernel(LoggingKernel(log), executor=gate) as client:
        msg_id = client.send("execute_request", {"code": "thread"})
        # busy and execute_input leave at once, while the cell waits for the executor...
        seen = await iopub_until(client, is_("execute_input", msg_id))
        assert [m.msg_type for m in seen if m.parent_header] == ["status", "execute_input"]
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["waiting"]
        # ...and control answers meanwhile (shell requests queue behind the execute, as they
        # do behind any running cell).
        control = await client.request("kernel_info_request", channel=Channel.CONTROL)
        assert control.reply.content["implementation"] == "scripted"
        gate.open.set()
        result = await client.collect(msg_id)
        assert result.reply.content["status"] == "ok"
        assert result.stdout == "from thread\n"
        assert log == ["waiting", "enter", "run_blocking", "exit"]


async def test_an_interrupt_reaches_the_executor_before_the_kernel() -> None:
    log: list[str] = []
    gate = Gate(log)
    kernel = LoggingKernel(log)
    async with open_test_kernel(kernel, executor=gate) as client:
        msg_id = client.send("execute_request", {"code": "print never"})
        await iopub_until(client, is_("execute_input", msg_id))
        await trio.testing.wait_all_tasks_blocked()
        interrupt = await client.request("interrupt_request", {}, Channel.CONTROL)
        assert interrupt.reply.content == {"status": "ok"}
        result = await client.collect(msg_id)
        # A cell still waiting for its safe point is interrupted before it ever runs.
        assert result.reply.content["ename"] == "KeyboardInterrupt"
        assert result.stdout == ""
        assert log == ["waiting", "executor interrupt", "do_interrupt"]
        gate.open.set()
        after = await client.execute("print alive")
        assert after.stdout == "alive\n"


def test_an_unknown_on_shutdown_is_a_clear_error() -> None:
    async def main() -> None:
        async with open_test_kernel(Scripted(), on_shutdown="exit"):  # type: ignore[arg-type]
            pass

    with pytest.raises(ValueError, match="on_shutdown must be 'stop' or 'detach', not 'exit'"):
        trio.run(main)


# -- detach on shutdown ---------------------------------------------------------------------------


async def test_a_detaching_kernel_answers_shutdown_and_keeps_serving() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel, on_shutdown="detach") as client:
        server = client.server  # type: ignore[attr-defined]
        woken = trio.Event()

        async def wait_detached() -> None:
            await server.wait_detached()
            woken.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_detached)
            await trio.testing.wait_all_tasks_blocked()
            result = await client.request("shutdown_request", {"restart": False}, Channel.CONTROL)
            assert result.reply.content == {"status": "ok", "restart": False}
            broadcast = [m for m in result.iopub if m.msg_type == "shutdown_reply"]
            assert [m.content for m in broadcast] == [{"status": "ok", "restart": False}]
            await woken.wait()
        assert server.detach_count == 1
        assert kernel.shutdowns == []  # do_shutdown is the host's business, not a client's
        assert server.shutdown_restart is None
        after = await client.execute("print still here")
        assert after.stdout == "still here\n"
        assert after.reply.content["execution_count"] == 1


async def test_a_detaching_kernel_refuses_a_restart_clearly() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel, on_shutdown="detach") as client:
        result = await client.request("shutdown_request", {"restart": True}, Channel.CONTROL)
        content = result.reply.content
        assert content["status"] == "error"
        assert content["ename"] == "RestartRefused"
        assert "embedded in a host program" in content["evalue"]
        assert "Reconnect" in content["evalue"]
        assert content["restart"] is True
        assert [m.msg_type for m in result.iopub] == ["status", "status"]  # no broadcast
        assert kernel.shutdowns == []
        assert client.server.detach_count == 0  # type: ignore[attr-defined]
        assert (await client.execute("print on")).stdout == "on\n"


async def test_detaching_interrupts_the_cells_of_the_client_that_goes() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel, on_shutdown="detach") as client:
        msg_id = client.send("execute_request", {"code": "hang"})
        await iopub_until(client, is_("execute_input", msg_id))
        result = await client.request("shutdown_request", {"restart": False}, Channel.CONTROL)
        assert result.reply.content["status"] == "ok"
        hung = await client.collect(msg_id)
        assert hung.reply.content["ename"] == "KeyboardInterrupt"
        assert kernel.interrupts == 1
        assert kernel.shutdowns == []
        assert (await client.execute("print next")).stdout == "next\n"
