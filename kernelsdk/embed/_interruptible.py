"""Python calls that an interrupt stops, on threads the kernel does not own.

A cell of an embedded Python kernel runs on the host's thread (safe points) or on a worker
thread; an interrupt must stop it there, and nowhere else. Python offers one way:
``PyThreadState_SetAsyncExc``, which raises an exception in another thread at its next
bytecode. Used carelessly it lands after the cell has returned, in the host's own code.
:class:`InterruptibleCalls` makes it safe: see :meth:`InterruptibleCalls.call`.

Code blocked in C (``time.sleep``, a long C call) sees the exception when it returns to
Python; that is the limit of the mechanism.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable
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

    __slots__ = ("interrupted",)

    def __init__(self) -> None:
        self.interrupted = False  # at most one KeyboardInterrupt per call


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
                with self._lock:
                    self._running[ident] = _Running()
                result = outcome.capture(fn, *args)
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
