"""Input requests that outlive their execution: interrupts and shutdowns while a cell waits for
input, and what a worker thread left behind by an interrupt may still do (issue 12).

The in-memory tests run under a real clock (worker threads); the others start real kernel
processes and talk to them over real ZeroMQ sockets with jupyter_client. Timeouts and
``trio.fail_after`` guards only stop a hang; no assertion depends on time.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from conftest import (
    TESTS_DIR,
    JupyterEnv,
    _write_spec,
    kernel_argv,
)
from test_integration import TIMEOUT, collect, control_reply, shell_reply, stdout_of

import kernelsdk
from kernelsdk import BaseKernel, ExecuteContext, NativeOutput, NativeRunner
from kernelsdk.protocol import PROTOCOL_VERSION, Channel, Message
from kernelsdk.testing import TestClient, open_test_kernel

GUARD = 30  # seconds: only reached on a hang


def memory_test(
    kernel_factory: Callable[[], BaseKernel],
) -> Callable[[Callable[[TestClient, Any], Awaitable[None]]], Callable[[], None]]:
    """Run ``fn(client, kernel)`` against a fresh kernel served in memory, on a real clock."""

    def decorate(fn: Callable[[TestClient, Any], Awaitable[None]]) -> Callable[[], None]:
        def wrapper() -> None:
            async def main() -> None:
                kernel = kernel_factory()
                with trio.fail_after(GUARD):
                    async with open_test_kernel(kernel) as client:
                        await fn(client, kernel)

            trio.run(main)

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper

    return decorate


class ThreadedInterpreterKernel(BaseKernel):
    """A stateful interpreter written in Python, the way writing-a-kernel.md suggests: each
    cell runs in a ``run_blocking`` worker holding the interpreter's lock, and reads a line
    (the cell's code is the prompt) with ``input_from_thread``."""

    implementation = "threaded-interpreter"

    def __init__(self, *, locked: bool = True) -> None:
        super().__init__()
        self.interpreter_lock = threading.Lock() if locked else contextlib.nullcontext()
        self.worker_raised: list[BaseException] = []

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str:
        return await ctx.run_blocking(self._run, ctx, code)

    def _run(self, ctx: ExecuteContext, prompt: str) -> str:
        with self.interpreter_lock:
            try:
                return ctx.input_from_thread(prompt)
            except BaseException as exc:
                self.worker_raised.append(exc)
                ctx.print("late output of a stranded worker")
                raise


class NativeThreadInputKernel(BaseKernel):
    """A NativeRunner kernel whose native code reads through ``ctx.input_from_thread``."""

    implementation = "native-thread-input"

    def __init__(self) -> None:
        super().__init__()
        self.runner = NativeRunner(lambda: None)
        self.worker_raised: list[BaseException] = []

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str:
        def read(out: NativeOutput) -> str:
            try:
                return ctx.input_from_thread(code)
            except BaseException as exc:
                self.worker_raised.append(exc)
                raise

        return await self.runner.run(read, ctx=ctx)

    def do_interrupt(self) -> None:
        self.runner.interrupt()


class AskKernel(BaseKernel):
    """Each word of a cell is a prompt; the cell's value is the answers, space-separated."""

    implementation = "ask"

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str:
        return " ".join([await ctx.input(prompt) for prompt in code.split()])


def parent_id(msg: Message) -> str | None:
    return msg.parent_header.msg_id if msg.parent_header is not None else None


async def iopub_through_idle(client: TestClient, msg_id: str, into: list[Message]) -> None:
    """Append every IOPub message (whatever its parent) to ``into`` until ``msg_id``'s idle."""
    while True:
        msg = await client.receive(Channel.IOPUB)
        into.append(msg)
        if parent_id(msg) == msg_id and msg.content.get("execution_state") == "idle":
            return


def execute_result(iopub: list[Message], msg_id: str) -> str:
    (result,) = [m for m in iopub if m.msg_type == "execute_result" and parent_id(m) == msg_id]
    return str(result.content["data"]["text/plain"])


# -- in memory ------------------------------------------------------------------------------


async def interrupt_input_from_thread_then_run_a_cell(
    client: TestClient, kernel: ThreadedInterpreterKernel, *, late_answer: bool
) -> None:
    """The stranded worker's input raises at once, its output is dropped, a late reply to
    its prompt is ignored, and the next cell gets the interpreter and its own input."""
    iopub: list[Message] = []
    first = client.send("execute_request", {"code": "first? ", "allow_stdin": True})
    first_prompt = await client.receive(Channel.STDIN)
    client.send("interrupt_request", {}, Channel.CONTROL)
    await iopub_through_idle(client, first, iopub)

    second = client.send("execute_request", {"code": "second? ", "allow_stdin": True})
    second_prompt = await client.receive(Channel.STDIN)
    assert parent_id(second_prompt) == second
    if late_answer:
        client.reply_input(first_prompt, "late answer to the interrupted cell")
    client.reply_input(second_prompt, "B")
    await iopub_through_idle(client, second, iopub)

    replies = {}
    for _ in range(2):
        reply = await client.receive(Channel.SHELL)
        replies[parent_id(reply)] = reply.content
    assert replies[first]["ename"] == "KeyboardInterrupt"
    assert replies[second]["status"] == "ok"
    assert execute_result(iopub, second) == "B"
    # Nothing of the interrupted cell after its idle.
    of_first = [m for m in iopub if parent_id(m) == first]
    assert of_first[-1].content == {"execution_state": "idle"}
    assert not any("stranded" in str(m.content) for m in iopub)
    assert [type(e) for e in kernel.worker_raised] == [kernelsdk.InputInterrupted]


@memory_test(ThreadedInterpreterKernel)
async def test_interrupt_frees_a_worker_waiting_in_input_from_thread(
    client: TestClient, kernel: ThreadedInterpreterKernel
) -> None:
    await interrupt_input_from_thread_then_run_a_cell(client, kernel, late_answer=True)


@memory_test(lambda: ThreadedInterpreterKernel(locked=False))
async def test_a_stranded_worker_never_takes_the_next_cells_input(
    client: TestClient, kernel: ThreadedInterpreterKernel
) -> None:
    await interrupt_input_from_thread_then_run_a_cell(client, kernel, late_answer=False)


@memory_test(NativeThreadInputKernel)
async def test_interrupt_reaches_input_from_thread_in_a_native_runner(
    client: TestClient, kernel: NativeThreadInputKernel
) -> None:
    """A NativeRunner never abandons its worker: the interrupt completes only because the
    worker's input_from_thread raises at once."""
    msg_id = client.send("execute_request", {"code": "name? ", "allow_stdin": True})
    await client.receive(Channel.STDIN)
    client.send("interrupt_request", {}, Channel.CONTROL)
    result = await client.collect(msg_id)
    assert result.reply.content["ename"] == "KeyboardInterrupt"
    assert [type(e) for e in kernel.worker_raised] == [kernelsdk.InputInterrupted]
    assert (await client.execute("again? ", input=["yes"])).reply.content["status"] == "ok"


def test_test_client_answers_only_the_input_request_of_its_execution() -> None:
    """Another execution's prompt (here an execute on control, still waiting) is on stdin
    before this one's: ``execute(input=...)`` must answer only the prompt of its own execute,
    addressed to it."""

    async def main() -> None:
        with trio.fail_after(GUARD):
            async with open_test_kernel(AskKernel()) as client:
                other = client.send(
                    "execute_request", {"code": "other?", "allow_stdin": True}, Channel.CONTROL
                )
                await trio.testing.wait_all_tasks_blocked()  # its input_request is queued
                result = await client.execute("second? third?", input=["B", "C"])
                assert result.reply.content["status"] == "ok"
                assert result.outputs[-1].content["data"]["text/plain"] == "B C"
                other_prompt = await client.receive(Channel.STDIN)  # left for its owner
                assert parent_id(other_prompt) == other
                client.reply_input(other_prompt, "O")
                other_result = await client.collect(other, Channel.CONTROL)
                assert other_result.outputs[-1].content["data"]["text/plain"] == "O"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- real sockets -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def native_probe_spec(jupyter_env: JupyterEnv) -> str:
    """The kernelspec ``native-probe`` (tests/kernels_for_tests.py's NativeProbeKernel)."""
    pythonpath = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    _write_spec(
        jupyter_env.kernels_dir,
        "native-probe",
        {
            "argv": kernel_argv("kernels_for_tests:NativeProbeKernel"),
            "display_name": "Native probe",
            "language": "probe",
            "interrupt_mode": "message",
            "env": {"PYTHONPATH": pythonpath},
            "kernel_protocol_version": PROTOCOL_VERSION,
        },
    )
    return "native-probe"


def stdin_request(kc: Any, msg_id: str) -> dict[str, Any]:
    request: dict[str, Any] = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    assert request["parent_header"]["msg_id"] == msg_id
    return request


def iopub_through_idle_real(kc: Any, msg_id: str) -> list[dict[str, Any]]:
    """Every IOPub message, whatever its parent, until ``msg_id``'s idle."""
    msgs = []
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        msgs.append(msg)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["content"].get("execution_state") == "idle"
        ):
            return msgs


def test_interrupt_during_input_from_thread_over_sockets(start_kernel: Any) -> None:
    """The probe's ``thread-input`` is a run_blocking worker holding an interpreter lock."""
    km, kc = start_kernel("probe")
    first = kc.execute("thread-input first? ", allow_stdin=True)
    first_prompt = stdin_request(kc, first)
    km.interrupt_kernel()
    assert shell_reply(kc, first)["content"]["ename"] == "KeyboardInterrupt"
    iopub = iopub_through_idle_real(kc, first)
    # A late answer to the interrupted prompt, correctly addressed, answers nothing.
    kc.stdin_channel.send(kc.session.msg("input_reply", {"value": "late"}, parent=first_prompt))

    second = kc.execute("thread-input second? ", allow_stdin=True)
    stdin_request(kc, second)
    kc.input("B")
    reply = shell_reply(kc, second)
    iopub += iopub_through_idle_real(kc, second)
    assert reply["content"]["status"] == "ok"
    assert stdout_of([m for m in iopub if m["parent_header"].get("msg_id") == second]) == (
        "worker done\nB\n"
    )
    of_first = [m for m in iopub if m["parent_header"].get("msg_id") == first]
    assert of_first[-1]["content"] == {"execution_state": "idle"}
    assert "worker done" not in stdout_of(of_first)


def test_native_runner_kernel_shuts_down_while_waiting_for_input(
    start_kernel: Any, native_probe_spec: str
) -> None:
    km, kc = start_kernel(native_probe_spec)
    proc = km.provisioner.process
    msg_id = kc.execute("print asking\ninput name? ", allow_stdin=True)
    stdin_request(kc, msg_id)
    shutdown = kc.shutdown()
    assert control_reply(kc, shutdown)["content"] == {"status": "ok", "restart": False}
    assert proc.wait(timeout=TIMEOUT) == 0


def test_lua_kernel_shuts_down_while_waiting_for_input(start_kernel: Any) -> None:
    km, kc = start_kernel("lua54")
    proc = km.provisioner.process
    msg_id = kc.execute("print('asking')\nlocal line = io.read()", allow_stdin=True)
    stdin_request(kc, msg_id)
    shutdown = kc.shutdown()
    assert control_reply(kc, shutdown)["content"] == {"status": "ok", "restart": False}
    assert proc.wait(timeout=TIMEOUT) == 0


def test_lua_kernel_interrupted_input_then_next_cell(start_kernel: Any) -> None:
    km, kc = start_kernel("lua54")
    first = kc.execute("x = io.read()", allow_stdin=True)
    stdin_request(kc, first)
    km.interrupt_kernel()
    assert shell_reply(kc, first)["content"]["ename"] == "KeyboardInterrupt"
    collect(kc, first)
    second = kc.execute("print(io.read())", allow_stdin=True)
    stdin_request(kc, second)
    kc.input("B")
    assert shell_reply(kc, second)["content"]["status"] == "ok"
    assert stdout_of(collect(kc, second)) == "B\n"
