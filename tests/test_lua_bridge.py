"""kernelsdk.NativeRunner / NativeOutput, the bridge the Lua kernel is built on, tested with a
stand-in for a native runtime: Python functions in the worker thread that block the way a C
interpreter loop would (real threads, real clock; guards only stop hangs)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import trio

from kernelsdk import BaseKernel, ExecuteContext, NativeOutput, NativeRunner
from kernelsdk.protocol import Channel, Message
from kernelsdk.testing import TestClient, open_test_kernel

GUARD = 30


class FakeNativeKernel(BaseKernel):
    """Cells name a blocking 'native' function; ``stop`` is what an interpreter hook would do."""

    implementation = "fake-native"

    def __init__(self) -> None:
        super().__init__()
        self.stop_requested = threading.Event()
        self.stops = 0
        self.proceed = threading.Event()
        self.active = 0
        self.max_active = 0
        self.guard = threading.Lock()
        self.runner = NativeRunner(self._stop, flush_interval=0.005)

    def _stop(self) -> None:
        self.stops += 1
        self.stop_requested.set()

    def do_interrupt(self) -> None:
        self.runner.interrupt()

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str | None:
        self.stop_requested.clear()
        fn = getattr(self, f"native_{code.split()[0]}")
        result: str | None = await self.runner.run(fn, code, ctx=ctx)
        return result

    # -- "native" functions, run in the worker thread ------------------------------------------

    def native_mixed(self, out: NativeOutput, code: str) -> str:
        out.write("stdout", "a")
        out.write("stdout", "b\n")
        out.write("stderr", "warn\n")
        out.emit(lambda ctx: ctx.display({"text/plain": "shown"}))
        out.write("stdout", "c\n")
        return "done"

    def native_wait(self, out: NativeOutput, code: str) -> None:
        out.write("stdout", "waiting\n")
        assert self.proceed.wait(GUARD)
        out.write("stdout", "proceeded\n")

    def native_spin(self, out: NativeOutput, code: str) -> str:
        out.write("stdout", "spinning\n")
        assert self.stop_requested.wait(GUARD)  # an interpreter loop until its hook fires
        out.write("stdout", "stopped cleanly\n")
        return "never shown"

    def native_flood(self, out: NativeOutput, code: str) -> None:
        for i in range(5000):
            out.write("stdout", f"{i}\n")

    def native_count(self, out: NativeOutput, code: str) -> None:
        with self.guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.stop_requested.wait(0.01)
        with self.guard:
            self.active -= 1

    def native_ask(self, out: NativeOutput, code: str) -> str:
        out.write("stdout", "before\n")
        answer = out.input("name? ")
        return f"got {answer!r}, interrupted={out.interrupted}"


def bridge_test(
    fn: Callable[[TestClient, FakeNativeKernel], Awaitable[None]],
) -> Callable[[], None]:
    def wrapper() -> None:
        async def main() -> None:
            kernel = FakeNativeKernel()
            with trio.fail_after(GUARD):
                async with open_test_kernel(kernel) as client:
                    await fn(client, kernel)

        trio.run(main)

    wrapper.__name__ = fn.__name__
    return wrapper


async def iopub_until(client: TestClient, msg_id: str, text: str) -> list[Message]:
    seen = []
    while True:
        msg = await client.receive(Channel.IOPUB)
        if msg.parent_header is not None and msg.parent_header.msg_id == msg_id:
            seen.append(msg)
            if msg.msg_type == "stream" and text in msg.content["text"]:
                return seen


@bridge_test
async def test_output_keeps_its_order_and_comes_before_the_result(
    client: TestClient, kernel: FakeNativeKernel
) -> None:
    result = await client.execute("mixed")
    kinds = [(m.msg_type, m.content.get("name")) for m in result.outputs]
    assert kinds == [
        ("stream", "stdout"),
        ("stream", "stderr"),
        ("display_data", None),
        ("stream", "stdout"),
        ("execute_result", None),
    ]
    assert result.outputs[0].content["text"] == "ab\n"  # consecutive writes are merged
    assert result.outputs[-1].content["data"]["text/plain"] == "done"


@bridge_test
async def test_output_is_published_while_the_native_call_runs(
    client: TestClient, kernel: FakeNativeKernel
) -> None:
    msg_id = client.send("execute_request", {"code": "wait", "silent": False})
    # The call cannot return before proceed is set, so this output was streamed.
    await iopub_until(client, msg_id, "waiting")
    kernel.proceed.set()
    result = await client.collect(msg_id)
    assert result.reply.content["status"] == "ok"
    assert result.stdout == "proceeded\n"


@bridge_test
async def test_interrupt_calls_stop_and_waits_for_the_native_call(
    client: TestClient, kernel: FakeNativeKernel
) -> None:
    msg_id = client.send("execute_request", {"code": "spin", "silent": False})
    before = await iopub_until(client, msg_id, "spinning")
    client.send("interrupt_request", {}, Channel.CONTROL)
    result = await client.collect(msg_id)
    assert kernel.stops == 1
    assert result.reply.content["ename"] == "KeyboardInterrupt"
    # Output the native code wrote while stopping still belongs to the cell, before its reply.
    assert result.stdout == "stopped cleanly\n"
    assert not any(m.msg_type == "execute_result" for m in before + result.outputs)
    # An interrupt while no native call runs does not call stop.
    await client.request("interrupt_request", {}, Channel.CONTROL)
    assert kernel.stops == 1
    assert not kernel.runner.busy


@bridge_test
async def test_large_output_applies_backpressure_in_order(
    client: TestClient, kernel: FakeNativeKernel
) -> None:
    kernel.runner = NativeRunner(kernel._stop)
    result = await client.execute("flood")
    assert result.stdout == "".join(f"{i}\n" for i in range(5000))


def test_native_calls_never_overlap() -> None:
    async def main() -> None:
        kernel = FakeNativeKernel()
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(kernel.runner.run, kernel.native_count, "count")
        assert kernel.max_active == 1

    trio.run(main)


@bridge_test
async def test_input_from_the_worker_and_interrupt_while_waiting(
    client: TestClient, kernel: FakeNativeKernel
) -> None:
    result = await client.execute("ask", input=["Ada"])
    assert result.stdout == "before\n"
    assert result.outputs[-1].content["data"]["text/plain"] == "got 'Ada', interrupted=False"
    msg_id = client.send("execute_request", {"code": "ask", "silent": False, "allow_stdin": True})
    request = await client.receive(Channel.STDIN)
    assert request.content["prompt"] == "name? "
    client.send("interrupt_request", {}, Channel.CONTROL)
    result = await client.collect(msg_id)
    assert result.reply.content["ename"] == "KeyboardInterrupt"


def test_output_without_a_context_is_dropped() -> None:
    async def main() -> None:
        runner = NativeRunner(lambda: None)

        def work(out: NativeOutput) -> int:
            out.write("stdout", "nobody listens")
            out.emit(lambda ctx: None)
            return 7

        with trio.fail_after(GUARD):
            assert await runner.run(work) == 7

    trio.run(main)


class NativeFailure(Exception):
    pass


def test_the_workers_exception_is_raised_as_it_is() -> None:
    """Like ``run_blocking``: ``except NativeFailure`` works, no ExceptionGroup around it."""

    async def main() -> None:
        runner = NativeRunner(lambda: None)

        def fail(out: NativeOutput) -> None:
            raise NativeFailure("from the worker")

        with trio.fail_after(GUARD):
            try:
                await runner.run(fail)
            except NativeFailure as exc:
                assert str(exc) == "from the worker"
            else:
                raise AssertionError("NativeFailure was not raised")
        assert not runner.busy

    trio.run(main)


def test_interleaving_calls_run_at_safe_points_and_nest() -> None:
    """NativeRunner(preempt=): an interleaving call runs while the running call is paused at
    a safe point (NativeOutput.pause), the newest to its end first; a call that does not
    interleave waits for the runtime to be free; never two threads in the runtime at once."""

    async def main() -> None:
        log: list[str] = []
        inside = threading.Lock()  # held while a call uses the "runtime"
        armed = threading.Event()
        release = threading.Event()
        runner = NativeRunner(lambda: None, preempt=armed.set)

        def enter(name: str) -> None:
            assert inside.acquire(blocking=False), f"{name}: two threads in the runtime"

        def spin(out: NativeOutput, name: str) -> str:
            enter(name)
            log.append(f"{name} start")
            while not release.is_set():  # a loop whose every step is a safe point
                if out.waiting:
                    log.append(f"{name} pauses")
                    inside.release()
                    out.pause()
                    enter(name)
                    log.append(f"{name} resumes")
            log.append(f"{name} end")
            inside.release()
            return name

        def quick(out: NativeOutput, name: str) -> str:
            enter(name)
            log.append(name)
            inside.release()
            return name

        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(runner.run, spin, "main")
                while "main start" not in log:
                    await trio.sleep(0)
                try:
                    # Not interleaving: waits for the end of main.
                    nursery.start_soon(runner.run, quick, "comm")
                    assert await runner.run(quick, "sub", interleave=True) == "sub"
                    assert armed.is_set()
                    assert log[:3] == ["main start", "main pauses", "sub"], log
                    assert "comm" not in log
                finally:
                    release.set()  # even when an assertion fails: the worker must end
        assert log == ["main start", "main pauses", "sub", "main resumes", "main end", "comm"]
        assert not runner.busy

    trio.run(main)
