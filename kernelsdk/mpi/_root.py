"""Rank 0: the author's kernel wrapped so that each execution runs on every rank.

:class:`RootKernel` serves the Jupyter protocol as any kernel does. Completion, inspection,
history and ``is_complete`` are answered by rank 0 alone. An execution is sent to every other
rank, runs on all ranks at once, and ends when every rank has reported back: the reply is
``ok`` only if every rank succeeded, otherwise one ``error`` names the failing ranks with
their tracebacks. While it runs, :class:`ExecutionRelay` publishes the other ranks' output
(labelled by :class:`RankLabeller`, as :class:`OutputMode` says) and answers their ``input()``
through rank 0's stdin.

Interrupts are commands too (the kernelspec says ``interrupt_mode: message``): rank 0 sends
one to every rank, each cancels its running ``do_execute`` and calls the kernel's
``do_interrupt`` hook. No signal reaches the launcher, which MPICH and Open MPI handle
differently (Open MPI dies on the first SIGINT, MPICH aborts the job on the second).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from .._context import ExecuteContext, MimeBundle
from .._exceptions import ExecutionError
from .._kernel import BaseKernel, Completions, IsComplete
from .._protocol import error_content
from ._wire import (
    MAX_POLL_SLEEP,
    ByeReport,
    Command,
    DoneReport,
    ExecuteCommand,
    InputReplyCommand,
    InputRequestReport,
    InterruptCommand,
    OutputReport,
    ShutdownCommand,
    receive_report,
    receive_report_nowait,
    send,
)

if TYPE_CHECKING:
    from mpi4py import MPI

log = logging.getLogger("kernelsdk.mpi")

#: How long an interrupted execution waits for the other ranks to stop before answering.
INTERRUPT_GRACE: Final = 10.0
#: After shutdown, how long rank 0 waits for every other rank to say it is leaving before it
#: aborts the job (a rank stuck in a cell would otherwise keep the job, and MPI_Finalize on
#: rank 0, waiting forever).
SHUTDOWN_GRACE: Final = 5.0


class OutputMode(enum.StrEnum):
    """What the client sees of the ranks' output.

    ``all``: every rank's output as it comes, stream lines prefixed ``[rank N]`` (the
    default). ``rank0``: only rank 0's output, unlabelled (the others' is dropped).
    ``grouped``: rank 0's output as it comes, the others' collected and published after the
    cell, rank by rank.
    """

    ALL = "all"
    RANK0 = "rank0"
    GROUPED = "grouped"


class RankLabeller:
    """Prefixes each line of each rank's stream output with ``[rank N]``."""

    def __init__(self) -> None:
        self._at_line_start: dict[tuple[int, str], bool] = {}

    def label(self, rank: int, name: str, text: str) -> str:
        key = (rank, name)
        out = []
        for line in text.splitlines(keepends=True):
            if self._at_line_start.get(key, True):
                out.append(f"[rank {rank}] ")
            out.append(line)
            self._at_line_start[key] = line.endswith("\n")
        return "".join(out)


class ExecutionRelay:
    """Rank 0's view of one execution across the ranks: output relay, input, errors."""

    def __init__(self, ctx: ExecuteContext, size: int, mode: OutputMode) -> None:
        self.ctx = ctx
        self.mode = mode
        self.labelled = size > 1 and mode is not OutputMode.RANK0
        self.labeller = RankLabeller()
        self.errors: dict[int, dict[str, Any]] = {}
        self.pending = set(range(1, size))
        self.held: list[OutputReport] = []  # the other ranks' output, in grouped mode
        # The k-th input() of every rank gets the answer to one prompt: the first rank to ask
        # for its k-th value prompts the user, the others wait for that answer.
        self._inputs_asked: dict[int, int] = {}
        self._answers: dict[int, tuple[trio.Event, list[str | BaseException]]] = {}
        self._prompting = trio.Lock()  # one input_request at a time, in the order asked

    async def input(self, rank: int, prompt: str, password: bool) -> str:
        k = self._inputs_asked.get(rank, 0)
        self._inputs_asked[rank] = k + 1
        if k in self._answers:
            done, box = self._answers[k]
            await done.wait()
        else:
            done, box = self._answers[k] = (trio.Event(), [])
            try:
                async with self._prompting:
                    box.append(await self.ctx.input(prompt, password=password))
            except BaseException as exc:
                box.append(exc)
                raise
            finally:
                done.set()
        answer = box[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def publish_local(
        self,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None,
        buffers: Sequence[bytes],
    ) -> None:
        """Rank 0's own output: published as it comes, in every mode."""
        self._relay(0, msg_type, content, metadata, buffers)

    def publish_report(self, output: OutputReport) -> None:
        """Another rank's output: published, held or dropped, as the mode says."""
        if self.mode is OutputMode.RANK0:
            return
        if self.mode is OutputMode.GROUPED:
            self.held.append(output)
            return
        self._relay_report(output)

    def release_held(self) -> None:
        for output in sorted(self.held, key=lambda held: held.rank):
            self._relay_report(output)
        self.held.clear()

    def _relay_report(self, output: OutputReport) -> None:
        self._relay(output.rank, output.msg_type, output.content, output.metadata, output.buffers)

    def _relay(
        self,
        rank: int,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None,
        buffers: Sequence[bytes],
    ) -> None:
        if self.labelled:
            if msg_type == "stream":
                text = self.labeller.label(rank, content["name"], content["text"])
                content = {**content, "text": text}
            else:
                metadata = {**(metadata or {}), "kernelsdk": {"rank": rank}}
            if rank != 0 and msg_type == "execute_result":
                # Only rank 0's result is the cell's Out[n]; the others' become displays.
                msg_type = "display_data"
                content = {k: v for k, v in content.items() if k != "execution_count"}
        self.ctx.publish(msg_type, content, metadata, buffers)

    def error(self) -> ExecutionError | None:
        """One error naming every failing rank, or None if all succeeded."""
        if not self.errors:
            return None
        ranks = sorted(self.errors)
        first = self.errors[ranks[0]]
        if ranks == [0] and not self.labelled:
            return ExecutionError(first["ename"], first["evalue"], first["traceback"])
        where = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"
        traceback: list[str] = []
        for rank in ranks:
            err = self.errors[rank]
            traceback.append(f"--- rank {rank}: {err['ename']}: {err['evalue']}")
            traceback.extend(err["traceback"])
        return ExecutionError(first["ename"], f"{first['evalue']} (on {where})", traceback)


class RootKernel(BaseKernel):
    """Rank 0's kernel: the author's kernel, with each execution run on every rank.

    Args:
        inner: the author's kernel instance on rank 0.
        comm: the communicator of the job (``MPI.COMM_WORLD``).
        output: how the other ranks' output reaches the client.
    """

    interrupt_mode = "message"

    def __init__(
        self, inner: BaseKernel, comm: MPI.Intracomm, output: OutputMode = OutputMode.ALL
    ) -> None:
        super().__init__()
        self.inner = inner
        # The author's comm targets and history are the kernel's own.
        self.comms = inner.comms
        self.history = inner.history
        # The debugger is rank 0's: breakpoints stop rank 0's cell, the others run on until
        # they wait for it (a collective, or the end of the cell).
        self.debugger = inner.debugger
        self._comm = comm
        self._size: int = comm.Get_size()
        self._output = output
        self._seq = 0
        self._sends: list[MPI.Request] = []
        self._shutdown_sent = False
        self._departed: set[int] = set()  # ranks that said bye after a shutdown command

    @property
    def size(self) -> int:
        """The number of ranks."""
        return self._size

    def _send(self, command: Command, rank: int) -> None:
        self._sends.append(send(self._comm, command, rank))

    def _send_all(self, command: Command) -> None:
        self._sends = [r for r in self._sends if not r.Test()]
        for rank in range(1, self._size):
            self._send(command, rank)

    def kernel_info(self) -> dict[str, Any]:
        info = self.inner.kernel_info()
        banner = info.get("banner") or ""
        info["banner"] = f"{banner}\n(MPI: {self._size} ranks)".lstrip("\n")
        # Every rank runs the cells in one order: no subshells, whatever the inner kernel
        # claims (this kernel's concurrent_subshells is the base class's False).
        features = info.get("supported_features") or []
        info["supported_features"] = [f for f in features if f != "kernel subshells"]
        return info

    async def do_execute(self, code: str, ctx: ExecuteContext) -> MimeBundle | str | None:
        self._seq += 1
        seq = self._seq
        self._send_all(
            ExecuteCommand(
                seq=seq,
                code=code,
                execution_count=ctx.execution_count,
                silent=ctx.silent,
                store_history=ctx.store_history,
                allow_stdin=ctx.allow_stdin,
            )
        )
        run = ExecutionRelay(ctx, self._size, self._output)
        local = ExecuteContext(
            request=ctx.request,
            execution_count=ctx.execution_count,
            silent=ctx.silent,
            store_history=ctx.store_history,
            allow_stdin=ctx.allow_stdin,
            publish=run.publish_local,
            request_input=lambda prompt, password: run.input(0, prompt, password),
            # Where rank 0's cell runs blocking work: the host's thread, if it embeds the kernel.
            run_blocking=ctx.run_blocking,
            native_output=ctx.captured_output,
        )
        result: MimeBundle | str | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._collect, seq, run, nursery)
                try:
                    # Rank 0's native output, labelled like the rest of its output.
                    with ctx.native_output(into=local):
                        result = await self.inner.do_execute(code, local)
                except Exception as exc:
                    run.errors[0] = error_content(exc)
        except trio.Cancelled:
            # Interrupted: do_interrupt has told the other ranks; wait (shielded, bounded)
            # until they have stopped, so the next cell starts on every rank together.
            with trio.CancelScope(shield=True), trio.move_on_after(INTERRUPT_GRACE):
                await self._collect(seq, run, None)
            if run.pending:
                log.error("ranks %s did not stop after an interrupt", sorted(run.pending))
            raise
        finally:
            run.release_held()
        error = run.error()
        if error is not None:
            raise error
        return result

    async def _collect(self, seq: int, run: ExecutionRelay, nursery: trio.Nursery | None) -> None:
        """Relay the other ranks' output and input requests until each has reported the end
        of execution seq (after an interrupt, without a nursery: input is refused then)."""
        while run.pending:
            report = await receive_report(self._comm)
            if isinstance(report, ByeReport):  # a shutdown during this cell: kept for end_job
                self._departed.add(report.rank)
                continue
            if report.seq != seq:
                continue  # a straggler from an execution that was already given up on
            if isinstance(report, OutputReport):
                run.publish_report(report)
            elif isinstance(report, InputRequestReport):
                if nursery is None:
                    self._answer_input(report.rank, seq, KeyboardInterrupt())
                else:
                    nursery.start_soon(self._relay_input, run, report)
            elif isinstance(report, DoneReport):
                run.pending.discard(report.rank)
                if report.error is not None:
                    run.errors[report.rank] = report.error

    async def _relay_input(self, run: ExecutionRelay, request: InputRequestReport) -> None:
        try:
            answer: str | BaseException = await run.input(
                request.rank, request.prompt, request.password
            )
        except Exception as exc:
            answer = exc
        self._answer_input(request.rank, request.seq, answer)

    def _answer_input(self, rank: int, seq: int, answer: str | BaseException) -> None:
        if isinstance(answer, str):
            reply = InputReplyCommand(seq=seq, value=answer, error=None)
        else:
            reply = InputReplyCommand(
                seq=seq, value=None, error=f"{type(answer).__name__}: {answer}"
            )
        self._send(reply, rank)

    def do_interrupt(self) -> None:
        self._send_all(InterruptCommand(seq=self._seq))
        self.inner.do_interrupt()

    async def do_shutdown(self, restart: bool) -> None:
        self._tell_workers_to_stop(restart)
        await self.inner.do_shutdown(restart)

    def _tell_workers_to_stop(self, restart: bool) -> None:
        if not self._shutdown_sent:
            self._shutdown_sent = True
            self._send_all(ShutdownCommand(seq=self._seq, restart=restart))

    def end_job(self, grace: float = SHUTDOWN_GRACE) -> list[int]:
        """After serving: see every other rank leave (telling them to, if no shutdown has),
        so that MPI_Finalize cannot hang. Returns the ranks that did not say so within
        ``grace`` seconds: they are stuck, and only aborting the job ends them."""
        self._tell_workers_to_stop(False)
        deadline = time.monotonic() + grace
        while len(self._departed) < self._size - 1 or not all(r.Test() for r in self._sends):
            report = receive_report_nowait(self._comm)
            if report is not None:
                if isinstance(report, ByeReport):
                    self._departed.add(report.rank)
            elif time.monotonic() > deadline:
                return sorted(set(range(1, self._size)) - self._departed)
            else:
                time.sleep(MAX_POLL_SLEEP)
        return []

    async def do_complete(self, code: str, cursor_pos: int) -> Completions:
        return await self.inner.do_complete(code, cursor_pos)

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int) -> MimeBundle | None:
        return await self.inner.do_inspect(code, cursor_pos, detail_level)

    async def do_is_complete(self, code: str) -> IsComplete:
        return await self.inner.do_is_complete(code)

    async def do_user_expression(self, expression: str) -> MimeBundle:
        return await self.inner.do_user_expression(expression)

    async def do_history(self, *args: Any, **kwargs: Any) -> list[list[Any]]:
        return await self.inner.do_history(*args, **kwargs)
