"""stop_on_error: a failing cell aborts the executes queued behind it, and only those."""

from __future__ import annotations

import trio
import trio.testing

from kernelsdk import BaseKernel, ExecuteContext
from kernelsdk.testing import open_test_kernel

from .conftest import GUARD, Scripted, check_bracketed, iopub_until, is_, types

# -- stop_on_error -------------------------------------------------------------------------------


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
