"""Shared by the in-memory kernel tests (kernels served by ``kernelsdk.testing``, no sockets).

* ``pytest_pyfunc_call``: every ``async def`` test here runs under ``trio.run`` with a MockClock
  that jumps ahead whenever all tasks are blocked, inside ``trio.fail_after(GUARD)``. The guard
  therefore fires at once on a deadlock (instead of hanging), and no assertion depends on real
  time. (trio's own ``src/trio/_tests/pytest_plugin.py`` runs its tests the same way.)
* ``Scripted``: a fixture kernel whose cells are commands (``print x``, ``fail``, ``input P``,
  ``wait``, ...), with comm targets ``echo`` and ``release``.
* Helpers: ``check_bracketed`` and ``check_reply`` (the lifecycle of one request),
  ``iopub_until``/``is_`` (read IOPub up to a message), ``types`` (IOPub message types).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from kernelsdk import BaseKernel, Comm, ExecuteContext, ExecutionError
from kernelsdk.protocol import PROTOCOL_VERSION, Channel, Message
from kernelsdk.testing import RequestResult, TestClient

GUARD = 60  # virtual seconds: only reached on a deadlock


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> None:
    """Run ``async def`` tests under trio.run, with an autojumping mock clock and the guard.

    The test function is replaced by a synchronous wrapper; pytest's own hook then calls it with
    the test's fixtures and parameters as usual.
    """
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> None:
        async def main() -> None:
            with trio.fail_after(GUARD):
                await fn(**kwargs)

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    pyfuncitem.obj = wrapper


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
