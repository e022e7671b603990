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

**Interleaving at safe points** (kernel subshells, JEP 91). A runtime whose long calls reach
safe points (an interpreter hook between two instructions, where its state is consistent and
other code may run) can give a waiting call its turn there instead of making it wait for the
end. Create the runner with ``preempt`` and run such calls with ``interleave=True``: when one
must wait, the runner calls ``preempt()`` (the runtime arms its hook); at its next safe point
the running call calls :meth:`NativeOutput.pause`, which lends the runtime to the waiting
interleaving calls and returns once they have all ended. So calls nest like function calls
(the newest runs to its end, or until it pauses for a newer one, before the one it paused
goes on), and the runtime is only ever used by one thread at a time. Calls run without
``interleave`` (e.g. comm handlers) wait for the runtime to be free as before; a runner
without ``preempt`` runs every call one at a time, in order, as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
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


#: How often a call waiting to interleave asks the holder again to pause (seconds).
_PREEMPT_AGAIN = 0.05


class _Turns:
    """Whose turn it is to use the native runtime, across worker threads (a runner with
    ``preempt``): one holder at a time; the calls it paused at a safe point, innermost last;
    the calls waiting, in order of arrival."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: NativeOutput | None = None
        self._paused: list[NativeOutput] = []
        self._waiting: list[NativeOutput] = []  # oldest first
        #: how many waiting calls interleave (read without the lock by NativeOutput.waiting)
        self.interleaving = 0

    def acquire(self, output: NativeOutput, preempt: Callable[[], None]) -> None:
        """Wait for ``output``'s turn (in its worker thread); ask the holder to pause first
        if ``output`` interleaves."""
        with self._cond:
            self._waiting.append(output)
            if output.interleaves:
                self.interleaving += 1
            self._hand_over()
            if self._holder is output:
                return
        if output.interleaves:
            preempt()  # outside the lock: the runtime's hook may be pausing (taking it) now
        with self._cond:
            while self._holder is not output:
                if self._cond.wait(_PREEMPT_AGAIN) or not output.interleaves:
                    continue
                # Still waiting: the holder may have been where it cannot be asked when
                # preempt ran (between two resumptions of its code, in a host call), and
                # preempt asks only what runs now. Ask again, outside the lock.
                self._cond.release()
                try:
                    preempt()
                finally:
                    self._cond.acquire()

    def release(self, output: NativeOutput) -> None:
        with self._cond:
            if self._holder is output:
                self._holder = None
                self._hand_over()

    def pause(self, output: NativeOutput) -> None:
        """At a safe point of the holder ``output``: lend the runtime to the interleaving
        calls waiting, and return once they have ended (at once if none waits)."""
        with self._cond:
            if self._holder is not output or not self.interleaving:
                return
            self._holder = None
            self._paused.append(output)
            self._hand_over()
            while self._holder is not output:
                self._cond.wait()
            self._paused.pop()

    def _hand_over(self) -> None:
        """Give a free runtime to the next call: while calls are paused, the oldest
        interleaving one waiting, else the innermost paused; otherwise the oldest waiting."""
        if self._holder is not None:
            return
        if self._paused:
            chosen = next((o for o in self._waiting if o.interleaves), None) or self._paused[-1]
        elif self._waiting:
            chosen = self._waiting[0]
        else:
            return
        if chosen is not (self._paused[-1] if self._paused else None):
            self._waiting.remove(chosen)
            if chosen.interleaves:
                self.interleaving -= 1
        self._holder = chosen
        self._cond.notify_all()


class NativeOutput:
    """Output of one native call, written from the worker thread, published on the Trio thread.

    ``write`` and ``emit`` are cheap and thread-safe; everything is delivered to the
    :class:`~kernelsdk.ExecuteContext` in the order it was produced. Without a context (e.g.
    for a completion request) output is dropped.
    """

    def __init__(
        self,
        ctx: ExecuteContext | None,
        *,
        max_buffered: int = 1 << 20,
        turns: _Turns | None = None,
        interleaves: bool = False,
    ) -> None:
        self.ctx = ctx
        # The process's captured descriptors: what native code wrote there before a write
        # here is queued before it (else a subprocess's line would overtake a print before it).
        self._captured = None if ctx is None else ctx.captured_output
        self._turns = turns
        self.interleaves = interleaves
        self._items: list[_Item] = []
        self._size = 0
        self._lock = threading.Lock()
        self._max_buffered = max_buffered
        self._trio_thread = threading.get_ident()
        self._token = trio.lowlevel.current_trio_token()
        self._input_scope: trio.CancelScope | None = None
        self.interrupted = False

    # -- from the worker thread -----------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """A call waits to interleave with this one: :meth:`pause` at the next safe point.
        (Cheap, without a lock: a runtime may check it as often as it likes.)"""
        turns = self._turns
        return turns is not None and turns.interleaving > 0

    def pause(self) -> None:
        """At a safe point of this call (its worker thread, the runtime's state consistent):
        let the calls waiting to interleave use the runtime, and return once they have ended.
        Returns at once when none waits, or when the runner does not interleave calls. The
        runtime must be left as the paused call expects it when this returns: the calls that
        ran meanwhile are responsible for restoring what they changed."""
        if self._turns is not None:
            self._turns.pause(self)

    def write(self, name: str, text: str) -> None:
        """Queue ``text`` for the ``stdout`` or ``stderr`` stream."""
        if self.ctx is not None and text and self._queue((name, text)):
            self._flush_from_worker()

    def emit(self, action: Callable[[ExecuteContext], None]) -> None:
        """Queue any other output, e.g. ``lambda ctx: ctx.display(bundle)``, keeping order."""
        if self.ctx is not None:
            self._queue(action)

    def native_returned(self) -> None:
        """Native code that may have written to the process's descriptors has returned (a
        command the runtime ran has ended): what it wrote is queued now, before what the call
        writes next. Without it, that output is still shown, in order as far as the thread
        reading the descriptors has read it. A system call per descriptor; only with native
        output capture (``BaseKernel.capture_native_output``)."""
        if self._captured is not None and self.ctx is not None:
            with self._captured.taken(drain=True) as native, self._lock:
                for piece in native:
                    self._add(piece)

    def _captured_text(self, name: str, text: str) -> None:
        """The captured descriptors' target while a call runs (see NativeRunner.run)."""
        with self._lock:
            self._add((name, text))

    def _queue(self, item: _Item) -> bool:
        """Queue ``item`` after what the thread reading the captured descriptors has read
        (it was written before); True when the buffer is full."""
        captured = self._captured
        if captured is not None and captured.pending:  # checked without a lock: cheap
            with captured.taken() as native, self._lock:
                for piece in native:
                    self._add(piece)
                return self._add(item)
        with self._lock:
            return self._add(item)

    def _add(self, item: _Item) -> bool:
        """Under the lock; True when the buffer is full."""
        if not isinstance(item, tuple):
            self._items.append(item)
        elif self._items and isinstance(last := self._items[-1], tuple) and last[0] == item[0]:
            self._items[-1] = (item[0], last[1] + item[1])  # merge: fewer IOPub messages
            self._size += len(item[1])
        else:
            self._items.append(item)
            self._size += len(item[1])
        return self._size > self._max_buffered

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
        preempt: for a runtime whose calls reach safe points (see the module's docstring):
            called, from a worker thread, when a call run with ``interleave=True`` must wait
            for another; it must make the running call reach a safe point soon, where it
            calls :meth:`NativeOutput.pause` (e.g. install an interpreter hook; a call that
            has not started its long work yet checks :attr:`NativeOutput.waiting` first). It
            must not block. None (the default): calls run one at a time, in order.
    """

    def __init__(
        self,
        stop: Callable[[], None],
        *,
        flush_interval: float = 0.02,
        preempt: Callable[[], None] | None = None,
    ) -> None:
        self._stop = stop
        self._flush_interval = flush_interval
        self._lock = trio.Lock()
        self._output: NativeOutput | None = None
        self._preempt = preempt
        self._turns = _Turns() if preempt is not None else None
        self._outputs: list[NativeOutput] = []  # with preempt: every call begun, not ended

    @property
    def busy(self) -> bool:
        """A native call is running (or, with ``preempt``, begun and not ended)."""
        return self._output is not None or bool(self._outputs)

    @property
    def interrupted(self) -> bool:
        """The running call was interrupted (check before entering long native work)."""
        return self._output is not None and self._output.interrupted

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        ctx: ExecuteContext | None = None,
        interleave: bool = False,
    ) -> T:
        """Run ``fn(output, *args)`` in a worker thread, with ``output`` a :class:`NativeOutput`
        publishing to ``ctx``; returns its result.

        ``fn``'s exception is raised as it is (as :meth:`ExecuteContext.run_blocking` does,
        never inside an ``ExceptionGroup``), after the output ``fn`` wrote before it.
        If the surrounding scope is cancelled (an interrupt), this still waits for ``fn`` to
        return before raising :class:`trio.Cancelled`, so pair it with :meth:`interrupt`.

        ``interleave``: with a runner made with ``preempt``, the call may run at a safe point
        of a running call, paused meanwhile, instead of after it (ignored without
        ``preempt``).
        """
        if self._turns is not None:
            return await self._run_in_turn(self._turns, fn, args, ctx, interleave)
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

    async def _run_in_turn(
        self,
        turns: _Turns,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        ctx: ExecuteContext | None,
        interleave: bool,
    ) -> T:
        """``run`` for a runner with ``preempt``: the worker thread waits for its turn."""
        assert self._preempt is not None
        preempt = self._preempt
        output = NativeOutput(ctx, turns=turns, interleaves=interleave)

        def in_turn(out: NativeOutput, *args: Any) -> T:
            turns.acquire(out, preempt)
            try:
                return fn(out, *args)
            finally:
                turns.release(out)

        self._outputs.append(output)
        try:
            finished = await self._call_while_flushing(output, in_turn, args)
        finally:
            self._outputs.remove(output)
            output.flush()
        await trio.lowlevel.checkpoint_if_cancelled()
        return finished.result()

    async def _call_while_flushing(
        self, output: NativeOutput, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> _Finished[T]:
        """Call ``fn`` in the worker while a task publishes its output. How it ended is
        returned, not raised: raised in the nursery, it would leave wrapped in a group."""
        flusher, flusher_done = trio.CancelScope(shield=True), trio.Event()
        captured = output._captured
        into: AbstractContextManager[None] = contextlib.nullcontext()
        if captured is not None:
            # Native output goes through the call's output meanwhile, in order with the rest.
            into = captured.into(output._captured_text)
        with into:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    output._flush_periodically, self._flush_interval, flusher, flusher_done
                )
                try:
                    # Not abandoned on cancel: the runtime is single-threaded and the next
                    # call must not start while this one still runs.
                    finished = _Finished(
                        await trio.to_thread.run_sync(fn, output, *args, abandon_on_cancel=False)
                    )
                except BaseException as exc:  # re-raised by run
                    finished = _Finished[T](error=exc)
                flusher.cancel()
                with trio.CancelScope(shield=True):  # then the nursery has nothing to wait for
                    await flusher_done.wait()
        return finished

    def interrupt(self) -> None:
        """Stop the running call, if any (call from ``do_interrupt``, on the Trio thread);
        with ``preempt``, every call begun: running, paused or waiting for its turn."""
        outputs = [self._output] if self._output is not None else list(self._outputs)
        if not outputs:
            return
        # Order matters: the flag first, so a worker that has not yet entered native code sees
        # it, then the runtime's stop for one that has.
        for output in outputs:
            output._interrupt()
        self._stop()
