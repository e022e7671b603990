"""Every rank other than 0: run each cell rank 0 sends, reporting its output and its end.

A worker waits for a command from rank 0 (:mod:`._wire`), runs it on the author's kernel,
and reports back; while a cell runs it keeps listening, so an interrupt cancels the cell and
calls the kernel's ``do_interrupt``, and the answers to the cell's ``input()`` (which only
rank 0 can ask the frontend for) reach it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from .._context import ExecuteContext
from .._exceptions import ExecutionError
from .._executor import Executor
from .._kernel import BaseKernel
from .._message import Header, Message
from .._protocol import error_content, interrupt_error
from ._wire import (
    ByeReport,
    Command,
    DoneReport,
    ExecuteCommand,
    InputReplyCommand,
    InputRequestReport,
    InterruptCommand,
    Nudge,
    OutputReport,
    Report,
    ShutdownCommand,
    receive_command,
    send,
)

if TYPE_CHECKING:
    from mpi4py import MPI

    from .._captured_output import CapturedOutput


async def serve_worker(
    kernel: BaseKernel,
    comm: MPI.Intracomm,
    *,
    executor: Executor | None = None,
    native_output: CapturedOutput | None = None,
    nudge: Nudge | None = None,
) -> None:
    """Serve rank 0's commands on a rank other than 0 until it says shut down.

    ``executor`` says where cells run, as :func:`~kernelsdk.open_kernel`'s does on rank 0 (an
    embedded simulation runs them on its own thread, at its safe points); ``nudge`` lets it
    wait for commands with long sleeps, woken when a command is known to be coming.
    """
    await Worker(kernel, comm, executor=executor, native_output=native_output, nudge=nudge).serve()


class Worker:
    """A rank other than 0: runs each cell rank 0 sends, reporting output and the end."""

    def __init__(
        self,
        kernel: BaseKernel,
        comm: MPI.Intracomm,
        *,
        executor: Executor | None = None,
        native_output: CapturedOutput | None = None,
        nudge: Nudge | None = None,
    ) -> None:
        self.kernel = kernel
        self.comm = comm
        self.executor = executor
        self.native_output = native_output
        self.nudge = nudge
        self.rank: int = comm.Get_rank()
        self._sends: list[MPI.Request] = []
        self._waiting: list[Command] = []  # commands that arrived while a cell ran

    def report(self, report: Report) -> None:
        self._sends = [r for r in self._sends if not r.Test()]
        self._sends.append(send(self.comm, report, 0))

    async def serve(self) -> None:
        while True:
            if self._waiting:
                command = self._waiting.pop(0)
            else:
                command = await receive_command(self.comm, self.nudge, between_cells=True)
            if isinstance(command, ShutdownCommand):
                await self.kernel.do_shutdown(command.restart)
                self.report(ByeReport(seq=command.seq, rank=self.rank))
                break
            if isinstance(command, ExecuteCommand):
                await self._execute(command)
            # Anything else is an interrupt or input reply that came after its cell ended.
        # Let the last reports leave before MPI is finalized at exit.
        while not all(r.Test() for r in self._sends):
            await trio.sleep(0.001)

    async def _execute(self, command: ExecuteCommand) -> None:
        seq = command.seq
        input_send, input_recv = trio.open_memory_channel[InputReplyCommand](math.inf)

        async def ask_rank0(prompt: str, password: bool) -> str:
            # Only rank 0 talks to the frontend: it prompts once for all ranks.
            self.report(
                InputRequestReport(seq=seq, rank=self.rank, prompt=prompt, password=password)
            )
            reply = await input_recv.receive()
            if reply.error is not None:
                if reply.error.startswith("EOFError"):
                    raise EOFError("end of input")
                raise ExecutionError("InputError", reply.error, [])
            return str(reply.value)

        def publish(
            msg_type: str,
            content: dict[str, Any],
            metadata: dict[str, Any] | None,
            buffers: Sequence[bytes],
        ) -> None:
            output = OutputReport(
                seq=seq,
                rank=self.rank,
                msg_type=msg_type,
                content=content,
                metadata=metadata,
                buffers=tuple(bytes(b) for b in buffers),
            )
            self.report(output)

        ctx = ExecuteContext(
            request=_stand_in_request(command),
            execution_count=command.execution_count,
            silent=command.silent,
            store_history=command.store_history,
            allow_stdin=command.allow_stdin,
            publish=publish,
            request_input=ask_rank0,
            run_blocking=None if self.executor is None else self.executor.run_blocking,
            native_output=self.native_output,
        )
        error: dict[str, Any] | None = None
        with trio.CancelScope() as scope, ctx.native_output():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, seq, scope, input_send)
                try:
                    if self.executor is None:
                        await self.kernel.do_execute(command.code, ctx)
                    else:
                        async with self.executor.cell():
                            await self.kernel.do_execute(command.code, ctx)
                except Exception as exc:
                    error = error_content(exc)
                nursery.cancel_scope.cancel()
        if scope.cancelled_caught:
            error = interrupt_error()
        self.report(DoneReport(seq=seq, rank=self.rank, error=error))

    async def _listen(
        self,
        seq: int,
        cell: trio.CancelScope,
        inputs: trio.MemorySendChannel[InputReplyCommand],
    ) -> None:
        """While a cell runs: act on interrupts, pass input replies, keep other commands."""
        while True:
            command = await receive_command(self.comm, self.nudge)
            if isinstance(command, InputReplyCommand):
                if command.seq == seq:
                    inputs.send_nowait(command)
                continue
            if isinstance(command, InterruptCommand | ShutdownCommand):
                cell.cancel()
                if self.executor is not None:
                    self.executor.interrupt()
                self.kernel.do_interrupt()
            if not isinstance(command, InterruptCommand):
                self._waiting.append(command)


def _stand_in_request(command: ExecuteCommand) -> Message:
    """A stand-in for the execute_request, which only rank 0 has."""
    return Message(Header(f"rank-execute-{command.seq}", "execute_request", ""), {})
