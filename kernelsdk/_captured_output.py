"""Where captured descriptor output goes: the running cell's ``stream`` output, else the log.

:class:`~kernelsdk._fdcapture.DescriptorCapture` reads descriptors 1 and 2 on its own thread;
this is the Trio side. Pieces queue here (any thread) and are published on the Trio thread
(:meth:`CapturedOutput.pump`), decoded as UTF-8 per stream (a character split across two
reads is kept whole). While an execution runs they become its ``stream`` output; when none
runs they are written to the kernel's original descriptor, where its log goes.

The handlers bracket each execution with :meth:`CapturedOutput.into`: output of the cell's
native code, subprocesses included, reaches the client before the cell's reply and idle,
because leaving the bracket drains the pipes and publishes what they held. The cell's own
``stream`` output drains them first too (:meth:`CapturedOutput.before_stream`), so that what a
subprocess printed before the cell's next ``print`` is shown before it, as in a terminal.
When cells run concurrently (kernel subshells), what the descriptors carry goes to the one
that began last of those still running: the descriptors do not say which cell wrote.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator

import trio

from ._fdcapture import DescriptorCapture

#: Publishes one stream's text as output of the running cell (``ExecuteContext.stream``).
StreamTarget = Callable[[str, str], None]


class CapturedOutput:
    """Routes what a :class:`DescriptorCapture` reads; owns that capture.

    Created and installed before the Trio run (so the kernel's own log can be pointed at
    the original descriptors first); :meth:`bind` connects it to the run once it exists.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[str, bytes]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._target: StreamTarget | None = None
        self._targets: list[StreamTarget] = []  # the cells' brackets entered, not yet left
        self._pumping = False  # publishing captured pieces (which are stream output too)
        # Held while pieces leave the queue until they reach their target: pieces taken
        # later (pump, taken) are delivered after them.
        self._delivering = threading.RLock()
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }
        self.capture = DescriptorCapture(self._take)

    # -- the process's side -----------------------------------------------------------------

    def install(self) -> None:
        self.capture.install()

    def uninstall(self) -> None:
        self.capture.uninstall()
        self.pump()

    def log_stream_fd(self) -> int:
        """A new descriptor for the original stderr: the kernel's log must not loop into a
        cell (the caller owns and closes it)."""
        return os.dup(self.capture.original(2))

    def bind(self, token: trio.lowlevel.TrioToken) -> None:
        """Publish through this Trio run from now on (call on its thread)."""
        self._token = token
        self.pump()

    # -- the handlers' side -----------------------------------------------------------------

    @contextlib.contextmanager
    def into(self, target: StreamTarget) -> Iterator[None]:
        """Make captured output ``target``'s while the block runs; flush it all on leaving."""
        self.pump()  # what came before belongs to the log (or the previous cell)
        targets = self._targets
        targets.append(target)
        self._target = target
        try:
            yield
        finally:
            self.flush()
            # Not necessarily the last entered: concurrent cells (subshells) end in any order.
            for i in range(len(targets) - 1, -1, -1):
                if targets[i] is target:
                    del targets[i]
                    break
            self._target = targets[-1] if targets else None

    def flush(self) -> None:
        """Publish everything written so far (on the Trio thread)."""
        self.capture.drain()
        self.pump()

    @property
    def pending(self) -> bool:
        """The reader has queued pieces not yet delivered (cheap: no lock)."""
        return bool(self._queue)

    @contextlib.contextmanager
    def taken(self, drain: bool = False) -> Iterator[list[tuple[str, str]]]:
        """The pieces queued so far (after draining the descriptors, if ``drain``: a system
        call per pipe and a ``fflush``), decoded and taken from the queue, from any thread.
        For output written on a worker thread and published later (:class:`~kernelsdk.
        NativeRunner`'s, which is also this capture's target meanwhile): the writer queues
        these pieces, then its own text, inside the block, where nothing else is delivered;
        so the two keep the order in which they were written."""
        if drain:
            self.capture.drain()
        with self._delivering:
            yield self._take_queued()

    def before_stream(self) -> None:
        """A cell is about to publish ``stream`` output of its own (on the Trio thread): what
        the descriptors carry so far goes first. Costs a ``fflush`` and a read per pipe."""
        if self._target is not None and not self._pumping:
            self.flush()

    # -- internals ----------------------------------------------------------------------------

    def _take(self, name: str, data: bytes) -> None:
        """The capture's sink (the reader thread, or a drain): queue, wake the Trio thread."""
        with self._lock:
            self._queue.append((name, data))
            if self._scheduled or self._token is None:
                return
            self._scheduled = True
        # After the run, uninstall pumps what is left.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self.pump)

    def pump(self) -> None:
        """Publish what is queued, in order (on the Trio thread, or after the run)."""
        with self._delivering:
            pieces = self._take_queued()
            self._pumping = True
            try:
                for name, text in pieces:
                    if self._target is not None:
                        self._target(name, text)
                    else:
                        self._to_log(name, text.encode())
            finally:
                self._pumping = False

    def _take_queued(self) -> list[tuple[str, str]]:
        with self._lock:  # decoded under the lock: pump and taken run on different threads
            pieces = [(name, self._decoders[name].decode(data)) for name, data in self._queue]
            self._queue.clear()
            self._scheduled = False
        return [(name, text) for name, text in pieces if text]

    def _to_log(self, name: str, data: bytes) -> None:
        fd = self.capture.original(1 if name == "stdout" else 2)
        with contextlib.suppress(OSError):  # a closed terminal must not cost the kernel
            os.write(fd, data)
