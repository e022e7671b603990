"""Python calls that an interrupt stops, on threads the kernel does not own.

A cell of an embedded Python kernel runs on the host's thread (safe points) or on a worker
thread; an interrupt must stop it there, and nowhere else. Python offers one way:
``PyThreadState_SetAsyncExc``, which raises an exception in another thread at its next
bytecode. Used carelessly it lands after the cell has returned, in the host's own code.
:class:`InterruptibleCalls` makes it safe: see :meth:`InterruptibleCalls.call`.

Code blocked in C (``time.sleep``, a long C call) sees the exception when it returns to
Python; that is the limit of the mechanism. And while it waits, CPython 3.11 keeps an
interpreter-wide "asynchronous exception pending" flag set, which sends every thread through
its slow path at each check (under a tracer such as coverage's, threads barely moved). So a
cell waiting for something the kernel ends itself on an interrupt (input from the frontend)
waits inside :func:`cooperative_wait`: the interrupt is then not sent asynchronously, and
raised when the wait ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, final

import outcome
import trio

T = TypeVar("T")


def _raise_in(thread_id: int, exc: type[BaseException]) -> None:
    """Raise ``exc`` in thread ``thread_id`` at its next bytecode."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


def _nothing() -> None:
    """A Python call: entering it is where CPython raises a pending asynchronous exception."""


class _Running:
    """One call in progress on one thread."""

    __slots__ = ("interrupted", "owed", "waiting")

    def __init__(self) -> None:
        self.interrupted = False  # at most one KeyboardInterrupt per call
        self.waiting = False  # in a cooperative_wait
        self.owed = False  # interrupted during one: raised when it ends


#: The call running on this thread (each thread has its own context), for cooperative_wait.
_current_call: contextvars.ContextVar[tuple[InterruptibleCalls, _Running] | None] = (
    contextvars.ContextVar("kernelsdk_interruptible_call", default=None)
)


@contextlib.contextmanager
def cooperative_wait() -> Iterator[None]:
    """A wait, inside an interruptible call, that the kernel itself ends on an interrupt (the
    frontend's input, which the interrupt cuts off): the interrupt is raised as
    ``KeyboardInterrupt`` when the wait ends, instead of asynchronously while the thread is
    blocked in C (see the module's docstring). Outside a call, nothing changes."""
    entry = _current_call.get()
    if entry is None:
        yield
        return
    calls, running = entry
    with calls._lock:
        running.waiting = True
    try:
        yield
    finally:
        with calls._lock:
            running.waiting = False
            owed, running.owed = running.owed, False
        if owed:
            raise KeyboardInterrupt


@final
class InterruptibleCalls:
    """Runs calls on whatever thread calls :meth:`call`; :meth:`interrupt`, from any thread,
    raises :class:`KeyboardInterrupt` in each of them, and only inside them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}  # by thread ident

    def call(self, fn: Callable[..., T], *args: Any) -> outcome.Outcome[T]:
        """``fn(*args)`` on this thread, its outcome (an interrupt: ``KeyboardInterrupt``).

        Why no interrupt ever escapes: :meth:`interrupt` raises the asynchronous exception
        only while this thread is registered, checked under the lock, and at most once per
        call. The registration opens under the lock just before ``fn`` and closes under the
        lock just after, where an exception sent but not yet raised is made to land; so the
        one exception lands in ``fn`` (its outcome), or in the few instructions around it,
        where the ``except`` clauses catch it. Landing while the window closes, it is caught
        there and the closing is done again.
        """
        ident = threading.get_ident()
        result: outcome.Outcome[T] | None = None
        try:
            try:
                running = _Running()
                with self._lock:
                    self._running[ident] = running
                token = _current_call.set((self, running))
                try:
                    result = outcome.capture(fn, *args)
                finally:
                    _current_call.reset(token)
            finally:
                self._close(ident)
        except KeyboardInterrupt as exc:  # landed just before fn, or just after it
            self._close(ident)  # in case it landed before the inner finally could
            if result is None:
                result = outcome.Error(exc)
        return result

    def _close(self, ident: int) -> None:
        # Never ``PyThreadState_SetAsyncExc(ident, NULL)`` to withdraw an exception: CPython
        # 3.11 then leaves the interpreter's "asynchronous exception pending" flag set with no
        # exception to raise, and every thread runs its eval-breaker checks for ever (under a
        # tracer such as coverage's, a thread made no progress at all). An exception sent
        # during the call and not yet raised is raised here instead, on this thread, and
        # caught below or by the caller's ``except``.
        while True:
            try:
                with self._lock:
                    running = self._running.pop(ident, None)
                if running is not None and running.interrupted:
                    for _ in range(3):
                        _nothing()
                return
            except KeyboardInterrupt:  # the call's own interrupt, raised just now
                continue

    def interrupt(self) -> None:
        """Raise :class:`KeyboardInterrupt` in every thread inside :meth:`call` (once each),
        except the calling thread: a call that stops its own kernel goes on to its end."""
        me = threading.get_ident()
        with self._lock:
            for ident, running in self._running.items():
                if ident != me and not running.interrupted:
                    running.interrupted = True
                    if running.waiting:
                        running.owed = True  # raised by cooperative_wait as the wait ends
                    else:
                        _raise_in(ident, KeyboardInterrupt)

    def running_here(self) -> bool:
        """The calling thread is inside :meth:`call`."""
        return threading.get_ident() in self._running


async def finish(result: outcome.Outcome[T]) -> T:
    """The value of a call's outcome in the cell's task: an interrupt's ``KeyboardInterrupt``
    becomes the cell's cancellation (never a ``KeyboardInterrupt`` loose in Trio)."""
    if isinstance(result, outcome.Error) and isinstance(result.error, KeyboardInterrupt):
        await trio.lowlevel.checkpoint_if_cancelled()
    return result.unwrap()


@final
class WorkerThreads:
    """An :class:`~kernelsdk.Executor` for embedded kernels without safe points: blocking work
    runs in a Trio worker thread, and an interrupt stops it there (instead of abandoning a
    thread that would go on running in the host's process, changing its data)."""

    def __init__(self) -> None:
        self.calls = InterruptibleCalls()

    def cell(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        # Not abandoned on cancel: the interrupt has stopped fn, or will when it is back in
        # Python; the cell ends only once it has.
        result = await trio.to_thread.run_sync(self.calls.call, fn, *args, abandon_on_cancel=False)
        return await finish(result)

    def interrupt(self) -> None:
        self.calls.interrupt()
