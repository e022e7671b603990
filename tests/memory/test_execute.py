"""execute_request: output order, streams, silent and store_history, errors, user_expressions,
output from a worker thread."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from kernelsdk_echo import EchoKernel

from kernelsdk.testing import open_test_kernel

from .conftest import Scripted, check_bracketed, check_reply, types

# -- execute ---------------------------------------------------------------------------------------


async def test_execute_output_order() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        msg_id = client.send("execute_request", {"code": "hello é"})
        result = await client.collect(msg_id)
        check_bracketed(result, msg_id, "execute_request")
        check_reply(result, msg_id, "execute_request")
        assert types(result) == ["status", "execute_input", "stream", "execute_result", "status"]
        assert result.iopub[1].content == {"code": "hello é", "execution_count": 1}
        assert result.iopub[2].content == {"name": "stdout", "text": "hello é\n"}
        assert result.iopub[3].content == {
            "execution_count": 1,
            "data": {"text/plain": "hello é"},
            "metadata": {},
        }
        assert result.reply.content == {
            "status": "ok",
            "execution_count": 1,
            "payload": [],
            "user_expressions": {},
        }
        second = await client.execute("again")
        assert second.reply.content["execution_count"] == 2
        assert second.iopub[1].content["execution_count"] == 2


async def test_results_and_streams() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("print some text")
        assert result.stdout == "some text\n"
        assert types(result) == ["status", "execute_input", "stream", "status"]  # None: no result
        result = await client.execute("stderr oops")
        assert result.stderr == "oops"
        assert result.stdout == ""
        result = await client.execute("bundle")
        (res,) = result.outputs
        assert res.msg_type == "execute_result"
        assert res.content["data"] == {"text/plain": "x", "text/html": "<i>x</i>"}
        assert res.content["execution_count"] == 3


async def test_adjacent_stream_outputs_queued_together_are_merged() -> None:
    """Stream writes that are queued before the IOPub writer runs leave as one message per
    run of the same stream, in order; other outputs are never merged or reordered."""
    async with open_test_kernel(Scripted()) as client:
        code = "burst stdout:a,stdout:b,stderr:c,stdout:d,display:e,stdout:f,stdout:g"
        result = await client.execute(code)
        assert [
            (m.msg_type, m.content.get("name"), m.content.get("text")) for m in result.outputs
        ] == [
            ("stream", "stdout", "ab"),
            ("stream", "stderr", "c"),
            ("stream", "stdout", "d"),
            ("display_data", None, None),
            ("stream", "stdout", "fg"),
        ]
        # Merged messages stay under 64 KiB of text each; nothing is lost or reordered.
        result = await client.execute("chunks 5 30000")
        streams = [m.content["text"] for m in result.outputs]
        assert [len(t) for t in streams] == [60_000, 60_000, 30_000]
        assert "".join(streams) == "".join(str(i) * 30_000 for i in range(5))


async def test_silent_execution() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        result = await client.execute("quiet", silent=True)
        assert types(result) == ["status", "status"]
        assert result.reply.content["status"] == "ok"
        assert result.reply.content["execution_count"] == 0
        loud = await client.execute("loud")
        assert loud.reply.content["execution_count"] == 1
        result = await client.execute("quiet again", silent=True, store_history=True)
        assert types(result) == ["status", "status"]
        assert result.reply.content["execution_count"] == 1
        history = await client.request(
            "history_request", {"hist_access_type": "tail", "n": 10, "output": False, "raw": True}
        )
        assert history.reply.content["history"] == [[1, 1, "loud"]]


async def test_store_history_false_does_not_advance_the_count() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        await client.execute("one")
        result = await client.execute("not stored", store_history=False)
        assert result.reply.content["execution_count"] == 1
        assert result.iopub[1].msg_type == "execute_input"
        assert result.stdout == "not stored\n"  # not silent: output still shown
        result = await client.execute("two")
        assert result.reply.content["execution_count"] == 2
        history = await client.request(
            "history_request", {"hist_access_type": "tail", "n": 10, "output": False, "raw": True}
        )
        assert history.reply.content["history"] == [[1, 1, "one"], [1, 2, "two"]]


@pytest.mark.parametrize(
    ("code", "ename", "evalue"),
    [
        ("fail it broke", "ScriptError", "it broke"),
        ("valueerror bad value", "ValueError", "bad value"),
    ],
)
async def test_execute_error(code: str, ename: str, evalue: str) -> None:
    async with open_test_kernel(Scripted()) as client:
        msg_id = client.send("execute_request", {"code": code})
        result = await client.collect(msg_id)
        check_bracketed(result, msg_id, "execute_request")
        assert types(result) == ["status", "execute_input", "error", "status"]
        (error,) = result.outputs  # exactly one output, no stderr
        assert error.content["ename"] == ename
        assert error.content["evalue"] == evalue
        traceback = error.content["traceback"]
        assert isinstance(traceback, list)
        assert traceback
        assert all(isinstance(line, str) for line in traceback)
        if ename == "ScriptError":
            assert traceback == ["at line 1", "ScriptError!"]
        else:
            assert any("ValueError" in line for line in traceback)
        reply = result.reply.content
        assert reply["status"] == "error"
        assert reply["ename"] == ename
        assert reply["evalue"] == evalue
        assert reply["traceback"] == traceback
        assert reply["execution_count"] == 1
        # The kernel goes on normally.
        ok = await client.execute("print fine")
        assert ok.reply.content["status"] == "ok"
        assert ok.reply.content["execution_count"] == 2


async def test_silent_error_publishes_nothing_and_aborts_nothing() -> None:
    async with open_test_kernel(Scripted()) as client:
        failing = client.send("execute_request", {"code": "settle-fail", "silent": True})
        queued = client.send("execute_request", {"code": "print after"})
        result = await client.collect(failing)
        assert types(result) == ["status", "status"]
        assert result.reply.content["status"] == "error"
        after = await client.collect(queued)
        assert after.reply.content["status"] == "ok"
        assert after.stdout == "after\n"


async def test_bad_execute_content_gets_an_error_reply() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.request("execute_request", {"code": 5})
        assert result.reply.content["status"] == "error"
        assert result.reply.content["execution_count"] == 0
        assert types(result) == ["status", "status"]
        ok = await client.execute("print x")
        assert ok.reply.content["execution_count"] == 1


# -- user_expressions ---------------------------------------------------------------------------


async def test_user_expressions_default_is_an_error_per_expression() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        result = await client.execute("x", user_expressions={"a": "1+1", "b": "y"})
        assert result.reply.content["status"] == "ok"
        exprs = result.reply.content["user_expressions"]
        assert set(exprs) == {"a", "b"}
        for value in exprs.values():
            assert value["status"] == "error"
            assert value["ename"] == "NotImplementedError"
            assert isinstance(value["traceback"], list)


async def test_user_expressions_override() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        result = await client.execute("print x", user_expressions={"a": "abc", "b": "boom"})
        exprs = result.reply.content["user_expressions"]
        assert exprs["a"] == {"status": "ok", "data": {"text/plain": "ABC"}, "metadata": {}}
        assert exprs["b"]["status"] == "error"
        assert exprs["b"]["ename"] == "ExprError"
        assert exprs["b"]["evalue"] == "no such name"
        assert exprs["b"]["traceback"] == ["tb"]
        # Not evaluated when the cell fails.
        kernel.expressions.clear()
        failed = await client.execute("fail", user_expressions={"a": "abc"})
        assert failed.reply.content["status"] == "error"
        assert failed.reply.content["user_expressions"] == {}
        assert kernel.expressions == []


def test_run_blocking_output_from_a_worker_thread() -> None:
    # Real clock: a worker thread is involved. The guard only stops a hang.
    async def main() -> None:
        with trio.fail_after(30):
            async with open_test_kernel(Scripted()) as client:
                result = await client.execute("thread")
                assert result.reply.content["status"] == "ok"
                assert result.stdout == "from thread\n"
                assert types(result) == [
                    "status",
                    "execute_input",
                    "stream",
                    "execute_result",
                    "status",
                ]
                assert result.outputs[-1].content["data"] == {"text/plain": "7"}

    trio.run(main)
