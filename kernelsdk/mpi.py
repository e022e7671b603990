"""Run any :class:`~kernelsdk.BaseKernel` across the ranks of an MPI job.

Theory of operation
-------------------
The launcher (``mpiexec -n N`` or ``srun``) starts ``python -m kernelsdk run KERNEL --mpi`` on
every rank. Every rank creates the same kernel class.

* **Rank 0** serves the Jupyter protocol as usual, with the kernel wrapped in
  :class:`RootKernel`. Completion, inspection, history and ``is_complete`` are answered by
  rank 0 alone. An execution is sent to every other rank, runs on all ranks at once, and
  ends when every rank has reported back: the reply is ``ok`` only if every rank succeeded,
  otherwise one ``error`` names the failing ranks with their tracebacks.
* **Other ranks** run :func:`serve_worker`: wait for a command from rank 0, run it, report.
  Their output travels to rank 0 while the cell runs and is published there, labelled by
  rank (see :class:`OutputMode`).

Everything between ranks is MPI point-to-point messages (mpi4py pickles them), each command
and report carrying the execution's sequence number so a late report of an interrupted cell
can never be mistaken for the next one's. No rank ever blocks in an MPI call: waiting is
``improbe`` polled from Trio with a backoff, so idle ranks use almost no CPU (a blocking
receive busy-polls a core in MPICH) and every rank stays interruptible.

Interrupts are messages too (the kernelspec says ``interrupt_mode: message``): rank 0 sends
an interrupt command, each rank cancels its running ``do_execute`` and calls the kernel's
``do_interrupt`` hook. No signal reaches the launcher, which MPICH and Open MPI handle
differently (Open MPI dies on the first SIGINT, MPICH aborts the job on the second).

mpi4py is imported only here, and only when a kernel is run with ``--mpi``.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from ._context import ExecuteContext, MimeBundle
from ._exceptions import ConfigError, ExecutionError, KernelSDKError
from ._kernel import BaseKernel, Completions, IsComplete
from ._message import Header, Message
from ._server import _error_content

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["OutputMode", "RootKernel", "run_mpi_kernel", "serve_worker", "world"]

log = logging.getLogger("kernelsdk.mpi")

_TAG_COMMAND: Final = 17  # rank 0 -> other ranks
_TAG_REPORT: Final = 18  # other ranks -> rank 0
#: How long an interrupted execution waits for the other ranks to stop before answering.
_INTERRUPT_GRACE: Final = 10.0
#: Polling: only yield for this long after the last message, then sleep at most this long.
_SPIN: Final = 0.01
_MAX_POLL_SLEEP: Final = 0.005
#: After shutdown, how long rank 0 waits for every other rank to say it is leaving before it
#: aborts the job (a rank stuck in a cell would otherwise keep the job, and MPI_Finalize on
#: rank 0, waiting forever).
_SHUTDOWN_GRACE: Final = 5.0

_world: MPI.Intracomm | None = None  # set by run_mpi_kernel


def world() -> MPI.Intracomm | None:
    """The job's ``MPI.COMM_WORLD`` when this process runs a kernel with ``--mpi``, else None.

    Set on every rank before the kernel is created, so a kernel's ``__init__`` can learn its
    rank and the number of ranks. A kernel that makes MPI calls of its own should make them on
    a duplicate created in ``__init__`` (``world().Dup()``: every rank creates its kernel once,
    at startup), so they can never match the messages kernelsdk sends on ``COMM_WORLD``.
    """
    return _world


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


def _comm_world() -> MPI.Intracomm:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ConfigError(
            f"running a kernel with --mpi needs mpi4py and an MPI library ({exc}); "
            "pip install mpi4py mpich"
        ) from None
    return MPI.COMM_WORLD


async def _poll(comm: MPI.Intracomm, source: int, tag: int) -> Any:
    """Receive one message without blocking the thread: improbe, yielding in between.

    Messages come in bursts (a cell's command, then its reports), so for a short while after
    the last one it only yields to other tasks; then it sleeps, longer the longer it has
    been idle. Trio cannot sleep less than about a millisecond, which would otherwise be
    added to every hop between ranks.
    """
    started = time.monotonic()
    while True:
        message = comm.improbe(source=source, tag=tag)
        if message is not None:
            return message.recv()
        idle = time.monotonic() - started
        if idle < _SPIN:
            # Let other processes run first: ranks often outnumber cores.
            os.sched_yield()
            await trio.lowlevel.checkpoint()
        else:
            await trio.sleep(min(_MAX_POLL_SLEEP, idle / 20))


_INTERRUPTED: Final = {
    "ename": "KeyboardInterrupt",
    "evalue": "interrupted by the user",
    "traceback": ["KeyboardInterrupt: interrupted by the user"],
}


class _Labeller:
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


class _Execution:
    """Rank 0's view of one execution across the ranks: output relay and reports."""

    def __init__(self, ctx: ExecuteContext, size: int, mode: OutputMode) -> None:
        self.ctx = ctx
        self.mode = mode
        self.labelled = size > 1 and mode is not OutputMode.RANK0
        self.labeller = _Labeller()
        self.errors: dict[int, dict[str, Any]] = {}
        self.pending = set(range(1, size))
        self.held: list[tuple[int, str, dict[str, Any], dict[str, Any] | None, list[bytes]]] = []
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
                    box.append(await self.ctx._request_input(prompt, password))
            except BaseException as exc:
                box.append(exc)
                raise
            finally:
                done.set()
        answer = box[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def publish(
        self,
        rank: int,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None,
        buffers: Sequence[bytes],
    ) -> None:
        if rank != 0:
            if self.mode is OutputMode.RANK0:
                return
            if self.mode is OutputMode.GROUPED:
                self.held.append((rank, msg_type, content, metadata, list(buffers)))
                return
        self._relay(rank, msg_type, content, metadata, buffers)

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
        self.ctx._publish(msg_type, content, metadata, buffers)

    def release_held(self) -> None:
        for rank, msg_type, content, metadata, buffers in sorted(self.held, key=lambda h: h[0]):
            self._relay(rank, msg_type, content, metadata, buffers)
        self.held.clear()

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
        self._comm = comm
        self._size: int = comm.Get_size()
        self._output = output
        self._seq = 0
        self._sends: list[Any] = []
        self._shutdown_sent = False
        self._departed: set[int] = set()  # ranks that said "bye" after a shutdown command

    @property
    def size(self) -> int:
        """The number of ranks."""
        return self._size

    def _send_all(self, command: dict[str, Any]) -> None:
        # isend: a large cell must not block rank 0's event loop until every rank reads it.
        self._sends = [r for r in self._sends if not r.Test()]
        for rank in range(1, self._size):
            self._sends.append(self._comm.isend(command, dest=rank, tag=_TAG_COMMAND))

    def kernel_info(self) -> dict[str, Any]:
        info = self.inner.kernel_info()
        banner = info.get("banner") or ""
        info["banner"] = f"{banner}\n(MPI: {self._size} ranks)".lstrip("\n")
        return info

    async def do_execute(self, code: str, ctx: ExecuteContext) -> MimeBundle | str | None:
        self._seq += 1
        seq = self._seq
        self._send_all(
            {
                "op": "execute",
                "seq": seq,
                "code": code,
                "execution_count": ctx.execution_count,
                "silent": ctx.silent,
                "store_history": ctx.store_history,
                "allow_stdin": ctx.allow_stdin,
            }
        )
        run = _Execution(ctx, self._size, self._output)
        local = ExecuteContext(
            request=ctx.request,
            execution_count=ctx.execution_count,
            silent=ctx.silent,
            store_history=ctx.store_history,
            allow_stdin=ctx.allow_stdin,
            publish=lambda t, c, m, b: run.publish(0, t, c, m, b),
            request_input=lambda prompt, password: run.input(0, prompt, password),
        )
        result: MimeBundle | str | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._collect, seq, run, nursery)
                try:
                    result = await self.inner.do_execute(code, local)
                except Exception as exc:
                    run.errors[0] = _error_content(exc)
        except trio.Cancelled:
            # Interrupted: do_interrupt has told the other ranks; wait (shielded, bounded)
            # until they have stopped, so the next cell starts on every rank together.
            with trio.CancelScope(shield=True), trio.move_on_after(_INTERRUPT_GRACE):
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

    async def _collect(self, seq: int, run: _Execution, nursery: trio.Nursery | None) -> None:
        """Relay the other ranks' output and input requests until each has reported the end
        of execution seq (after an interrupt, without a nursery: input is refused then)."""
        while run.pending:
            report = await _poll(self._comm, _any_source(), _TAG_REPORT)
            kind, report_seq, rank = report[0], report[1], report[2]
            if kind == "bye":  # a shutdown during this cell: kept for end_job
                self._departed.add(rank)
                continue
            if report_seq != seq:
                continue  # a straggler from an execution that was already given up on
            if kind == "output":
                run.publish(rank, *report[3:])
            elif kind == "input":
                if nursery is None:
                    self._answer_input(rank, seq, KeyboardInterrupt())
                else:
                    nursery.start_soon(self._relay_input, run, seq, rank, *report[3:])
            elif kind == "done":
                run.pending.discard(rank)
                if report[3] is not None:
                    run.errors[rank] = report[3]

    async def _relay_input(
        self, run: _Execution, seq: int, rank: int, prompt: str, password: bool
    ) -> None:
        try:
            answer: str | BaseException = await run.input(rank, prompt, password)
        except Exception as exc:
            answer = exc
        self._answer_input(rank, seq, answer)

    def _answer_input(self, rank: int, seq: int, answer: str | BaseException) -> None:
        value = answer if isinstance(answer, str) else None
        error = None if isinstance(answer, str) else f"{type(answer).__name__}: {answer}"
        command = {"op": "input_reply", "seq": seq, "value": value, "error": error}
        self._sends.append(self._comm.isend(command, dest=rank, tag=_TAG_COMMAND))

    def do_interrupt(self) -> None:
        self._send_all({"op": "interrupt", "seq": self._seq})
        self.inner.do_interrupt()

    async def do_shutdown(self, restart: bool) -> None:
        self._tell_workers_to_stop(restart)
        await self.inner.do_shutdown(restart)

    def _tell_workers_to_stop(self, restart: bool) -> None:
        if not self._shutdown_sent:
            self._shutdown_sent = True
            self._send_all({"op": "shutdown", "seq": self._seq, "restart": restart})

    def end_job(self, grace: float = _SHUTDOWN_GRACE) -> list[int]:
        """After serving: see every other rank leave (telling them to, if no shutdown has),
        so that MPI_Finalize cannot hang. Returns the ranks that did not say so within
        ``grace`` seconds: they are stuck, and only aborting the job ends them."""
        self._tell_workers_to_stop(False)
        deadline = time.monotonic() + grace
        source = _any_source()
        while len(self._departed) < self._size - 1 or not all(r.Test() for r in self._sends):
            message = self._comm.improbe(source=source, tag=_TAG_REPORT)
            if message is not None:
                report = message.recv()
                if report[0] == "bye":
                    self._departed.add(report[2])
            elif time.monotonic() > deadline:
                return sorted(set(range(1, self._size)) - self._departed)
            else:
                time.sleep(_MAX_POLL_SLEEP)
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


def _any_source() -> int:
    from mpi4py import MPI

    return int(MPI.ANY_SOURCE)


async def serve_worker(kernel: BaseKernel, comm: MPI.Intracomm) -> None:
    """Serve rank 0's commands on a rank other than 0 until it says shut down."""
    await _Worker(kernel, comm).serve()


class _Worker:
    """A rank other than 0: runs each cell rank 0 sends, reporting output and the end."""

    def __init__(self, kernel: BaseKernel, comm: MPI.Intracomm) -> None:
        self.kernel = kernel
        self.comm = comm
        self.rank: int = comm.Get_rank()
        self._sends: list[Any] = []
        self._waiting: list[dict[str, Any]] = []  # commands that arrived while a cell ran

    def report(self, *item: Any) -> None:
        self._sends = [r for r in self._sends if not r.Test()]
        self._sends.append(self.comm.isend(item, dest=0, tag=_TAG_REPORT))

    async def serve(self) -> None:
        while True:
            if self._waiting:
                command = self._waiting.pop(0)
            else:
                command = await _poll(self.comm, 0, _TAG_COMMAND)
            if command["op"] == "shutdown":
                await self.kernel.do_shutdown(bool(command.get("restart", False)))
                self.report("bye", command["seq"], self.rank)
                break
            if command["op"] == "execute":
                await self._execute(command)
            # Anything else is an interrupt or input reply that came after its cell ended.
        # Let the last reports leave before MPI is finalized at exit.
        while not all(r.Test() for r in self._sends):
            await trio.sleep(0.001)

    async def _execute(self, command: dict[str, Any]) -> None:
        seq = command["seq"]
        input_send, input_recv = trio.open_memory_channel[dict[str, Any]](math.inf)

        async def ask_rank0(prompt: str, password: bool) -> str:
            # Only rank 0 talks to the frontend: it prompts once for all ranks.
            self.report("input", seq, self.rank, prompt, password)
            reply = await input_recv.receive()
            if reply["error"] is not None:
                if reply["error"].startswith("EOFError"):
                    raise EOFError("end of input")
                raise ExecutionError("InputError", reply["error"], [])
            return str(reply["value"])

        ctx = ExecuteContext(
            request=_worker_request(command),
            execution_count=command["execution_count"],
            silent=command["silent"],
            store_history=command["store_history"],
            allow_stdin=command.get("allow_stdin", False),
            publish=functools.partial(_report_output, self.report, seq, self.rank),
            request_input=ask_rank0,
        )
        error: dict[str, Any] | None = None
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, seq, scope, input_send)
                try:
                    await self.kernel.do_execute(command["code"], ctx)
                except Exception as exc:
                    error = _error_content(exc)
                nursery.cancel_scope.cancel()
        if scope.cancelled_caught:
            error = dict(_INTERRUPTED)
        self.report("done", seq, self.rank, error)

    async def _listen(
        self, seq: int, cell: trio.CancelScope, inputs: trio.MemorySendChannel[dict[str, Any]]
    ) -> None:
        """While a cell runs: act on interrupts, pass input replies, keep other commands."""
        while True:
            command = await _poll(self.comm, 0, _TAG_COMMAND)
            op = command["op"]
            if op == "input_reply":
                if command["seq"] == seq:
                    inputs.send_nowait(command)
                continue
            if op in ("interrupt", "shutdown"):
                cell.cancel()
                self.kernel.do_interrupt()
            if op != "interrupt":
                self._waiting.append(command)


def _report_output(
    report: Callable[..., None],
    seq: int,
    rank: int,
    msg_type: str,
    content: dict[str, Any],
    metadata: dict[str, Any] | None,
    buffers: Sequence[bytes],
) -> None:
    report("output", seq, rank, msg_type, content, metadata, [bytes(b) for b in buffers])


def _worker_request(command: dict[str, Any]) -> Message:
    """A stand-in for the execute_request, which only rank 0 has."""
    return Message(Header(f"rank-execute-{command['seq']}", "execute_request", ""), {})


def run_mpi_kernel(
    kernel_factory: Callable[[], BaseKernel],
    connection_file: str,
    *,
    packer: str = "json",
    log_level: str = "WARNING",
    output: OutputMode = OutputMode.ALL,
    watch_parent: bool = False,
) -> None:
    """Run on every rank: rank 0 serves the kernel, the others serve rank 0.

    With ``watch_parent``, rank 0 watches the frontend (see :func:`kernelsdk.run_kernel`);
    when it dies, rank 0 shuts down and tells every rank to, as on a shutdown request.
    """
    global _world
    comm = _world = _comm_world()
    if comm.Get_rank() == 0:
        from ._runtime import run_kernel

        roots: list[RootKernel] = []

        def root() -> BaseKernel:
            roots.append(RootKernel(kernel_factory(), comm, output))
            return roots[0]

        try:
            run_kernel(
                root, connection_file, packer=packer, log_level=log_level, watch_parent=watch_parent
            )
        except KernelSDKError as exc:
            # Rank 0 cannot serve (a port taken, a bad connection file). The other ranks would
            # wait for its commands forever, and MPI_Finalize at exit waits for them: the job
            # would hang instead of dying, and the client would never learn why. End it.
            print(f"kernelsdk: error: {exc}", file=sys.stderr, flush=True)
            comm.Abort(2)
        stuck = roots[0].end_job() if roots else []
        if stuck:
            print(
                f"kernelsdk: error: ranks {stuck} did not stop within {_SHUTDOWN_GRACE} s "
                "of shutdown: aborting the job",
                file=sys.stderr,
                flush=True,
            )
            comm.Abort(1)
        return
    # MPICH's launcher forwards a SIGINT to every rank: that must not kill one of them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.WARNING),
        stream=sys.stderr,
        format=f"[kernelsdk rank {comm.Get_rank()} %(levelname)s] %(message)s",
    )
    trio.run(serve_worker, kernel_factory(), comm)
