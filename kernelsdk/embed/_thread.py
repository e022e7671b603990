"""A kernel served from a thread of its own inside any Python program: :func:`start_kernel`.

The host program knows nothing of Trio: the kernel's event loop (``trio.run`` around
:func:`~kernelsdk.open_kernel`) runs in a daemon thread named ``kernelsdk-<name>``, and the host
gets an :class:`EmbeddedKernel` handle back once the sockets are bound and the connection file
is written. Nothing process-wide is touched: no signal handler (``trio.run`` outside the main
thread installs none), no parent watch, no process group, no ``sys.stdout``. Every kernel has
its own thread, sockets and file, so a process may embed several.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Final, final

import trio

from .._kernel import BaseKernel
from ._base import KernelHost, Transport, new_connection_info
from ._interruptible import WorkerThreads
from ._safepoints import SafePoints

log = logging.getLogger("kernelsdk.embed")

#: How long :func:`start_kernel` waits for the kernel thread to bind its sockets.
START_TIMEOUT: Final = 30.0


@final
class EmbeddedKernel(KernelHost):
    """A kernel running in a thread of this process; :func:`start_kernel` returns it.

    Use it as a context manager (the kernel stops at the end of the block) or call
    :meth:`stop`. Every method may be called from any thread.

    Attributes:
        safe_points: the executor running cells on the host's thread (None without safe
            points: cells run on worker threads of the kernel's whenever they arrive, and an
            interrupt stops them there).
    """

    def __init__(
        self,
        kernel: BaseKernel,
        name: str,
        *,
        safe_points: bool = False,
        allow_shutdown: bool = False,
        connection_file: str | os.PathLike[str] | None = None,
        transport: Transport = "tcp",
        ip: str = "127.0.0.1",
        packer: str = "json",
    ) -> None:
        self.safe_points: SafePoints | None = SafePoints() if safe_points else None
        executor: SafePoints | WorkerThreads = self.safe_points or WorkerThreads()
        self._calls = executor.calls
        super().__init__(
            kernel,
            name,
            new_connection_info(name, transport, ip),
            executor=executor,
            allow_shutdown=allow_shutdown,
            connection_file=connection_file,
            packer=packer,
        )
        self._ready = threading.Event()
        self._ended = threading.Event()
        self._start_error: BaseException | None = None
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"kernelsdk-{name}", daemon=True)

    # -- starting and stopping ------------------------------------------------------------

    def start(self) -> None:
        """Start serving; returns once the kernel listens (what :func:`start_kernel` calls).

        Raises:
            TransportError: a socket cannot be bound.
            ConfigError: the connection file cannot be written.
            TimeoutError: the kernel thread did not get that far within ``START_TIMEOUT``.
        """
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise TimeoutError(f"embedded kernel {self.name!r} did not start in {START_TIMEOUT} s")
        if self._start_error is not None:
            self._thread.join(START_TIMEOUT)
            raise self._start_error

    def _run(self) -> None:
        try:
            trio.run(self._serve, self._ready.set)
        except BaseException as exc:  # a thread's exception would only be printed
            if self._ready.is_set():
                log.exception("embedded kernel %r failed", self.name)
            else:
                self._start_error = exc
        finally:
            if self.safe_points is not None:
                self.safe_points.close()  # a host in poll or serve returns
            self._ended.set()
            self._ready.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the kernel: close its sockets, remove its connection file, end its thread.

        Idempotent, from any thread. A running cell is interrupted. Called from one of the
        kernel's cells it only asks the kernel to stop (waiting there would wait for itself):
        the cell runs to its end, and its client gets no reply, the kernel being gone. Waits
        at most ``timeout`` seconds for the thread to end.
        """
        with self._stop_lock:
            first, self._stopping = not self._stopping, True
        if first:
            # Asked first, so that nothing below can keep it from being asked.
            self._request_stop()
            self._remove_file()
            if self.safe_points is not None:
                self.safe_points.close()
            self._calls.interrupt()
        if threading.current_thread() is self._thread or self._running_a_cell_here():
            return
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("embedded kernel %r did not stop within %s s", self.name, timeout)

    def _running_a_cell_here(self) -> bool:
        return self._calls.running_here()

    @property
    def stopped(self) -> bool:
        """The kernel's thread has ended (:meth:`stop`, or an allowed shutdown request)."""
        return self._ended.is_set()

    def __enter__(self) -> EmbeddedKernel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "running"
        return f"<EmbeddedKernel {self.name!r} {state}, {self.connection_file}>"

    # -- the host's safe points -----------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        """A cell waits for the next :meth:`poll` (always False without safe points)."""
        return self.safe_points is not None and self.safe_points.has_pending

    @property
    def on_pending_changed(self) -> Callable[[bool], None] | None:
        """See :attr:`SafePoints.on_pending_changed` (None without safe points)."""
        return None if self.safe_points is None else self.safe_points.on_pending_changed

    @on_pending_changed.setter
    def on_pending_changed(self, hook: Callable[[bool], None] | None) -> None:
        if self.safe_points is None:
            raise ValueError(f"embedded kernel {self.name!r} was started without safe points")
        self.safe_points.on_pending_changed = hook

    def poll(self, timeout: float = 0.0) -> int:
        """A safe point: run the cells waiting now on this thread; return how many ran.

        See :meth:`SafePoints.poll`. Without safe points cells never wait for the host:
        this only sleeps ``timeout`` (less if the kernel stops) and returns 0.
        """
        if self.safe_points is not None:
            return self.safe_points.poll(timeout)
        if timeout > 0:
            self._ended.wait(timeout)
        return 0

    def serve(self) -> None:
        """Block this thread, running cells here as they come (with safe points), until
        :meth:`stop` or an allowed shutdown request."""
        if self.safe_points is None:
            self._ended.wait()
            return
        self.safe_points.serve(lambda: self._stopping or self._ended.is_set())


def start_kernel(
    kernel: BaseKernel,
    name: str = "embedded",
    *,
    safe_points: bool = False,
    allow_shutdown: bool = False,
    connection_file: str | os.PathLike[str] | None = None,
    transport: Transport = "tcp",
    ip: str = "127.0.0.1",
    packer: str = "json",
) -> EmbeddedKernel:
    """Serve ``kernel`` from a new thread of this process; return its handle once it listens.

    Args:
        kernel: the kernel instance (any :class:`~kernelsdk.BaseKernel`; a
            :class:`~kernelsdk.embed.PythonKernel` runs Python cells in the host).
        name: the kernel's name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``. Its
            connection file is ``kernelsdk-embed-<name>-<pid>.json`` in Jupyter's runtime
            directory, where ``python -m kernelsdk install --attach NAME`` finds it.
        safe_points: run cells on the host's thread, only inside :meth:`EmbeddedKernel.poll`
            or :meth:`EmbeddedKernel.serve`. Without, cells run on the kernel's thread
            whenever they arrive.
        allow_shutdown: a client's shutdown request stops the kernel (the host learns it
            from :attr:`EmbeddedKernel.shutdown_requested`). Without, it only detaches the
            client: the kernel keeps serving and another client may attach; a restart is
            refused.
        connection_file: write the connection file there instead.
        transport, ip: where to listen (ports are chosen free).
        packer: the message packer (``json``, or ``orjson``/``msgpack`` when installed).

    Raises:
        ValueError: a bad ``name``.
        TransportError: a socket cannot be bound.
        ConfigError: the connection file cannot be written, or a bad ``transport``.
    """
    handle = EmbeddedKernel(
        kernel,
        name,
        safe_points=safe_points,
        allow_shutdown=allow_shutdown,
        connection_file=connection_file,
        transport=transport,
        ip=ip,
        packer=packer,
    )
    handle.start()
    return handle
