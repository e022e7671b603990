"""Safe points: cells that run on the host program's own thread, only when the host says so.

A simulation cannot let a cell read its arrays while a time step writes them. With safe points
the host calls :meth:`SafePoints.poll` where its state is consistent (between two steps), and
cells run there, on the host's thread, and nowhere else. Meanwhile the kernel's Trio thread
answers everything that does not need the host: heartbeat, control requests, comm info,
kernel info and completion while no cell waits.

Theory of operation
-------------------
Two threads meet here: the kernel's Trio thread, which calls the :class:`~kernelsdk.Executor`
methods, and the host thread, which calls :meth:`~SafePoints.poll`. One lock and one condition
variable guard everything they share.

1. The cell's task enters :meth:`~SafePoints.cell`: a :class:`_Cell` joins the waiting queue
   (``busy`` and ``execute_input`` have already left) and ``do_execute`` starts at once, on
   the kernel's thread.
2. The cell's work comes to the host as jobs: :meth:`~SafePoints.run_blocking` queues a
   :class:`_Job` on the cell, claimed or not, and the task sleeps until its outcome is back.
3. The host's ``poll`` takes the first waiting cell (it is now *claimed*: the host stays in
   ``poll`` until the cell ends) and runs its jobs, in order, as they come.
4. When ``do_execute`` ends, the cell is marked ended and the host returns from ``poll``. A cell
   that ends before any host claimed it (it had no blocking work) never reaches the host.

Why ``do_execute`` does not wait for the host before it starts: a cell's first job is then
already queued when the host reaches its safe point, and runs there at once. Waiting first
would cost the start of every cell two more hand-offs between the threads (the host wakes the
kernel's thread, which queues the job and wakes the host), each one a scheduler's and a GIL's
delay: measured, that was most of a cell's start on a busy machine. What runs at the safe
point is exactly what :meth:`~kernelsdk.ExecuteContext.run_blocking` is given: ``do_execute``'s
own code runs on the kernel's thread, which must not touch the host's data anyway.

An interrupt cancels the cell's Trio scope (a cell still waiting is dropped, never run) and
calls :meth:`~SafePoints.interrupt`, which raises :class:`KeyboardInterrupt` in the host thread
while a job of this kernel runs there, and only then (see
:meth:`~kernelsdk.embed._interruptible.InterruptibleCalls.call` for why this is race-free).
The cell ends with the usual interrupt error; ``poll`` returns normally.

A ``poll`` with nothing to do reads one attribute (a list's truth value) and nothing else; a C
host, which does not hold the GIL between polls, can skip even that with
:attr:`SafePoints.on_pending_changed` (a flag of its own).

The GIL: a host computing in Python holds it, and the kernel's thread gets it when it has
waited one switch interval (``sys.getswitchinterval()``, 5 ms): CPython then makes the holder
hand it over. ``poll`` does not release it "to be nice": a thread that releases and retakes
the GIL often (``os.sched_yield`` in every poll, as this module once did) restarts every
waiter's interval each time, and wins the race to retake it; measured on an idle 2-core
machine (benchmarks/embed_python.py), cells then started 225 ms late at the median and up to
3.3 s, against 6.5 ms and 12 ms without it.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, final

import outcome
import trio

from .._exceptions import KernelSDKError
from ._interruptible import InterruptibleCalls, finish

log = logging.getLogger("kernelsdk.embed")

T = TypeVar("T")


class _Job:
    """One ``run_blocking`` call: queued on the kernel thread, run on the host thread."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = trio.Event()
        self.result: outcome.Outcome[Any] | None = None
        self.taken = False  # by the host thread (under the lock)
        self.delivered = False  # its outcome handed to the kernel thread


class _Cell:
    """One execution, from the moment its ``do_execute`` starts until it ends."""

    def __init__(self) -> None:
        self.jobs: deque[_Job] = deque()  # queued, not yet taken by the host
        self.ended = False


@final
class SafePoints:
    """An :class:`~kernelsdk.Executor` that runs cells on the host's thread at its safe points.

    The kernel's Trio thread calls :meth:`cell`, :meth:`run_blocking` and :meth:`interrupt`;
    the host calls :meth:`poll` (or :meth:`serve`) from its own thread. Several host threads
    may poll the same kernel: whichever polls first runs the next cell.

    Attributes:
        on_pending_changed: called with ``True`` when a cell starts waiting for the host (from
            the kernel thread) and ``False`` when none waits any more (from the thread that
            took or dropped it). For a C fast path: set a flag that the C ``poll`` reads
            before entering Python. Notifications from two threads may arrive out of order,
            so a C host should only ever *set* its flag from a ``True`` and clear it itself
            right before calling :meth:`poll` (then look at :attr:`has_pending` after). It
            must not block or raise; what it raises is logged.
    """

    def __init__(self) -> None:
        self.on_pending_changed: Callable[[bool], None] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiting: deque[_Cell] = deque()  # started, not yet claimed, oldest first
        self._token: trio.lowlevel.TrioToken | None = None
        #: The cells' jobs, run on host threads; an interrupt stops them there.
        self.calls = InterruptibleCalls()
        # A claimed cell whose host thread left poll by an exception of its own (a Ctrl-C
        # between two jobs): the next poll goes on with it, or it would wait forever.
        self._orphan: _Cell | None = None
        # The cell of the task that calls run_blocking. A context variable, not an attribute:
        # a kernel with concurrent subshells runs several do_execute at once, each in a task
        # of its own (and the tasks it starts inherit it).
        self._current: contextvars.ContextVar[_Cell | None] = contextvars.ContextVar(
            f"kernelsdk-safe-points-{id(self):x}", default=None
        )
        self._closed = False

    # -- the kernel thread: the Executor ---------------------------------------------------

    def cell(self) -> AbstractAsyncContextManager[None]:
        return self._cell()

    @asynccontextmanager
    async def _cell(self) -> AsyncIterator[None]:
        self._token = trio.lowlevel.current_trio_token()
        cell = _Cell()
        with self._lock:
            if self._closed:
                raise HostStoppedError("the host program stopped the kernel")
            self._waiting.append(cell)
            first = len(self._waiting) == 1
            self._changed.notify_all()
        if first:
            self._notify_pending(True)
        current = self._current.set(cell)
        try:
            yield
        finally:
            self._current.reset(current)
            with self._lock:
                unclaimed = cell in self._waiting  # interrupted, or it needed no host
                if unclaimed:
                    self._waiting.remove(cell)
                cell.ended = True
                now_empty = unclaimed and not self._waiting
                self._changed.notify_all()
            if now_empty:
                self._notify_pending(False)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the host thread that claims the running cell, at its next
        safe point (at once if it has claimed it already).

        ``fn``'s exception is raised as it is. Interrupted, the call waits for ``fn`` to end
        (the host thread is the one running it: nothing else could run there meanwhile)
        and raises :class:`trio.Cancelled`; a job the host has not taken yet is dropped.
        """
        cell = self._current.get()
        if cell is None:
            raise RuntimeError("run_blocking of a safe-point kernel runs only inside a cell")
        job = _Job(fn, args)
        with self._lock:
            if self._closed:
                raise HostStoppedError("the host program stopped the kernel")
            cell.jobs.append(job)
            self._changed.notify_all()
        try:
            await job.done.wait()
        except trio.Cancelled:
            with self._lock:
                if not job.taken:
                    cell.jobs.remove(job)
                    raise
            with trio.CancelScope(shield=True):
                await job.done.wait()
            raise
        assert job.result is not None  # set before done
        result: T = await finish(job.result)
        return result

    def interrupt(self) -> None:
        """Raise :class:`KeyboardInterrupt` in the host thread if it runs a job of ours."""
        self.calls.interrupt()

    # -- the host thread ---------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        """A cell waits for the host's next :meth:`poll` (cheap: no lock)."""
        return bool(self._waiting) or self._orphan is not None

    def poll(self, timeout: float = 0.0) -> int:
        """A safe point: run the cells waiting now on the calling thread; return how many ran.

        With no cell waiting, waits up to ``timeout`` seconds for one to arrive (0: not at
        all, the common case in a time-step loop, which then costs an attribute read).
        Each cell runs to its end; after it, ``poll`` takes the next only if one is already
        waiting (a client's next cell arrives after the reply to this one: it runs at the
        next poll). An exception in a cell never leaves ``poll``: it is the cell's error
        reply. An interrupt stops the cell (``KeyboardInterrupt`` in this thread, while the
        cell's code runs) and ``poll`` returns normally. Once the kernel has stopped, ``poll``
        returns 0 at once.
        """
        if not self._waiting and timeout <= 0 and self._orphan is None:
            return 0
        deadline = time.monotonic() + timeout if timeout > 0 else 0.0
        ran = 0
        while True:
            cell = self._claim(deadline if ran == 0 else 0.0)
            if cell is None:
                return ran
            self._run_claimed(cell)
            ran += 1

    def serve(self, until: Callable[[], bool]) -> None:
        """Run cells on the calling thread as they arrive, until :meth:`close` or ``until()``
        is true (checked whenever the host is woken: after a cell, on :meth:`wake`)."""
        while not until():
            cell = self._claim(math.inf, until)
            if cell is not None:
                self._run_claimed(cell)

    def wake(self) -> None:
        """Wake :meth:`serve` and :meth:`poll` to look again (from any thread)."""
        with self._lock:
            self._changed.notify_all()

    def close(self) -> None:
        """No cell will run any more: waiting cells get an error, polling hosts return."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    def _claim(self, deadline: float, until: Callable[[], bool] | None = None) -> _Cell | None:
        """The first waiting cell, claimed; None at the deadline (0: no wait) or once closed."""
        with self._lock:
            if self._orphan is not None:  # claimed already: its task runs, it needs a host
                cell, self._orphan = self._orphan, None
                return cell
            while not self._waiting:
                if self._closed or (until is not None and until()):
                    return None
                if deadline == math.inf:
                    self._changed.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            cell = self._waiting.popleft()
            now_empty = not self._waiting
        if now_empty:
            self._notify_pending(False)
        return cell

    def _run_claimed(self, cell: _Cell) -> None:
        """Run the jobs of ``cell`` on this thread until it ends."""
        job: _Job | None = None
        try:
            while True:
                with self._lock:
                    while not cell.jobs and not cell.ended and not self._closed:
                        self._changed.wait()
                    if not cell.jobs:
                        return  # ended, or the kernel stopped
                    job = cell.jobs.popleft()
                    job.taken = True
                # Never raises: the job's exception (an interrupt included) is its outcome.
                self._finish(job, self.calls.call(job.fn, *job.args))
                job = None
        except BaseException as exc:
            # The host's own exception (a Ctrl-C between two jobs of the cell): it is the
            # host's to handle. A job it had taken gets an outcome all the same, and the cell
            # waits for whichever poll comes next.
            if job is not None and not job.delivered:
                self._finish(job, job.result or outcome.Error(exc))
            with self._lock:
                if not cell.ended:
                    self._orphan = cell
            if self._orphan is cell:
                self._notify_pending(True)
            raise

    def _finish(self, job: _Job, result: outcome.Outcome[Any]) -> None:
        job.result = result
        token = self._token
        assert token is not None
        try:
            token.run_sync_soon(job.done.set)  # twice (see _run_claimed) is harmless
        except trio.RunFinishedError:
            log.warning("the kernel stopped while a cell's work ran on the host thread")
        job.delivered = True

    def _notify_pending(self, pending: bool) -> None:
        hook = self.on_pending_changed
        if hook is None:
            return
        try:
            hook(pending)
        except Exception:
            log.exception("on_pending_changed failed")


class HostStoppedError(KernelSDKError):
    """The host program stopped its kernel before this cell could run."""
