"""history, complete, inspect and is_complete, BaseKernel's defaults, and failing hooks."""

from __future__ import annotations

from typing import Any

from kernelsdk_echo import EchoKernel

from kernelsdk import BaseKernel, Completions, IsComplete
from kernelsdk.testing import TestClient, open_test_kernel

from .conftest import Scripted, check_bracketed

# -- history, completion, inspection -------------------------------------------------------------


async def history(client: TestClient, **content: Any) -> list[list[Any]]:
    result = await client.request("history_request", {"output": False, "raw": True, **content})
    assert result.reply.content["status"] == "ok"
    entries: list[list[Any]] = result.reply.content["history"]
    return entries


async def test_history() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        for code in ["alpha", "beta", "alpha", "gamma"]:
            await client.execute(code)
        await client.execute("hidden", silent=True)
        await client.execute("unstored", store_history=False)

        assert await history(client, hist_access_type="tail", n=2) == [
            [1, 3, "alpha"],
            [1, 4, "gamma"],
        ]
        assert await history(client, hist_access_type="tail", n=1, output=True) == [
            [1, 4, ["gamma", "gamma"]]
        ]
        assert len(await history(client, hist_access_type="tail", n=100)) == 4
        assert await history(client, hist_access_type="range", session=0, start=2, stop=4) == [
            [1, 2, "beta"],
            [1, 3, "alpha"],
        ]
        # As jupyter_kernel_test does: the session and line of a tail entry, one line wide.
        session, line, _ = (await history(client, hist_access_type="tail", n=1))[0]
        assert await history(
            client, hist_access_type="range", session=session, start=line, stop=line + 1
        ) == [[1, 4, "gamma"]]
        assert await history(client, hist_access_type="search", pattern="a*") == [
            [1, 1, "alpha"],
            [1, 3, "alpha"],
        ]
        assert await history(client, hist_access_type="search", pattern="a*", unique=True) == [
            [1, 3, "alpha"]
        ]
        assert await history(client, hist_access_type="search", pattern="*a", n=3) == [
            [1, 2, "beta"],
            [1, 3, "alpha"],
            [1, 4, "gamma"],
        ]
        assert await history(client, hist_access_type="search", pattern="*a", unique=True) == [
            [1, 2, "beta"],
            [1, 3, "alpha"],
            [1, 4, "gamma"],
        ]
        assert await history(client, hist_access_type="search", pattern="b?ta", n=None) == [
            [1, 2, "beta"]
        ]
        assert await history(client, hist_access_type="search", pattern="nothing*") == []
        assert await history(client, hist_access_type="unknown") == []
        # Unknown request keys are ignored rather than breaking the hook.
        assert await history(client, hist_access_type="tail", n=1, extra_key=1) == [[1, 4, "gamma"]]


async def test_echo_complete_inspect_is_complete() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        await client.execute("hello world.x help")

        content = (
            await client.request("complete_request", {"code": "say he", "cursor_pos": 6})
        ).reply.content
        assert content == {
            "status": "ok",
            "matches": ["hello", "help"],
            "cursor_start": 4,
            "cursor_end": 6,
            "metadata": {},
        }
        content = (await client.request("complete_request", {"code": "wor"})).reply.content
        assert content["matches"] == ["world.x"]
        assert (content["cursor_start"], content["cursor_end"]) == (0, 3)  # cursor defaults to end

        found = (await client.request("inspect_request", {"code": "hello", "cursor_pos": 2})).reply
        assert found.content["status"] == "ok"
        assert found.content["found"] is True
        assert found.content["data"] == {
            "text/plain": "hello: a word this kernel has echoed before"
        }
        assert found.content["metadata"] == {}
        missing = (await client.request("inspect_request", {"code": "nope", "cursor_pos": 1})).reply
        assert missing.content == {"status": "ok", "found": False, "data": {}, "metadata": {}}

        incomplete = await client.request("is_complete_request", {"code": "line one \\"})
        assert incomplete.reply.content["status"] == "incomplete"
        assert "indent" in incomplete.reply.content
        complete = await client.request("is_complete_request", {"code": "line one"})
        assert complete.reply.content == {"status": "complete"}


async def test_base_kernel_defaults() -> None:
    async with open_test_kernel(Scripted()) as client:
        content = (
            await client.request("complete_request", {"code": "abc", "cursor_pos": 2})
        ).reply.content
        assert content == {
            "status": "ok",
            "matches": [],
            "cursor_start": 2,
            "cursor_end": 2,
            "metadata": {},
        }
        content = (
            await client.request("inspect_request", {"code": "abc", "cursor_pos": 1})
        ).reply.content
        assert content == {"status": "ok", "found": False, "data": {}, "metadata": {}}
        content = (await client.request("is_complete_request", {"code": "abc"})).reply.content
        assert content == {"status": "unknown"}


class Broken(BaseKernel):
    async def do_complete(self, code: str, cursor_pos: int) -> Completions:
        raise ValueError("completer crashed")

    async def do_is_complete(self, code: str) -> IsComplete:
        return "complete"  # type: ignore[return-value]  # wrong type on purpose


async def test_failing_hooks_give_error_replies() -> None:
    async with open_test_kernel(Broken()) as client:
        msg_id = client.send("complete_request", {"code": "x", "cursor_pos": 1})
        result = await client.collect(msg_id)
        check_bracketed(result, msg_id, "complete_request")
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "ValueError"
        assert result.reply.content["evalue"] == "completer crashed"
        result = await client.request("is_complete_request", {"code": "x"})
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "TypeError"
        result = await client.execute("no do_execute")
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "NotImplementedError"
        info = await client.request("kernel_info_request")
        assert info.reply.content["status"] == "ok"
