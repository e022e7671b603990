"""Whole kernels served in memory (kernelsdk.testing): the request lifecycle as a client sees it.

Every test runs under ``trio.run`` with a MockClock that jumps ahead whenever all tasks are
blocked. The ``trio.fail_after`` guards therefore fire at once on a deadlock (instead of
hanging), and no assertion depends on real time.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from kernelsdk_echo import EchoKernel

from kernelsdk import (
    DELIMITER,
    PROTOCOL_VERSION,
    BaseKernel,
    Channel,
    Comm,
    Completions,
    ExecuteContext,
    ExecutionError,
    Header,
    IsComplete,
    Message,
    Session,
)
from kernelsdk.testing import RequestResult, TestClient, open_test_kernel

GUARD = 60  # virtual seconds: only reached on a deadlock

AsyncTest = Callable[..., Awaitable[None]]


def trio_test(fn: AsyncTest) -> Callable[..., None]:
    """Run an async test function under trio.run with an autojumping mock clock."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            with trio.fail_after(GUARD):
                await fn(*args, **kwargs)

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    return wrapper


class Scripted(BaseKernel):
    """A kernel whose cells are commands: ``<command> <argument>``."""

    implementation = "scripted"
    implementation_version = "9.9"
    banner = "scripted kernel"
    language_info = {"name": "script", "mimetype": "text/x-script", "file_extension": ".scr"}

    def __init__(self) -> None:
        super().__init__()
        self.release = trio.Event()
        self.interrupts = 0
        self.opened: list[tuple[str, dict[str, Any]]] = []
        self.closed: list[str] = []
        self.expressions: list[str] = []
        self.shutdowns: list[bool] = []
        self.comms.register_target("echo", self._open_echo)
        self.comms.register_target("release", self._open_release)

    def _open_echo(self, comm: Comm, msg: Message) -> None:
        self.opened.append((comm.comm_id, msg.content["data"]))
        comm.send({"opened": msg.content["data"]})
        comm.on_msg(lambda c, m: c.send({"echo": m.content["data"]}, buffers=m.buffers))
        comm.on_close(lambda c, m: self.closed.append(c.comm_id))

    def _open_release(self, comm: Comm, msg: Message) -> None:
        async def on_msg(c: Comm, m: Message) -> None:
            await trio.sleep(0)
            self.release.set()
            c.send({"released": True})

        comm.on_msg(on_msg)

    async def do_execute(self, code: str, ctx: ExecuteContext) -> Any:
        cmd, _, arg = code.partition(" ")
        if cmd == "fail":
            raise ExecutionError("ScriptError", arg or "failed", ["at line 1", "ScriptError!"])
        if cmd == "settle-fail":
            # Fail only once every message the client sent has been read by the kernel.
            await trio.testing.wait_all_tasks_blocked()
            raise ExecutionError("ScriptError", "settled", [])
        if cmd == "valueerror":
            raise ValueError(arg)
        if cmd == "print":
            ctx.print(arg)
            return None
        if cmd == "stderr":
            ctx.stderr(arg)
            return None
        if cmd == "burst":  # burst stdout:a,stderr:b,display:c,...: outputs queued at once
            for part in arg.split(","):
                kind, _, text = part.partition(":")
                if kind == "display":
                    ctx.display({"text/plain": text})
                else:
                    ctx.stream(kind, text)
            return None
        if cmd == "chunks":  # chunks COUNT SIZE: COUNT stdout writes of SIZE characters
            count, size = (int(x) for x in arg.split())
            for i in range(count):
                ctx.stdout(str(i % 10) * size)
            return None
        if cmd == "input":
            value = await ctx.input(arg)
            ctx.print(f"got {value}")
            return f"value={value}"
        if cmd == "password":
            return await ctx.input(arg, password=True)
        if cmd == "display":
            ctx.display({"text/plain": "a"}, {"m": 1}, display_id="d1")
            ctx.display({"text/plain": "b", "text/html": "<b>b</b>"}, buffers=[b"buf"])
            ctx.update_display("d1", {"text/plain": "c"})
            ctx.clear_output(wait=True)
            return None
        if cmd == "hang":
            await trio.sleep_forever()
        if cmd == "wait":
            await self.release.wait()
            return "released"
        if cmd == "open-comm":
            comm = self.comms.open("frontend", data={"a": 1})
            return comm.comm_id
        if cmd == "bundle":
            return {"text/plain": "x", "text/html": "<i>x</i>"}
        if cmd == "thread":

            def blocking() -> int:
                ctx.print("from thread")  # output from a worker thread
                return 7

            return str(await ctx.run_blocking(blocking))
        return code

    async def do_user_expression(self, expression: str) -> dict[str, Any]:
        self.expressions.append(expression)
        if expression == "boom":
            raise ExecutionError("ExprError", "no such name", ["tb"])
        return {"text/plain": expression.upper()}

    def do_interrupt(self) -> None:
        self.interrupts += 1

    async def do_shutdown(self, restart: bool) -> None:
        self.shutdowns.append(restart)


# -- helpers --------------------------------------------------------------------------------------


def check_bracketed(result: RequestResult, msg_id: str, msg_type: str) -> None:
    """busy first, idle last, exactly once each, every message with the request as parent."""
    states = [m.content["execution_state"] for m in result.iopub if m.msg_type == "status"]
    assert states == ["busy", "idle"]
    assert result.iopub[0].msg_type == "status"
    assert result.iopub[0].content == {"execution_state": "busy"}
    assert result.iopub[-1].content == {"execution_state": "idle"}
    for m in result.iopub:
        assert m.parent_header is not None
        assert m.parent_header.msg_id == msg_id
        assert m.parent_header.msg_type == msg_type
        assert m.parent_header.session == "test-client"
        assert m.parent_header.username == "test"
        assert m.header.version == PROTOCOL_VERSION
        assert m.header.session == "test-kernel"


def check_reply(result: RequestResult, msg_id: str, msg_type: str) -> None:
    reply = result.reply
    assert reply.msg_type == msg_type.replace("_request", "_reply")
    assert reply.parent_header is not None
    assert reply.parent_header.msg_id == msg_id
    assert reply.identities == (b"test-client",)
    assert reply.header.version == PROTOCOL_VERSION


async def iopub_until(client: TestClient, predicate: Callable[[Message], bool]) -> list[Message]:
    """Every IOPub message (whatever its parent) up to and including the first matching one."""
    seen = []
    while True:
        msg = await client.receive(Channel.IOPUB)
        seen.append(msg)
        if predicate(msg):
            return seen


def is_(msg_type: str, parent_id: str, **content: Any) -> Callable[[Message], bool]:
    def predicate(m: Message) -> bool:
        return (
            m.msg_type == msg_type
            and m.parent_header is not None
            and m.parent_header.msg_id == parent_id
            and all(m.content.get(k) == v for k, v in content.items())
        )

    return predicate


def types(result: RequestResult) -> list[str]:
    return [m.msg_type for m in result.iopub]


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
@trio_test
async def test_every_request_is_bracketed_by_busy_idle(
    channel: Channel, msg_type: str, content: dict[str, Any]
) -> None:
    async with open_test_kernel(Scripted()) as client:
        msg_id = client.send(msg_type, content, channel)
        result = await client.collect(msg_id, channel)
        check_bracketed(result, msg_id, msg_type)
        check_reply(result, msg_id, msg_type)
        assert result.reply.content.get("status", "ok") in ("ok", "complete", "unknown")


@trio_test
async def test_interrupt_request_is_bracketed() -> None:
    async with open_test_kernel(Scripted()) as client:
        msg_id = client.send("interrupt_request", {}, Channel.CONTROL)
        result = await client.collect(msg_id, Channel.CONTROL)
        check_bracketed(result, msg_id, "interrupt_request")
        check_reply(result, msg_id, "interrupt_request")
        assert result.reply.content == {"status": "ok"}


@pytest.mark.parametrize("msg_type", ["comm_open", "comm_msg", "comm_close"])
@trio_test
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


@trio_test
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


@trio_test
async def test_connect_reply_has_ports() -> None:
    async with open_test_kernel(EchoKernel()) as client:
        content = (await client.request("connect_request")).reply.content
        assert content["status"] == "ok"
        for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
            assert isinstance(content[name], int)


@trio_test
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


# -- execute ---------------------------------------------------------------------------------------


@trio_test
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


@trio_test
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


@trio_test
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


@trio_test
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


@trio_test
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
@trio_test
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


@trio_test
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


@trio_test
async def test_bad_execute_content_gets_an_error_reply() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.request("execute_request", {"code": 5})
        assert result.reply.content["status"] == "error"
        assert result.reply.content["execution_count"] == 0
        assert types(result) == ["status", "status"]
        ok = await client.execute("print x")
        assert ok.reply.content["execution_count"] == 1


# -- stop_on_error -------------------------------------------------------------------------------


@trio_test
async def test_stop_on_error_aborts_queued_executes() -> None:
    async with open_test_kernel(Scripted()) as client:
        ids = [
            client.send("execute_request", {"code": "settle-fail"}),
            client.send("execute_request", {"code": "print second"}),
            client.send("kernel_info_request"),
            client.send("execute_request", {"code": "print third"}),
        ]
        results = [await client.collect(i) for i in ids]
        assert [r.reply.content["status"] for r in results] == ["error", "aborted", "ok", "aborted"]
        for msg_id, result in zip(ids[1::2], results[1::2], strict=True):
            check_bracketed(result, msg_id, "execute_request")
            assert types(result) == ["status", "status"]  # nothing ran
            assert result.reply.msg_type == "execute_reply"
        # An execute sent after those replies runs normally.
        later = await client.execute("print later")
        assert later.reply.content["status"] == "ok"
        assert later.stdout == "later\n"
        assert later.reply.content["execution_count"] == 2


@trio_test
async def test_stop_on_error_false_does_not_abort() -> None:
    async with open_test_kernel(Scripted()) as client:
        failing = client.send("execute_request", {"code": "settle-fail", "stop_on_error": False})
        queued = client.send("execute_request", {"code": "print runs"})
        assert (await client.collect(failing)).reply.content["status"] == "error"
        result = await client.collect(queued)
        assert result.reply.content["status"] == "ok"
        assert result.stdout == "runs\n"


def test_stop_on_error_aborts_all_executes_already_sent_by_an_immediate_failure() -> None:
    # The failing cell does not yield at all: the kernel must still take in what was sent.
    async def once() -> list[str]:
        with trio.fail_after(GUARD):
            async with open_test_kernel(Scripted()) as client:
                ids = [
                    client.send("execute_request", {"code": "fail now"}),
                    client.send("execute_request", {"code": "print b"}),
                    client.send("execute_request", {"code": "print c"}),
                ]
                return [(await client.collect(i)).reply.content["status"] for i in ids]

    outcomes = [
        trio.run(once, clock=trio.testing.MockClock(autojump_threshold=0)) for _ in range(20)
    ]
    assert all(o == ["error", "aborted", "aborted"] for o in outcomes), outcomes


class Spinner(BaseKernel):
    """Runs a cell that keeps yielding (never blocks) for a bounded number of steps."""

    def __init__(self) -> None:
        super().__init__()
        self.flag = trio.Event()

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str:
        for step in range(5000):
            if self.flag.is_set():
                return f"saw flag after {step} steps"
            await trio.sleep(0)
        return "flag never set"


@trio_test
async def test_a_failure_is_not_held_up_by_a_busy_kernel_in_the_same_process() -> None:
    spinner = Spinner()
    async with open_test_kernel(spinner) as a, open_test_kernel(Scripted()) as b:
        spin_id = a.send("execute_request", {"code": "spin"})
        await iopub_until(a, is_("execute_input", spin_id))
        failed = await b.execute("fail now")
        assert failed.reply.content["status"] == "error"
        spinner.flag.set()
        spun = await a.collect(spin_id)
        assert spun.outputs[-1].content["data"]["text/plain"].startswith("saw flag")


# -- user_expressions ---------------------------------------------------------------------------


@trio_test
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


@trio_test
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


# -- stdin ----------------------------------------------------------------------------------------


@trio_test
async def test_input_with_test_client() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("input Your number?", input=["42"])
        assert result.reply.content["status"] == "ok"
        assert result.stdout == "got 42\n"
        assert result.outputs[-1].content["data"] == {"text/plain": "value=42"}


@pytest.mark.parametrize(("code", "password"), [("input Name: ", False), ("password Pw: ", True)])
@trio_test
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


@trio_test
async def test_input_eof() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("input x", input=["\x04"])
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "EOFError"


@trio_test
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


# -- display --------------------------------------------------------------------------------------


@trio_test
async def test_display_update_and_clear() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("display")
        assert [m.msg_type for m in result.outputs] == [
            "display_data",
            "display_data",
            "update_display_data",
            "clear_output",
        ]
        first, second, update, clear = result.outputs
        assert first.content == {
            "data": {"text/plain": "a"},
            "metadata": {"m": 1},
            "transient": {"display_id": "d1"},
        }
        assert second.content["data"] == {"text/plain": "b", "text/html": "<b>b</b>"}
        assert second.content["transient"] == {}
        assert second.buffers == (b"buf",)
        assert update.content == {
            "data": {"text/plain": "c"},
            "metadata": {},
            "transient": {"display_id": "d1"},
        }
        assert clear.content == {"wait": True}
        assert result.reply.content["status"] == "ok"


@trio_test
async def test_silent_display_publishes_nothing() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("display", silent=True)
        assert types(result) == ["status", "status"]


# -- comms ----------------------------------------------------------------------------------------


@trio_test
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


@trio_test
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


@trio_test
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


@trio_test
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


@trio_test
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


# -- interrupts -----------------------------------------------------------------------------------


@trio_test
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


@trio_test
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


@trio_test
async def test_interrupt_while_idle_is_harmless() -> None:
    kernel = Scripted()
    async with open_test_kernel(kernel) as client:
        client.server.interrupt()  # type: ignore[attr-defined]
        assert kernel.interrupts == 1
        result = await client.execute("print still fine")
        assert result.reply.content["status"] == "ok"
        assert result.reply.content["execution_count"] == 1


@trio_test
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


# -- history, completion, inspection -------------------------------------------------------------


async def history(client: TestClient, **content: Any) -> list[list[Any]]:
    result = await client.request("history_request", {"output": False, "raw": True, **content})
    assert result.reply.content["status"] == "ok"
    entries: list[list[Any]] = result.reply.content["history"]
    return entries


@trio_test
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


@trio_test
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


@trio_test
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


@trio_test
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


# -- several kernels, shutdown, bad input -------------------------------------------------------


@trio_test
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
@trio_test
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


@trio_test
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


@trio_test
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
