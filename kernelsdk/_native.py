"""Run native code (a C interpreter reached through cffi or ctypes) from a kernel.

A C runtime such as Lua is driven by blocking calls that may run for minutes. Three things
must hold while such a call runs, and this module is the small amount of machinery for them:

* **The kernel stays responsive.** The call runs in a worker thread
  (:func:`trio.to_thread.run_sync`); cffi and ctypes release the GIL around every C call, so
  the Trio thread keeps serving control requests, comms and stdin, and the heartbeat thread is
  never blocked.
* **An interrupt stops it.** The framework cancels ``do_execute`` and calls
  :meth:`~kernelsdk.BaseKernel.do_interrupt`; the kernel forwards that to
  :meth:`NativeRunner.interrupt`, which calls the runtime-specific ``stop`` function you
  provided (e.g. install an interpreter hook). The worker is *not* abandoned: the runner
  waits for the native call to return, so a native state is never used by two threads at
  once and no output of an interrupted cell can arrive after its reply.
* **Output streams while it runs.** Native code writes through a :class:`NativeOutput` from the
  worker thread; a task on the Trio thread publishes what has accumulated every
  ``flush_interval`` seconds, merged per stream, in order. The worker never waits for the
  Trio thread on a plain write (writes are only a list append), except when more than
  ``max_buffered`` characters are pending: then it waits for a flush, which bounds memory
  when a runaway loop prints.

Only one native call runs at a time per runner: native interpreters are single-threaded, and
completion or inspection requests that touch the interpreter must queue behind a running cell.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import trio

from ._context import ExecuteContext
from ._exceptions import InputInterrupted

T = TypeVar("T")

#: An output action replayed on the Trio thread: ``("stream", name, text)`` or a callable.
_Item = tuple[str, str] | Callable[[ExecuteContext], None]


class _Finished(Generic[T]):
    """How a native call ended: its value, or the exception it raised."""

    def __init__(self, value: T | None = None, *, error: BaseException | None = None) -> None:
        self._value = value
        self._error = error

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        return cast(T, self._value)  # set by a call that returned


class NativeOutput:
    """Output of one native call, written from the worker thread, published on the Trio thread.

    ``write`` and ``emit`` are cheap and thread-safe; everything is delivered to the
    :class:`~kernelsdk.ExecuteContext` in the order it was produced. Without a context (e.g.
    for a completion request) output is dropped.
    """

    def __init__(self, ctx: ExecuteContext | None, *, max_buffered: int = 1 << 20) -> None:
        self.ctx = ctx
        self._items: list[_Item] = []
        self._size = 0
        self._lock = threading.Lock()
        self._max_buffered = max_buffered
        self._trio_thread = threading.get_ident()
        self._token = trio.lowlevel.current_trio_token()
        self._input_scope: trio.CancelScope | None = None
        self.interrupted = False

    # -- from the worker thread -----------------------------------------------------------

    def write(self, name: str, text: str) -> None:
        """Queue ``text`` for the ``stdout`` or ``stderr`` stream."""
        if self.ctx is None or not text:
            return
        with self._lock:
            if self._items and isinstance(last := self._items[-1], tuple) and last[0] == name:
                self._items[-1] = (name, last[1] + text)  # merge: fewer IOPub messages
            else:
                self._items.append((name, text))
            self._size += len(text)
            full = self._size > self._max_buffered
        if full:
            self._flush_from_worker()

    def emit(self, action: Callable[[ExecuteContext], None]) -> None:
        """Queue any other output, e.g. ``lambda ctx: ctx.display(bundle)``, keeping order."""
        if self.ctx is None:
            return
        with self._lock:
            self._items.append(action)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the Trio thread after publishing the output so far, from the
        worker; returns its result. For kernel APIs that are not thread-safe (comms)."""

        def flush_then_call() -> T:
            self.flush()
            return fn(*args)

        if threading.get_ident() == self._trio_thread:
            return flush_then_call()
        return trio.from_thread.run_sync(flush_then_call, trio_token=self._token)

    def input(self, prompt: str = "", *, password: bool = False) -> str | None:
        """Ask the frontend for a line (after publishing the output so far), from the worker.

        Returns ``None`` on interrupt. Raises :class:`~kernelsdk.StdinNotAllowedError` when the
        request did not allow stdin and :class:`EOFError` on end of input.
        """
        if self.ctx is None:
            raise EOFError("no frontend to read from")
        try:
            return trio.from_thread.run(self._input, prompt, password, trio_token=self._token)
        except trio.Cancelled:
            return None

    # -- on the Trio thread ---------------------------------------------------------------

    def flush(self) -> None:
        """Publish everything queued so far. Call only on the Trio thread."""
        with self._lock:
            items, self._items, self._size = self._items, [], 0
        if self.ctx is None:
            return
        for item in items:
            if isinstance(item, tuple):
                self.ctx.stream(item[0], item[1])
            else:
                item(self.ctx)

    def _flush_from_worker(self) -> None:
        if threading.get_ident() == self._trio_thread:
            self.flush()
        else:
            trio.from_thread.run_sync(self.flush, trio_token=self._token)

    async def _input(self, prompt: str, password: bool) -> str | None:
        assert self.ctx is not None
        self.flush()  # the prompt belongs after what was printed before it
        with trio.CancelScope() as self._input_scope:
            if self.interrupted:
                return None
            try:
                return await self.ctx.input(prompt, password=password)
            except InputInterrupted:  # the execution was interrupted, or the kernel shuts down
                return None
        return None  # cancelled by an interrupt

    def _interrupt(self) -> None:
        self.interrupted = True
        if self._input_scope is not None:
            self._input_scope.cancel()

    async def _flush_periodically(
        self, interval: float, scope: trio.CancelScope, done: trio.Event
    ) -> None:
        # Ended by ``scope`` alone (shielded from the caller's cancellation), so it never ends
        # with a Cancelled that its nursery would raise, wrapped in an ExceptionGroup.
        try:
            with scope:
                while True:
                    await trio.sleep(interval)
                    self.flush()
        finally:
            done.set()


class NativeRunner:
    """Runs native calls one at a time in a worker thread, interruptibly, streaming output.

    Args:
        stop: called on the Trio thread by :meth:`interrupt` while a call runs; it must make
            the native call return soon (set a flag the C code polls, install an interpreter
            hook, ...). It must not block.
        flush_interval: seconds between two publications of pending output while a call runs.
    """

    def __init__(self, stop: Callable[[], None], *, flush_interval: float = 0.02) -> None:
        self._stop = stop
        self._flush_interval = flush_interval
        self._lock = trio.Lock()
        self._output: NativeOutput | None = None

    @property
    def busy(self) -> bool:
        """A native call is running."""
        return self._output is not None

    @property
    def interrupted(self) -> bool:
        """The running call was interrupted (check before entering long native work)."""
        return self._output is not None and self._output.interrupted

    async def run(self, fn: Callable[..., T], *args: Any, ctx: ExecuteContext | None = None) -> T:
        """Run ``fn(output, *args)`` in a worker thread, with ``output`` a :class:`NativeOutput`
        publishing to ``ctx``; returns its result.

        ``fn``'s exception is raised as it is (as :meth:`ExecuteContext.run_blocking` does,
        never inside an ``ExceptionGroup``), after the output ``fn`` wrote before it.
        If the surrounding scope is cancelled (an interrupt), this still waits for ``fn`` to
        return before raising :class:`trio.Cancelled`, so pair it with :meth:`interrupt`.
        """
        async with self._lock:
            output = NativeOutput(ctx)
            self._output = output
            try:
                finished = await self._call_while_flushing(output, fn, args)
            finally:
                self._output = None
                output.flush()
            # Interrupted: Cancelled, whatever fn returned or raised once stopped.
            await trio.lowlevel.checkpoint_if_cancelled()
            return finished.result()

    async def _call_while_flushing(
        self, output: NativeOutput, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> _Finished[T]:
        """Call ``fn`` in the worker while a task publishes its output. How it ended is
        returned, not raised: raised in the nursery, it would leave wrapped in a group."""
        flusher, flusher_done = trio.CancelScope(shield=True), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                output._flush_periodically, self._flush_interval, flusher, flusher_done
            )
            try:
                # Not abandoned on cancel: the runtime is single-threaded and the next call
                # must not start while this one still runs.
                finished = _Finished(
                    await trio.to_thread.run_sync(fn, output, *args, abandon_on_cancel=False)
                )
            except BaseException as exc:  # re-raised by run
                finished = _Finished[T](error=exc)
            flusher.cancel()
            with trio.CancelScope(shield=True):  # the nursery then has nothing left to wait for
                await flusher_done.wait()
        return finished

    def interrupt(self) -> None:
        """Stop the running call, if any (call from ``do_interrupt``, on the Trio thread)."""
        output = self._output
        if output is None:
            return
        # Order matters: the flag first, so a worker that has not yet entered native code sees
        # it, then the runtime's stop for one that has.
        output._interrupt()
        self._stop()
