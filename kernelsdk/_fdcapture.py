"""Native output capture: what is written to file descriptors 1 and 2 becomes a cell's output.

C code called through cffi, Fortran, a subprocess started by ``os.execute``: none of them knows
about the execution context, they write to the process's stdout and stderr descriptors. While
a :class:`DescriptorCapture` is installed those descriptors are pipes, and a reader thread hands
what arrives to a *sink* (the runtime publishes it as ``stream`` output of the running cell).

Theory of operation
-------------------
* :meth:`DescriptorCapture.install` keeps a duplicate of each original descriptor (the
  kernel's terminal or log, see :meth:`original`), then ``dup2``\\ s a pipe's write end over
  it. Subprocesses inherit the pipe; Python's own ``sys.stdout``/``sys.stderr`` objects are
  left as they are (they write to descriptors 1 and 2, so to the pipes too).
* One reader thread waits on both pipes (and a wake-up pipe for :meth:`uninstall`). Reads and
  hand-offs happen under one lock, which :meth:`drain` also takes: whatever the reader took
  is handed over before what :meth:`drain` finds, so the order of the bytes is kept.
* :meth:`drain` is what makes "all of a cell's output before its idle" hold: it flushes C's
  stdio buffers (``printf`` to a pipe is fully buffered), then reads each pipe without
  blocking until it is empty. It never waits for a writer: a background process that keeps
  the pipe open after its cell cannot hang the kernel (ipykernel#847); what it writes later
  goes to whichever cell runs then, or to the log.
* The sink is called with the stream name and the bytes, on the reader thread or on the
  thread calling :meth:`drain`. It must be quick and must not write to descriptors 1 or 2
  (that would feed the pipe it is reading). Decoding is the sink's business: a UTF-8
  sequence may be split across two reads.

Descriptors are process-wide, so only the owner of the process installs a capture
(``python -m kernelsdk run`` for a kernel that asks for it); an embedded kernel never does
unless its host asks, because the descriptors are the host's.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import threading
from collections.abc import Callable
from typing import Final

#: What the reader reads at once; also the largest piece handed to the sink.
CHUNK: Final = 64 << 10

#: The descriptors captured and the stream name each becomes.
STREAMS: Final = {1: "stdout", 2: "stderr"}

Sink = Callable[[str, bytes], None]


def _libc_fflush_all() -> Callable[[], None]:
    """``fflush(NULL)``: flushes every C stdio stream of the process."""
    try:
        libc = ctypes.CDLL(None)
        fflush = libc.fflush
    except (OSError, AttributeError):  # no C library to ask: nothing buffered there either
        return lambda: None
    fflush.argtypes = [ctypes.c_void_p]
    fflush.restype = ctypes.c_int

    def flush_all() -> None:
        fflush(None)

    return flush_all


class DescriptorCapture:
    """Capture descriptors 1 and 2 into ``sink`` while installed (see the module docstring).

    Args:
        sink: called with ``("stdout" | "stderr", data)`` for every piece read.
        streams: the descriptors to capture and their stream names (tests capture others).
    """

    def __init__(self, sink: Sink, streams: dict[int, str] | None = None) -> None:
        self._sink = sink
        self._streams = dict(STREAMS if streams is None else streams)
        self._originals: dict[int, int] = {}  # captured fd -> duplicate of what it was
        self._pipes: dict[int, str] = {}  # read end -> stream name
        self._lock = threading.Lock()
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._fflush = _libc_fflush_all()

    @property
    def installed(self) -> bool:
        return self._thread is not None

    def original(self, fd: int) -> int:
        """A descriptor for what ``fd`` was before :meth:`install` (for the kernel's own log)."""
        return self._originals.get(fd, fd)

    def install(self) -> None:
        """Put pipes in place of the descriptors and start reading them."""
        if self._thread is not None:
            raise RuntimeError("this capture is already installed")
        self._fflush()  # what C buffered so far belongs to the terminal, not to a cell
        try:
            for fd, name in self._streams.items():
                self._originals[fd] = os.dup(fd)
                read_end, write_end = os.pipe()
                os.set_blocking(read_end, False)
                os.set_inheritable(read_end, False)
                os.dup2(write_end, fd)
                os.close(write_end)
                self._pipes[read_end] = name
            self._wake_r, self._wake_w = os.pipe()
        except OSError:
            self._restore()
            raise
        self._thread = threading.Thread(
            target=self._read_until_uninstalled, name="kernelsdk-fd-capture", daemon=True
        )
        self._thread.start()

    def uninstall(self) -> None:
        """Hand over what is left, give the descriptors back, stop the reader."""
        thread = self._thread
        if thread is None:
            return
        self.drain()
        os.write(self._wake_w, b"x")
        thread.join()
        self._thread = None
        self.drain()  # written between the drain above and the reader's exit
        self._restore()

    def drain(self) -> None:
        """Hand everything written so far to the sink, without waiting for any writer."""
        self._fflush()
        with self._lock:
            for read_end, name in self._pipes.items():
                self._read_available(read_end, name)

    # -- internals ----------------------------------------------------------------------------

    def _read_available(self, read_end: int, name: str) -> bool:
        """Read ``read_end`` until it would block (under the lock); False once it is closed."""
        while True:
            try:
                data = os.read(read_end, CHUNK)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not data:
                return False
            self._sink(name, data)

    def _read_until_uninstalled(self) -> None:
        poller = select.poll()
        for read_end in self._pipes:
            poller.register(read_end, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    return
                with self._lock:
                    if not self._read_available(fd, self._pipes[fd]):
                        poller.unregister(fd)

    def _restore(self) -> None:
        for fd, saved in self._originals.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._originals.clear()
        for read_end in self._pipes:
            os.close(read_end)
        self._pipes.clear()
        for end in (self._wake_r, self._wake_w):
            if end >= 0:
                os.close(end)
        self._wake_r = self._wake_w = -1
