"""Interrupts: from the server, interrupt_request on control, while idle, while waiting for
input."""

from __future__ import annotations

import trio
import trio.testing

from kernelsdk.protocol import Channel
from kernelsdk.testing import open_test_kernel

from .conftest import Scripted, iopub_until, is_

# -- interrupts -----------------------------------------------------------------------------------


async def test_interrupt_from_the_server() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        msg_id = client.send("execute_request", {"code": "hang"})
        await iopub_until(client, is_("execute_input", msg_id))
        client.server.interrupt()  # type: ignore[attr-defined]
        result = await client.collect(msg_id)
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "KeyboardInterrupt"
        assert [m.msg_type for m in result.outputs] == ["error"]
        assert result.outputs[0].content["ename"] == "KeyboardInterrupt"
        assert kernel.interrupts == 1
        after = await client.execute("print alive")
        assert after.reply.content["status"] == "ok"
        assert after.stdout == "alive\n"
        assert after.reply.content["execution_count"] == 2


async def test_interrupt_request_on_control_aborts_queue() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        hang_id = client.send("execute_request", {"code": "hang"})
        queued_id = client.send("execute_request", {"code": "print queued"})
        await iopub_until(client, is_("execute_input", hang_id))
        await trio.testing.wait_all_tasks_blocked()
        interrupt = await client.request("interrupt_request", {}, Channel.CONTROL)
        assert interrupt.reply.content == {"status": "ok"}
        hang = await client.collect(hang_id)
        assert hang.reply.content["ename"] == "KeyboardInterrupt"
        queued = await client.collect(queued_id)
        assert queued.reply.content["status"] == "aborted"
        assert kernel.interrupts == 1
        assert (await client.execute("print ok")).reply.content["status"] == "ok"


async def test_interrupt_while_idle_is_harmless() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        client.server.interrupt()  # type: ignore[attr-defined]
        assert kernel.interrupts == 1
        result = await client.execute("print still fine")
        assert result.reply.content["status"] == "ok"
        assert result.reply.content["execution_count"] == 1


async def test_interrupt_while_waiting_for_input() -> None:
    async with open_test_kernel(Scripted()) as client:
        msg_id = client.send("execute_request", {"code": "input ?", "allow_stdin": True})
        await client.receive(Channel.STDIN)
        client.server.interrupt()  # type: ignore[attr-defined]
        result = await client.collect(msg_id)
        assert result.reply.content["ename"] == "KeyboardInterrupt"
        # A late answer to the abandoned prompt does not answer the next one.
        stale = client.message("input_reply", {"value": "stale"})
        client.transport.client_send(Channel.STDIN, client.session.serialize(stale))
        result = await client.execute("input again", input=["fresh"])
        assert result.stdout == "got fresh\n"
