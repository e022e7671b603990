"""The request lifecycle as a client sees it: busy/idle around every request, kernel_info,
connect, the IOPub welcome, shutdown, two kernels in one process, and input the kernel drops."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from kernelsdk_echo import EchoKernel

from kernelsdk.protocol import DELIMITER, PROTOCOL_VERSION, Channel, Header, Session
from kernelsdk.testing import open_test_kernel

from .conftest import GUARD, Scripted, check_bracketed, check_reply, iopub_until, is_

# -- busy / idle around every request -----------------------------------------------------------

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("kernel_info_request", {}),
    ("comm_info_request", {}),
    ("complete_request", {"code": "ab", "cursor_pos": 2}),
    ("inspect_request", {"code": "ab", "cursor_pos": 1, "detail_level": 0}),
    ("is_complete_request", {"code": "ab"}),
    ("history_request", {"hist_access_type": "tail", "n": 3, "output": False, "raw": True}),
    ("connect_request", {}),
    ("execute_request", {"code": "print hi", "silent": False}),
]


@pytest.mark.parametrize("channel", [Channel.SHELL, Channel.CONTROL])
@pytest.mark.parametrize(("msg_type", "content"), REQUESTS, ids=[r[0] for r in REQUESTS])
async def test_every_request_is_bracketed_by_busy_idle(
    channel: Channel, msg_type: str, content: dict[str, Any]
) -> None:
    async with open_test_kernel(Scripted()) as client:
        msg_id = client.send(msg_type, content, channel)
        result = await client.collect(msg_id, channel)
        check_bracketed(result, msg_id, msg_type)
        check_reply(result, msg_id, msg_type)
        assert result.reply.content.get("status", "ok") in ("ok", "complete", "unknown")


async def test_interrupt_request_is_bracketed() -> None:
    async with open_test_kernel(Scripted()) as client:
        msg_id = client.send("interrupt_request", {}, Channel.CONTROL)
        result = await client.collect(msg_id, Channel.CONTROL)
        check_bracketed(result, msg_id, "interrupt_request")
        check_reply(result, msg_id, "interrupt_request")
        assert result.reply.content == {"status": "ok"}


@pytest.mark.parametrize("msg_type", ["comm_open", "comm_msg", "comm_close"])
async def test_comm_messages_are_bracketed_without_reply(msg_type: str) -> None:
    async with open_test_kernel(Scripted()) as client:
        content = {"comm_id": "c1", "target_name": "echo", "data": {}}
        msg_id = client.send(msg_type, content)
        result = await client.collect(msg_id, expect_reply=False)
        check_bracketed(result, msg_id, msg_type)
        # No reply: the next thing on shell is the reply to the next request.
        info_id = client.send("kernel_info_request")
        info = await client.collect(info_id)
        check_reply(info, info_id, "kernel_info_request")


async def test_kernel_info() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        for channel in (Channel.SHELL, Channel.CONTROL):
            content = (await client.request("kernel_info_request", {}, channel)).reply.content
            assert content["status"] == "ok"
            assert content["protocol_version"] == PROTOCOL_VERSION == "5.5"
            assert content["implementation"] == "echo"
            assert content["implementation_version"] == "0.1.0"
            assert content["language_info"]["name"] == "echo"
            assert content["language_info"]["file_extension"] == ".txt"
            assert content["banner"] == EchoKernel.banner
            assert content["help_links"] == []
            assert "supported_features" in content


async def test_connect_reply_has_ports() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        content = (await client.request("connect_request")).reply.content
        assert content["status"] == "ok"
        for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
            assert isinstance(content[name], int)


async def test_iopub_welcome() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        client.transport.client_send(Channel.IOPUB, [b"\x01"])
        seen = await iopub_until(client, lambda m: m.msg_type == "iopub_welcome")
        welcome = seen[-1]
        assert welcome.content == {"subscription": ""}
        assert welcome.parent_header is None
        assert welcome.identities == ()  # no topic frame for the "" subscription
        assert len(seen) == 1  # the welcome comes first ...
        starting = await client.receive(Channel.IOPUB)  # ... then "starting", once
        assert starting.msg_type == "status" and starting.parent_header is None
        assert starting.content == {"execution_state": "starting"}
        # Unsubscribing gets nothing; garbage is ignored; the kernel keeps serving.
        client.transport.client_send(Channel.IOPUB, [b"\x00"])
        client.transport.client_send(Channel.IOPUB, [b"junk", b"more"])
        client.transport.client_send(Channel.IOPUB, [b"\x01topic"])
        welcome = (await iopub_until(client, lambda m: m.msg_type == "iopub_welcome"))[-1]
        assert welcome.content == {"subscription": "topic"}
        assert welcome.identities == (b"topic",)


# -- several kernels, shutdown, bad input -------------------------------------------------------


async def test_two_kernels_in_one_process() -> None:
    async with open_test_kernel(EchoKernel()) as a, open_test_kernel(Scripted()) as b:
        id_a = a.send("execute_request", {"code": "from a"})
        id_b = b.send("execute_request", {"code": "print from b"})
        id_a2 = a.send("execute_request", {"code": "again a"})
        result_b = await b.collect(id_b)
        result_a = await a.collect(id_a)
        result_a2 = await a.collect(id_a2)
        assert result_a.stdout == "from a\n"
        assert result_b.stdout == "from b\n"
        assert result_a2.stdout == "again a\n"
        assert result_a.reply.content["execution_count"] == 1
        assert result_a2.reply.content["execution_count"] == 2
        assert result_b.reply.content["execution_count"] == 1
        # Comm targets and failures stay with their kernel.
        closed = await a.collect(
            a.send("comm_open", {"comm_id": "x", "target_name": "echo", "data": {}}),
            expect_reply=False,
        )
        assert [m.msg_type for m in closed.outputs] == ["comm_close"]  # echo has no target
        opened = await b.collect(
            b.send("comm_open", {"comm_id": "x", "target_name": "echo", "data": {}}),
            expect_reply=False,
        )
        assert [m.msg_type for m in opened.outputs] == ["comm_msg"]
        assert (await b.execute("fail")).reply.content["status"] == "error"
        assert (await a.execute("fine")).reply.content["status"] == "ok"
        info_a = (await a.request("kernel_info_request")).reply.content
        info_b = (await b.request("kernel_info_request")).reply.content
        assert (info_a["implementation"], info_b["implementation"]) == ("echo", "scripted")


@pytest.mark.parametrize("restart", [False, True])
async def test_shutdown(restart: bool) -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        msg_id = client.send("shutdown_request", {"restart": restart}, Channel.CONTROL)
        result = await client.collect(msg_id, Channel.CONTROL)
        check_reply(result, msg_id, "shutdown_request")
        assert result.reply.content == {"status": "ok", "restart": restart}
        broadcast = [m for m in result.iopub if m.msg_type == "shutdown_reply"]
        assert [m.content for m in broadcast] == [{"status": "ok", "restart": restart}]
        assert broadcast[0].msg_id != result.reply.msg_id
        await client.server.wait_stopped()  # type: ignore[attr-defined]
        assert client.server.shutdown_restart is restart  # type: ignore[attr-defined]
        assert kernel.shutdowns == [restart]


async def test_invalid_frames_are_dropped_and_the_kernel_keeps_serving() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        send = client.transport.client_send
        good = client.message("execute_request", {"code": "real"})
        wrong_key = Session(b"not the key").serialize(
            client.message("execute_request", {"code": "x"})
        )
        unsigned = Session(b"").serialize(client.message("execute_request", {"code": "x"}))
        tampered = client.session.serialize(client.message("execute_request", {"code": "x"}))
        tampered[-1] = tampered[-1].replace(b'"x"', b'"y"')
        for channel in (Channel.SHELL, Channel.CONTROL, Channel.STDIN):
            send(channel, [b"garbage"])
            send(channel, [])
            send(channel, [DELIMITER, b"", b"{", b"{}", b"{}", b"{}"])
            send(channel, wrong_key)
            send(channel, unsigned)
        send(Channel.SHELL, tampered)
        send(Channel.SHELL, client.session.serialize(client.message("frobnicate_request")))
        send(Channel.SHELL, client.session.serialize(client.message("debug_request")))
        send(Channel.SHELL, client.session.serialize(client.message("input_reply")))
        good_frames = client.session.serialize(good)
        send(Channel.SHELL, good_frames)
        send(Channel.SHELL, good_frames)  # a replay: dropped
        info_id = client.send("kernel_info_request")

        # Only the two genuine requests get replies, in order.
        first = await client.receive(Channel.SHELL)
        second = await client.receive(Channel.SHELL)
        assert first.parent_header is not None
        assert second.parent_header is not None
        assert (first.parent_header.msg_id, second.parent_header.msg_id) == (good.msg_id, info_id)
        assert first.content["execution_count"] == 1
        # And only they got busy/idle: nothing on IOPub has any other parent.
        seen = await iopub_until(client, is_("status", info_id, execution_state="idle"))
        parents = {m.parent_header.msg_id for m in seen if m.parent_header is not None}
        assert parents == {good.msg_id, info_id}
        result = await client.execute("still here")
        assert result.reply.content["execution_count"] == 2


async def test_lone_surrogate_in_a_signed_message_does_not_kill_the_kernel() -> None:
    import json

    async with open_test_kernel(EchoKernel()) as client:
        header = {
            "msg_id": "evil",
            "msg_type": "kernel_info_request",
            "session": "s",
            "username": "\ud800",
            "date": "2024-01-01T00:00:00Z",
            "version": "5.5",
        }
        parts = [json.dumps(p).encode("ascii") for p in (header, {}, {}, {})]
        client.transport.client_send(
            Channel.SHELL, [b"test-client", DELIMITER, client.session.sign(parts), *parts]
        )
        info = await client.request("kernel_info_request")
        assert info.reply.content["status"] == "ok"


def test_header_helper_sanity() -> None:
    # The tests above identify requests by parent msg_id; make sure the client's ids are unique.
    async def main() -> None:
        with trio.fail_after(GUARD):
            async with open_test_kernel(EchoKernel()) as client:
                ids = [client.send("kernel_info_request") for _ in range(20)]
                assert len(set(ids)) == 20
                for msg_id in ids:  # in order: collect() skips other requests' IOPub
                    assert (await client.collect(msg_id)).reply.content["status"] == "ok"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert Header("a", "b", "c").version == PROTOCOL_VERSION
