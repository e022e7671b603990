"""The stdin channel: input and password requests, EOF, and allow_stdin false."""

from __future__ import annotations

import pytest

from kernelsdk.protocol import Channel
from kernelsdk.testing import open_test_kernel

from .conftest import Scripted

# -- stdin ----------------------------------------------------------------------------------------


async def test_input_with_test_client() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("input Your number?", input=["42"])
        assert result.reply.content["status"] == "ok"
        assert result.stdout == "got 42\n"
        assert result.outputs[-1].content["data"] == {"text/plain": "value=42"}


@pytest.mark.parametrize(("code", "password"), [("input Name: ", False), ("password Pw: ", True)])
async def test_input_request_routing(code: str, password: bool) -> None:
    async with open_test_kernel(Scripted()) as client:
        msg_id = client.send("execute_request", {"code": code, "allow_stdin": True})
        request = await client.receive(Channel.STDIN)
        assert request.msg_type == "input_request"
        assert request.content == {"prompt": code.partition(" ")[2], "password": password}
        assert request.parent_header is not None
        assert request.parent_header.msg_id == msg_id
        assert request.identities == (b"test-client",)  # the shell request's identities
        reply = client.message("input_reply", {"value": "secret"})
        client.transport.client_send(Channel.STDIN, client.session.serialize(reply))
        result = await client.collect(msg_id)
        assert result.reply.content["status"] == "ok"
        assert "secret" in result.outputs[-1].content["data"]["text/plain"]


async def test_input_eof() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("input x", input=["\x04"])
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "EOFError"


async def test_stdin_not_allowed() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("input Name: ")  # allow_stdin is False
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "StdinNotAllowedError"
        assert [m.msg_type for m in result.outputs] == ["error"]
        # No input_request was sent: the first one on stdin belongs to the next request.
        msg_id = client.send("execute_request", {"code": "input again", "allow_stdin": True})
        request = await client.receive(Channel.STDIN)
        assert request.parent_header is not None
        assert request.parent_header.msg_id == msg_id
        reply = client.message("input_reply", {"value": "v"})
        client.transport.client_send(Channel.STDIN, client.session.serialize(reply))
        assert (await client.collect(msg_id)).reply.content["status"] == "ok"
