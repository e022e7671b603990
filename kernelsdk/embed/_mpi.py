"""A kernel embedded in an MPI program (a simulation) on every rank, with collective safe points.

The host program runs on N ranks and calls :meth:`MpiEmbeddedKernel.poll` once per time step
on every rank, at the same point of the step. Cells are whatever the kernel runs (Python, for
:class:`~kernelsdk.embed.PythonKernel`); they run on the host's thread, inside ``poll``, on
every rank at the *same* step, so a cell may use MPI collectives with the simulation paused at
one consistent point.

How the ranks agree
-------------------
Rank 0 serves the Jupyter protocol with :class:`kernelsdk.mpi.RootKernel` (other ranks run
:func:`kernelsdk.mpi.serve_worker`), each rank in a thread of its own running Trio. Every
rank's cells go through a :class:`CollectiveSafePoints` executor: a cell's blocking work waits,
busy, until its rank's host thread claims the cell in ``poll``, and runs there at once.

* Rank 0 sends each cell to the other ranks as it arrives, so every rank numbers the cells
  alike. Rank 0's ``poll`` claims the oldest cell waiting there, if any, and broadcasts its
  number (one ``int64`` ``Bcast`` on a communicator of its own: the whole cost of a poll with
  nothing to do).
* Every other rank's ``poll`` receives that number and, if it grew, claims that cell (waiting
  for it if its kernel thread has not received it yet). A cell rank 0 dropped before any poll
  (an interrupt) is dropped on the other ranks too, once a later one is claimed.
* A C host (the C API's ``ksdk_poll``) makes the broadcast itself, from C, with the host's
  ``MPI_Bcast`` (:meth:`MpiEmbeddedKernel.broadcast_handles`), and calls into Python only
  when a cell is to run: rank 0 when one waits (``on_pending_changed``), another rank when the
  number it received has grown (:meth:`MpiEmbeddedKernel.poll_received`). Python and C make the
  same broadcast on the same communicator, so either may make it on any rank at any step.
* On each rank the host thread then runs the cell's blocking work (what
  :meth:`~kernelsdk.ExecuteContext.run_blocking` is given) until the cell ends; rank 0's cell
  ends when every rank has reported back, so rank 0 leaves ``poll`` after all the others.

``poll`` returns the number of cells run, the same number on every rank, so a host may follow a
poll that ran cells with a collective of its own (``heat.c`` broadcasts a new end step).

The kernel's own messages between ranks travel on a duplicate of the host's communicator, the
poll's broadcast on another, and the cells get a third as ``comm``: none of them can match the
simulation's messages, and each is used by one thread at a time. MPI must have been initialized
by the host with ``MPI_THREAD_MULTIPLE``; mpi4py neither initializes nor finalizes it.

Interrupts: an interrupt request reaches every rank (rank 0 relays it); each raises
``KeyboardInterrupt`` in its host thread while the cell's work runs there, the cell ends with
the usual interrupt error, and ``poll`` returns: the simulation goes on. A rank waiting inside
a blocking MPI call (a collective another rank left) cannot be interrupted; see the docs.

A client's shutdown request detaches it (the simulation keeps running, another client may
attach); :meth:`MpiEmbeddedKernel.stop`, called by the host on every rank, ends the kernel:
rank 0 removes the connection file, tells every rank to stop and waits for them.
"""

from __future__ import annotations

import array
import collections
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import outcome
import trio

from .._connection import ConnectionInfo
from .._exceptions import ConfigError, ExecutionError, KernelSDKError
from .._kernel import BaseKernel
from .._protocol import interrupt_error
from ..mpi._root import OutputMode, RootKernel
from ..mpi._wire import Nudge
from ..mpi._worker import serve_worker
from ._files import remove_connection_file, validate_name, write_connection_file
from ._interruptible import InterruptibleCalls

if TYPE_CHECKING:
    from mpi4py import MPI

log = logging.getLogger("kernelsdk.embed")

T = TypeVar("T")

#: How long ``start``/``stop`` wait for the kernel thread before giving up with an error.
THREAD_TIMEOUT: Final = 30.0
#: How long a waiting host thread sleeps between checks that the kernel thread is alive.
_WAKE: Final = 0.5
#: The longest a worker rank's kernel thread sleeps between two looks for a command from
#: rank 0 while a cell runs: an interrupt of a running cell may wait this long at most.
CELL_WORKER_SLEEP: Final = 0.1
#: The same between cells, where nothing waits for it: a cell and the end of the kernel are
#: announced by the poll (the host thread wakes the kernel thread), and the only other
#: commands (an interrupt or an input reply that came after its cell ended) are dropped.
IDLE_WORKER_SLEEP: Final = 5.0


class HostStopped(KernelSDKError):
    """The host stopped the kernel before this cell could run."""


# -- the host thread's work ------------------------------------------------------------------


@attrs.define(eq=False)
class _Job:
    """One call of ``run_blocking``: made on the kernel thread, run on the host thread."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: trio.Event
    result: outcome.Outcome[Any] | None = None
    thread: int | None = None  # the host thread, while it runs the job


@attrs.define(eq=False)
class _Cell:
    """One cell of this rank, from the moment its ``do_execute`` starts until it ends."""

    number: int  # 1, 2, ... in the order cells reach this rank's executor (as on rank 0)
    jobs: collections.deque[_Job] = attrs.field(factory=collections.deque)  # not yet taken
    is_claimed: bool = False
    dropped: bool = False  # another rank: rank 0 never claimed it (it was interrupted there)
    ended: bool = False


class CollectiveSafePoints:
    """Where the cells of one rank run: on the host's thread, inside a collective ``poll``.

    Implements :class:`kernelsdk.Executor` on the kernel's Trio thread (``cell``,
    ``run_blocking``, ``interrupt``); the host thread calls :meth:`poll` and :meth:`close`.

    A cell's ``do_execute`` starts as soon as the cell arrives, on every rank (rank 0 sends it
    on at once), and its blocking work waits for the host, as with
    :class:`~kernelsdk.embed._safepoints.SafePoints` and for the same reason: the poll that
    claims it finds the work queued on every rank, and runs it there at once, with no thread
    to wake first. (Waiting on another thread at that point could even deadlock: rank 0's
    work may enter a collective that holds the GIL, as mpi4py's do, while the other ranks'
    cells still needed rank 0's kernel thread to send them.)

    Args:
        comm: the communicator of the poll's broadcast (used by the host thread only).
        expect: other ranks: called on the kernel thread when the poll learns that rank 0 has
            sent a cell (or is about to stop the kernel), so it looks for the command at once.

    Attributes:
        on_pending_changed: rank 0: called with ``True`` (from the kernel thread) when a cell
            starts waiting for the host, as :attr:`SafePoints.on_pending_changed
            <kernelsdk.embed._safepoints.SafePoints.on_pending_changed>` is: a C host's poll
            broadcasts from C while nothing waits, and sets its flag from this.
    """

    def __init__(self, comm: MPI.Intracomm, expect: Callable[[], None] | None = None) -> None:
        self._comm = comm
        self._root = comm.Get_rank() == 0
        self._expect = expect
        self._lock = threading.Condition()
        # Cells not yet claimed, oldest first. On the other ranks a cell stays here after it
        # ended (an interrupt relayed before this rank's poll came to it): the poll that
        # rank 0's broadcast announced claims it all the same, and returns.
        self._waiting: collections.deque[_Cell] = collections.deque()
        # The cell of the task that calls run_blocking (and of the tasks it starts).
        self._cell: contextvars.ContextVar[_Cell | None] = contextvars.ContextVar(
            f"kernelsdk-collective-safe-points-{id(self):x}", default=None
        )
        #: The jobs' calls on the host thread, which an interrupt stops there.
        self.calls = InterruptibleCalls()
        self._registered = 0  # cells that have reached this executor
        self._claimed = 0  # the number of the last cell this rank's host claimed
        self._count = array.array("q", [0])  # the poll's broadcast: rank 0's _claimed
        self._closed = False
        self._token: trio.lowlevel.TrioToken | None = None
        self.on_pending_changed: Callable[[bool], None] | None = None

    @property
    def claimed(self) -> int:
        """The number of the last cell this rank's host has claimed (rank 0: what its poll
        broadcasts). It only grows, with gaps where rank 0 dropped a cell before any poll."""
        return self._claimed

    @property
    def has_pending(self) -> bool:
        """A cell waits for this rank's next poll."""
        return any(not cell.ended for cell in self._waiting)

    def bind(self, token: trio.lowlevel.TrioToken) -> None:
        """Called on the kernel thread once Trio runs there."""
        self._token = token

    # -- the kernel thread's side (kernelsdk.Executor) ---------------------------------------

    @contextlib.asynccontextmanager
    async def cell(self) -> AsyncIterator[None]:
        with self._lock:
            if self._closed:
                raise HostStopped("the host program has stopped this kernel")
            self._registered += 1
            cell = _Cell(self._registered)
            self._waiting.append(cell)
            self._lock.notify_all()
        hook = self.on_pending_changed
        if hook is not None:
            try:
                hook(True)
            except Exception:
                log.exception("on_pending_changed failed")
        token = self._cell.set(cell)
        try:
            yield
        finally:
            self._cell.reset(token)
            with self._lock:
                cell.ended = True
                if self._root and not cell.is_claimed:
                    # Interrupted before any poll claimed it: no poll will look for it (the
                    # other ranks drop their copy when a later cell is claimed).
                    self._waiting.remove(cell)
                self._lock.notify_all()

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        cell = self._cell.get()
        if cell is None:
            # Blocking work outside a cell (a comm handler): there is no safe point to wait
            # for, so a worker thread does it, as in a kernel of its own.
            return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
        job = _Job(fn, args, trio.Event())
        with self._lock:
            if self._closed:
                raise HostStopped("the host program stopped this kernel before the cell ran")
            if cell.dropped:
                raise ExecutionError(**interrupt_error())
            cell.jobs.append(job)
            self._lock.notify_all()
        try:
            await job.done.wait()
        except trio.Cancelled:
            with self._lock:
                if job.thread is None and job.result is None:
                    cell.jobs.remove(job)  # not started: it never will
                    raise
            self.calls.interrupt()
            with trio.CancelScope(shield=True):
                await job.done.wait()
            raise
        assert job.result is not None
        if isinstance(job.result, outcome.Error) and isinstance(
            job.result.error, KeyboardInterrupt
        ):
            raise ExecutionError(**interrupt_error())
        result: T = job.result.unwrap()
        return result

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the host thread while it runs a job of ours."""
        self.calls.interrupt()

    # -- the host thread's side --------------------------------------------------------------

    def poll(self, timeout: float = 0.0, received: int | None = None) -> int:
        """Collective: run the cells rank 0 has claimed since the last poll, on every rank.
        Returns how many ran (the same on every rank).

        ``received``: another rank only, whose host has made this poll's broadcast itself
        (a C host's fast path): rank 0's count, which it received."""
        if self._root:
            cell = self._claim_on_root(timeout)
        if received is None:
            self._comm.Bcast([self._count, 1, _int64()], root=0)
        elif self._root:
            raise KernelSDKError("rank 0 makes the poll's broadcast itself")
        else:
            self._count[0] = received
        if not self._root:
            cell = self._claim_on_worker(self._count[0])
        if cell is None:
            return 0
        self._serve(cell)
        return 1

    def _claim_on_root(self, timeout: float) -> _Cell | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._waiting and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            if not self._waiting or self._closed:
                return None
            cell = self._waiting.popleft()
            self._claim(cell)
            self._count[0] = self._claimed
            return cell

    def _claim_on_worker(self, number: int) -> _Cell | None:
        """Claim the cell rank 0 claimed, ``number``: every rank numbers the cells in the order
        rank 0 received them, and rank 0 claims them in that order, one per poll."""
        with self._lock:
            if number == self._claimed:
                return None
            if self._expect is not None:
                self._wake(self._expect)  # the cell may still be on its way
            while not self._closed:
                # Older cells rank 0 never claimed were interrupted there before any poll:
                # they end here without running (rank 0 waits for that before its next).
                for old in [c for c in self._waiting if c.number < number]:
                    self._drop(old)
                for cell in self._waiting:
                    if cell.number == number:
                        self._waiting.remove(cell)
                        self._claim(cell)
                        return cell
                self._lock.wait(_WAKE)
            return None

    def _claim(self, cell: _Cell) -> None:
        """Under the lock."""
        cell.is_claimed = True
        self._claimed = cell.number

    def _drop(self, cell: _Cell) -> None:
        """Under the lock: a cell that will never run here; its waiting work ends as an
        interrupt would end it."""
        self._waiting.remove(cell)
        cell.dropped = True
        for job in cell.jobs:
            job.result = outcome.Error(KeyboardInterrupt())
            self._wake(job.done.set)
        cell.jobs.clear()

    def _serve(self, cell: _Cell) -> None:
        """Run the cell's blocking work on this thread until the cell ends."""
        me = threading.get_ident()
        while True:
            with self._lock:
                while not cell.jobs and not cell.ended and not self._closed:
                    self._lock.wait(_WAKE)
                if not cell.jobs:
                    return
                job = cell.jobs.popleft()
                job.thread = me
            self._run(job)

    def _run(self, job: _Job) -> None:
        # Never raises: the job's exception, an interrupt included, is its outcome.
        job.result = self.calls.call(job.fn, *job.args)
        with self._lock:
            job.thread = None
        self._wake(job.done.set)

    def _wake(self, fn: Callable[[], object]) -> None:
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(fn)

    def close(self) -> None:
        """The host stops the kernel: cells still waiting will not run."""
        with self._lock:
            self._closed = True
            if self._expect is not None:
                self._wake(self._expect)  # rank 0's shutdown command is on its way
            stopped = HostStopped("the host program stopped this kernel before the cell ran")
            for cell in self._waiting:
                for job in cell.jobs:
                    job.result = outcome.Error(stopped)
                    self._wake(job.done.set)
                cell.jobs.clear()
            self._waiting.clear()
            self._lock.notify_all()


def _int64() -> Any:
    from mpi4py import MPI

    return MPI.INT64_T


# -- MPI from a host that owns it ------------------------------------------------------------


def host_world() -> MPI.Intracomm:
    """``MPI.COMM_WORLD`` of a host that has initialized MPI itself, through mpi4py told not
    to initialize or finalize it.

    Raises:
        ConfigError: mpi4py is missing, MPI is not initialized, or not with
            ``MPI_THREAD_MULTIPLE`` (the kernel thread makes MPI calls while the host computes).
    """
    try:
        import mpi4py

        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = False
        from mpi4py import MPI
    except ImportError as exc:
        raise ConfigError(
            f"an MPI kernel needs mpi4py ({exc}): pip install mpi4py, built for the MPI "
            "library the host program uses"
        ) from None
    if not MPI.Is_initialized() or MPI.Is_finalized():
        raise ConfigError(
            "MPI is not initialized: the host program must call MPI_Init_thread "
            "(with MPI_THREAD_MULTIPLE) before it starts an MPI kernel, and stop the kernel "
            "before MPI_Finalize"
        )
    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        raise ConfigError(
            "MPI was initialized without MPI_THREAD_MULTIPLE: the kernel's thread makes MPI "
            "calls while the host computes; call MPI_Init_thread(..., MPI_THREAD_MULTIPLE, "
            "&provided) and check provided"
        )
    return MPI.COMM_WORLD


# -- the handle ------------------------------------------------------------------------------


class MpiEmbeddedKernel:
    """A kernel embedded on every rank of an MPI program; see :func:`start_mpi_kernel`.

    Every method but :attr:`connection_file` and :attr:`has_pending` is collective: every
    rank calls it, at the same point of its program.
    """

    def __init__(
        self,
        kernel: BaseKernel,
        name: str,
        comm: MPI.Intracomm,
        *,
        info: ConnectionInfo | None,
        connection_file: str | Path | None,
        packer: str,
        output: OutputMode,
    ) -> None:
        self.name = validate_name(name)
        self.rank: int = comm.Get_rank()
        self.size: int = comm.Get_size()
        self.kernel = kernel
        # Collective, in the same order on every rank.
        self._kernel_comm = comm.Dup()  # rank 0 <-> the other ranks (kernel threads)
        self._poll_comm = comm.Dup()  # the poll's broadcast (host threads)
        self.comm: MPI.Intracomm = comm.Dup()  # the cells' own, as `comm`
        self._nudge = Nudge(CELL_WORKER_SLEEP, IDLE_WORKER_SLEEP)
        self.executor = CollectiveSafePoints(
            self._poll_comm, None if self.rank == 0 else self._nudge.wake
        )
        self._root: RootKernel | None = None
        if self.rank == 0:
            self._root = RootKernel(kernel, self._kernel_comm, output)
        self._info = info
        self._requested_file = connection_file
        self._packer = packer
        self.connection_file: Path | None = None  # rank 0's, once started
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        namespace = getattr(self.kernel, "namespace", None)
        if isinstance(namespace, dict):
            namespace.setdefault("comm", self.comm)
            namespace.setdefault("rank", self.rank)
            namespace.setdefault("size", self.size)
        target = self._serve_root if self.rank == 0 else self._serve_worker
        self._thread = threading.Thread(
            target=target, name=f"kernelsdk-{self.name}-rank{self.rank}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(THREAD_TIMEOUT) and self._start_error is None:
            self._start_error = KernelSDKError("the kernel thread did not start")
        # Rank 0 may fail to bind; every rank must learn it, or the others would serve a
        # kernel nobody can reach and wait for it in every poll.
        failed = self._poll_comm.bcast(
            None if self._start_error is None else str(self._start_error), root=0
        )
        if failed is not None:
            self._stop_thread()
            self._free()
            if self._start_error is not None:
                raise self._start_error
            raise KernelSDKError(f"rank 0 could not start the kernel: {failed}")

    def _serve_root(self) -> None:
        try:
            trio.run(self._root_main)
        except BaseException as exc:  # reported to the host thread by start()
            if not self._started.is_set():
                self._start_error = exc
                self._started.set()
            else:
                log.exception("embedded MPI kernel %r failed", self.name)
        finally:
            if self._root is not None:
                stuck = self._root.end_job()
                if stuck:
                    log.error("ranks %s did not stop with the kernel", stuck)

    async def _root_main(self) -> None:
        from .._runtime import open_kernel

        assert self._root is not None
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self.executor.bind(self._token)
        info = self._info
        if info is None:
            info = ConnectionInfo(key=_new_key())
        start_error: ConfigError | None = None
        async with open_kernel(
            self._root,
            info,
            packer=self._packer,
            executor=self.executor,
            on_shutdown="detach",
            warn_unencrypted=False,
        ) as server:
            bound = info.with_ports(**server.ports).connection_file()
            try:
                self.connection_file = write_connection_file(
                    bound, self.name, path=self._requested_file
                )
            except ConfigError as exc:
                start_error = exc  # raised out of open_kernel's nursery: not in a group
            else:
                try:
                    self._started.set()
                    await self._stop.wait()
                finally:
                    remove_connection_file(self.connection_file)
        if start_error is not None:
            raise start_error

    def _serve_worker(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self.executor.bind(self._token)
            self._started.set()
            await serve_worker(
                self.kernel, self._kernel_comm, executor=self.executor, nudge=self._nudge
            )

        try:
            trio.run(main)
        except BaseException:
            log.exception("embedded MPI kernel %r failed on rank %d", self.name, self.rank)
            self._started.set()

    # -- the step loop -------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> int:
        """Collective safe point: run the cells that arrived since the last poll, on every
        rank, here and now; returns how many ran (the same number on every rank). Rank 0
        waits up to ``timeout`` seconds for a cell (the other ranks wait for rank 0)."""
        if self._stopped:
            raise KernelSDKError("poll after stop")
        return self.executor.poll(timeout)

    def poll_received(self, count: int) -> int:
        """A rank other than 0 whose host made this poll's broadcast itself (the C API's
        fast path) and received ``count``, rank 0's claimed cells: the rest of :meth:`poll`."""
        if self._stopped:
            raise KernelSDKError("poll after stop")
        return self.executor.poll(0.0, received=count)

    def broadcast_handles(self) -> tuple[int, int, int, int] | None:
        """What a C host needs to make the poll's broadcast itself, without Python: the
        address of MPI_Bcast in the MPI library mpi4py uses (the host's), the poll's
        communicator and ``MPI_INT64_T`` as handle values, and the size of a handle (an int in
        MPICH's ABI, a pointer in Open MPI's). None where it cannot be found."""
        import ctypes

        from mpi4py import MPI

        try:
            size = int(MPI._sizeof(MPI.Comm))
            if size != int(MPI._sizeof(MPI.Datatype)):
                return None
            library = ctypes.CDLL(MPI.__file__)
            address = ctypes.cast(library.MPI_Bcast, ctypes.c_void_p).value
            # mpi4py gives a handle as an unsigned number (MPICH's int handles sign-extended):
            # as C's intptr_t, which C narrows back to the handle's own type.
            comm = ctypes.c_ssize_t(self._poll_comm.handle).value
            datatype = ctypes.c_ssize_t(MPI.INT64_T.handle).value
        except (AttributeError, OSError, TypeError, ValueError):
            log.debug("no MPI_Bcast for the C poll", exc_info=True)
            return None
        if not address:
            return None
        return address, comm, datatype, size

    @property
    def claimed(self) -> int:
        """Cells this rank has claimed so far (the count of the poll's broadcast)."""
        return self.executor.claimed

    @property
    def has_pending(self) -> bool:
        """A cell waits for this rank's next poll (rank 0: for the next poll of all)."""
        return self.executor.has_pending

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Collective: end the kernel on every rank. Rank 0 removes the connection file and
        stops serving (clients see the kernel gone), then every rank's kernel thread ends.
        Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.executor.close()
        self._stop_thread()
        # No rank frees the communicators while another's kernel thread may still use them.
        self._poll_comm.Barrier()
        self._free()

    def _stop_thread(self) -> None:
        if self.rank == 0 and self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._stop.set)
        # The other ranks' threads end on rank 0's shutdown command (RootKernel.end_job).
        if self._thread is not None:
            self._thread.join(THREAD_TIMEOUT)
            if self._thread.is_alive():
                log.error("the kernel thread of rank %d did not stop", self.rank)

    def _free(self) -> None:
        for c in (self._kernel_comm, self._poll_comm, self.comm):
            with contextlib.suppress(Exception):
                c.Free()

    def __enter__(self) -> MpiEmbeddedKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _new_key() -> str:
    import uuid

    return uuid.uuid4().hex


def start_mpi_kernel(
    kernel: BaseKernel,
    name: str,
    *,
    comm: MPI.Intracomm | None = None,
    info: ConnectionInfo | None = None,
    connection_file: str | Path | None = None,
    packer: str = "json",
    output: OutputMode = OutputMode.ALL,
) -> MpiEmbeddedKernel:
    """Collective: start ``kernel`` embedded on every rank of ``comm`` (default: the host's
    ``COMM_WORLD``, see :func:`host_world`); every rank passes its own kernel instance.

    Rank 0 serves the Jupyter protocol (on ``info``, default: tcp on 127.0.0.1 with free
    ports and a new key) and writes the connection file (in Jupyter's runtime dir, or
    ``connection_file``). Call :meth:`MpiEmbeddedKernel.poll` once per step on every rank and
    :meth:`MpiEmbeddedKernel.stop` on every rank before ``MPI_Finalize``.

    Raises:
        ConfigError: MPI is not usable from here (see :func:`host_world`).
        TransportError, KernelSDKError: rank 0 could not start (on every rank).
    """
    handle = MpiEmbeddedKernel(
        kernel,
        name,
        host_world() if comm is None else comm,
        info=info,
        connection_file=connection_file,
        packer=packer,
        output=output,
    )
    handle.start()
    return handle
