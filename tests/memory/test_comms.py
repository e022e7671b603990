"""Comms: open, msg, close and comm_info, kernel-opened comms, comms served during a cell,
failing handlers."""

from __future__ import annotations

import attrs
import trio
import trio.testing

from kernelsdk import Comm
from kernelsdk.protocol import Channel, Message
from kernelsdk.testing import open_test_kernel

from .conftest import GUARD, Scripted, check_bracketed, iopub_until, is_

# -- comms ----------------------------------------------------------------------------------------


async def test_comm_open_msg_close_and_info() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        open_id = client.send(
            "comm_open", {"comm_id": "c1", "target_name": "echo", "data": {"x": 1}}
        )
        opened = await client.collect(open_id, expect_reply=False)
        assert kernel.opened == [("c1", {"x": 1})]
        (sent,) = opened.outputs
        assert sent.msg_type == "comm_msg"
        assert sent.content == {"comm_id": "c1", "data": {"opened": {"x": 1}}}

        info = await client.request("comm_info_request")
        assert info.reply.content == {"status": "ok", "comms": {"c1": {"target_name": "echo"}}}
        filtered = await client.request("comm_info_request", {"target_name": "other"})
        assert filtered.reply.content["comms"] == {}

        # comm_msg round trip, buffers included.
        msg = client.message("comm_msg", {"comm_id": "c1", "data": {"ping": [1, "é"]}})
        msg = attrs.evolve(msg, buffers=(b"\x00raw",))
        client.transport.client_send(Channel.SHELL, client.session.serialize(msg))
        echoed = await client.collect(msg.msg_id, expect_reply=False)
        check_bracketed(echoed, msg.msg_id, "comm_msg")
        (echo,) = echoed.outputs
        assert echo.content == {"comm_id": "c1", "data": {"echo": {"ping": [1, "é"]}}}
        assert echo.buffers == (b"\x00raw",)

        close_id = client.send("comm_close", {"comm_id": "c1", "data": {}})
        await client.collect(close_id, expect_reply=False)
        assert kernel.closed == ["c1"]
        info = await client.request("comm_info_request")
        assert info.reply.content["comms"] == {}

        # A comm_msg to the closed comm is dropped: no output, the kernel goes on.
        late = await client.collect(
            client.send("comm_msg", {"comm_id": "c1", "data": {}}), expect_reply=False
        )
        assert late.outputs == []


async def test_comm_open_to_unknown_target_is_closed() -> None:
    async with open_test_kernel(Scripted()) as client:
        open_id = client.send("comm_open", {"comm_id": "c9", "target_name": "nobody", "data": {}})
        result = await client.collect(open_id, expect_reply=False)
        check_bracketed(result, open_id, "comm_open")
        (close,) = result.outputs
        assert close.msg_type == "comm_close"
        assert close.content["comm_id"] == "c9"
        info = await client.request("comm_info_request")
        assert info.reply.content["comms"] == {}


async def test_kernel_opened_comm() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("open-comm")
        comm_open = next(m for m in result.outputs if m.msg_type == "comm_open")
        comm_id = comm_open.content["comm_id"]
        assert comm_open.content == {
            "comm_id": comm_id,
            "target_name": "frontend",
            "data": {"a": 1},
        }
        assert result.outputs[-1].content["data"] == {"text/plain": comm_id}
        info = await client.request("comm_info_request", {"target_name": "frontend"})
        assert info.reply.content["comms"] == {comm_id: {"target_name": "frontend"}}


async def test_comm_msg_is_handled_while_an_execute_is_blocked() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        open_id = client.send("comm_open", {"comm_id": "r1", "target_name": "release", "data": {}})
        await client.collect(open_id, expect_reply=False)
        exec_id = client.send("execute_request", {"code": "wait"})
        seen = await iopub_until(client, is_("execute_input", exec_id))
        # The execute is now running and blocked until the comm handler releases it.
        comm_id = client.send("comm_msg", {"comm_id": "r1", "data": {}})
        seen += await iopub_until(client, is_("status", exec_id, execution_state="idle"))
        reply = await client.receive(Channel.SHELL)
        assert reply.parent_header is not None
        assert reply.parent_header.msg_id == exec_id
        assert reply.content["status"] == "ok"
        assert kernel.release.is_set()
        from_comm = [m for m in seen if m.parent_header and m.parent_header.msg_id == comm_id]
        assert [m.msg_type for m in from_comm] == ["comm_msg"]  # no busy/idle mid-execution
        assert from_comm[0].content["data"] == {"released": True}
        result = next(m for m in seen if m.msg_type == "execute_result")
        assert result.content["data"] == {"text/plain": "released"}


def test_comm_msg_sent_right_after_a_blocking_execute_is_handled() -> None:
    async def once() -> bool:
        async with open_test_kernel(Scripted()) as client:
            await client.collect(
                client.send("comm_open", {"comm_id": "r1", "target_name": "release", "data": {}}),
                expect_reply=False,
            )
            exec_id = client.send("execute_request", {"code": "wait"})
            client.send("comm_msg", {"comm_id": "r1", "data": {}})
            with trio.move_on_after(GUARD):
                await client.collect(exec_id)
                return True
            return False  # deadlock (virtual time only)

    outcomes = [
        trio.run(once, clock=trio.testing.MockClock(autojump_threshold=0)) for _ in range(10)
    ]
    assert all(outcomes), outcomes


async def test_failing_comm_handler_does_not_kill_the_kernel() -> None:
    kernel = Scripted()

    def open_bad(comm: Comm, msg: Message) -> None:
        def fail(c: Comm, m: Message) -> None:
            raise RuntimeError("widget callback bug")

        comm.on_msg(fail)

    kernel.comms.register_target("bad", open_bad)
    async with open_test_kernel(kernel) as client:
        await client.collect(
            client.send("comm_open", {"comm_id": "b1", "target_name": "bad", "data": {}}),
            expect_reply=False,
        )
        failing = client.send("comm_msg", {"comm_id": "b1", "data": {}})
        await client.collect(failing, expect_reply=False)
        info = await client.request("kernel_info_request")
        assert info.reply.content["status"] == "ok"
