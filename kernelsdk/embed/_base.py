"""What every embedded kernel's handle shares, however its Trio loop runs (its own thread, or
a guest of the host's event loop): serving, the connection file, stopping, host data."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import trio

from .._connection import ConnectionInfo
from .._exceptions import ConfigError
from .._executor import Executor
from .._kernel import BaseKernel
from .._server import KernelServer
from .._zmq_transport import ZmqTransport
from ._files import remove_connection_file, runtime_dir, validate_name, write_connection_file

log = logging.getLogger("kernelsdk.embed")

Transport = Literal["tcp", "ipc"]


def new_connection_info(name: str, transport: Transport, ip: str) -> ConnectionInfo:
    """Where a new embedded kernel listens: free ports, a fresh key."""
    validate_name(name)
    if transport == "ipc" and ip == "127.0.0.1":
        # ipc's "ip" is a path prefix: beside the connection file, not in the current directory.
        ip = str(runtime_dir() / f"kernelsdk-embed-{name}-{os.getpid()}-ipc")
    return ConnectionInfo(transport=transport, ip=ip, key=str(uuid.uuid4()))


class KernelHost:
    """Serves one kernel for a host program (the Trio side), and the state the host sees.

    Attributes:
        name: the name the host gave the kernel (in the connection file's name).
        kernel: the kernel instance.
        connection_file: where clients find it (``jupyter console --existing FILE``); set
            once the kernel listens.
        info: its connection info, with the ports bound once it listens.
    """

    def __init__(
        self,
        kernel: BaseKernel,
        name: str,
        info: ConnectionInfo,
        *,
        executor: Executor | None,
        allow_shutdown: bool,
        connection_file: str | os.PathLike[str] | None,
        packer: str,
    ) -> None:
        self.name = validate_name(name)
        self.kernel = kernel
        self.info = info
        self.connection_file = Path()
        self._executor = executor
        self._allow_shutdown = allow_shutdown
        self._file_wanted = connection_file
        self._packer = packer
        self._file_written = False
        self._server: KernelServer | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel = trio.CancelScope()
        self._shutdown_requested = False
        self._stop_wanted = False

    async def _serve(self, ready: Callable[[], None]) -> None:
        """Serve until cancelled (:meth:`_request_stop`) or an allowed shutdown request;
        ``ready()`` once the sockets are bound and the connection file written."""
        from .._runtime import open_kernel

        start_error: ConfigError | None = None
        try:
            with self._cancel:
                async with open_kernel(
                    self.kernel,
                    self.info,
                    packer=self._packer,
                    # Loopback is the host's own machine: no warning on every start there.
                    warn_unencrypted=self.info.ip not in ("127.0.0.1", "localhost", "::1"),
                    executor=self._executor,
                    on_shutdown="stop" if self._allow_shutdown else "detach",
                ) as server:
                    self._server = server
                    self._token = trio.lowlevel.current_trio_token()
                    if self._stop_wanted:  # asked before there was a token to ask through
                        self._cancel.cancel()
                    assert isinstance(server.transport, ZmqTransport)
                    self.info = server.transport.info
                    try:
                        self.connection_file = write_connection_file(
                            self.info, self.name, path=self._file_wanted
                        )
                    except ConfigError as exc:
                        # Raised below, out of open_kernel: inside, its nursery would wrap it
                        # in an ExceptionGroup, which the host's `except ConfigError` misses.
                        start_error = exc
                    else:
                        self._file_written = True
                        ready()
                        await server.wait_stopped()  # an allowed shutdown request
                        self._shutdown_requested = True
        finally:
            self._remove_file()
        if start_error is not None:
            raise start_error

    def _request_stop(self) -> bool:
        """Ask the Trio loop to stop serving (from any thread); False if it has ended."""
        self._stop_wanted = True  # before reading the token: _serve sets it, then reads this
        token = self._token
        if token is None:
            return False
        try:
            token.run_sync_soon(self._stop_serving)
        except trio.RunFinishedError:
            return False
        return True

    def _stop_serving(self) -> None:
        """On the Trio thread: interrupt the running cells first, as a shutdown request does.
        Cancelling alone would leave a cell's worker thread waiting for an input reply (it
        waits outside the cancelled scope) and the kernel's thread waiting for that worker."""
        if self._server is not None:
            self._server.interrupt()
        self._cancel.cancel()

    def _remove_file(self) -> None:
        if self._file_written:
            self._file_written = False
            remove_connection_file(self.connection_file)

    @property
    def shutdown_requested(self) -> bool:
        """A client's shutdown request ended the kernel (only with ``allow_shutdown``)."""
        return self._shutdown_requested

    @property
    def detach_count(self) -> int:
        """How many clients detached with a shutdown request (without ``allow_shutdown``)."""
        return 0 if self._server is None else self._server.detach_count

    def expose(self, name: str, value: object) -> None:
        """Put ``value`` in the kernel's namespace as ``name`` (a
        :class:`~kernelsdk.embed.PythonKernel`'s, or any kernel with a ``namespace`` dict)."""
        namespace = getattr(self.kernel, "namespace", None)
        if not isinstance(namespace, dict):
            raise TypeError(f"{type(self.kernel).__name__} has no namespace to expose {name!r} in")
        namespace[name] = value
