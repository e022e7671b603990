"""A kernel that runs on the host program's own event loop (asyncio, Qt...): Trio's guest mode.

A host with an event loop of its own wants no extra thread: with
:func:`trio.lowlevel.start_guest_run`, Trio runs *inside* that loop, scheduling its work with
the loop's "call soon" function (only the wait for I/O happens in a helper thread of Trio's).
Cells then run on the loop's thread, between the loop's other callbacks, and may touch
everything the host's callbacks touch.

:func:`start_kernel_async` does this for asyncio; :func:`start_guest_kernel` for any loop that
offers a thread-safe "call soon" (Qt: a signal connected with ``Qt.QueuedConnection``, see
docs/embedding.md).

A cell blocks the host's loop while it runs, as any callback would, and is not interrupted
meanwhile: the interrupt request waits in the loop's queue behind it. Write long work as
several cells, or use :func:`~kernelsdk.embed.start_kernel` with safe points.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, TypeVar, final

import outcome
import trio

from .._kernel import BaseKernel
from ._base import KernelHost, Transport, new_connection_info

log = logging.getLogger("kernelsdk.embed")

T = TypeVar("T")


@final
class InlineExecutor:
    """An :class:`~kernelsdk.Executor` that runs blocking work in the cell's own Trio task:
    in guest mode, on the host loop's thread."""

    def cell(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()  # an interrupt that came before it
        return fn(*args)

    def interrupt(self) -> None:
        """Nothing to stop: while ``fn`` runs, the loop (and so the interrupt) waits."""


@final
class GuestKernel(KernelHost):
    """A kernel running as a guest of the host's event loop.

    :func:`start_kernel_async` (asyncio) and :func:`start_guest_kernel` (any loop) return one.
    Its methods are called on the loop's thread, except :meth:`stop`, which may be called
    from any thread.
    """

    def __init__(
        self,
        kernel: BaseKernel,
        name: str,
        *,
        allow_shutdown: bool = False,
        connection_file: str | os.PathLike[str] | None = None,
        transport: Transport = "tcp",
        ip: str = "127.0.0.1",
        packer: str = "json",
    ) -> None:
        super().__init__(
            kernel,
            name,
            new_connection_info(name, transport, ip),
            executor=InlineExecutor(),
            allow_shutdown=allow_shutdown,
            connection_file=connection_file,
            packer=packer,
        )
        self.ready = False
        self.stopped = False
        self.error: BaseException | None = None
        self._asyncio_stopped: asyncio.Future[None] | None = None

    def start(
        self,
        *,
        run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
        run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object] | None = None,
        host_uses_signal_set_wakeup_fd: bool = False,
        on_ready: Callable[[GuestKernel], None] | None = None,
        on_stopped: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Start the guest run; the kernel listens once the host's loop has run a little
        (``on_ready(self)`` then), and ``on_stopped(error)`` is called when it has ended
        (``error`` None for a clean stop). The first three arguments are
        :func:`trio.lowlevel.start_guest_run`'s."""

        def ready() -> None:
            self.ready = True
            if on_ready is not None:
                on_ready(self)

        def done(result: outcome.Outcome[None]) -> None:
            self.stopped = True
            if isinstance(result, outcome.Error):
                self.error = result.error
                if self.ready:
                    log.error("embedded kernel %r failed", self.name, exc_info=result.error)
            if on_stopped is not None:
                on_stopped(self.error)

        options: dict[str, Any] = {}
        if run_sync_soon_not_threadsafe is not None:
            options["run_sync_soon_not_threadsafe"] = run_sync_soon_not_threadsafe
        trio.lowlevel.start_guest_run(
            self._serve,
            ready,
            run_sync_soon_threadsafe=run_sync_soon_threadsafe,
            done_callback=done,
            host_uses_signal_set_wakeup_fd=host_uses_signal_set_wakeup_fd,
            **options,
        )

    def stop(self) -> None:
        """Ask the kernel to stop (from any thread); it closes its sockets and removes its
        connection file on the loop's thread soon after. Idempotent."""
        self._request_stop()

    async def aclose(self) -> None:
        """Stop, and wait until the kernel has (asyncio hosts)."""
        self.stop()
        if self._asyncio_stopped is None:
            raise RuntimeError("aclose() is for kernels started by start_kernel_async")
        await asyncio.shield(self._asyncio_stopped)

    async def __aenter__(self) -> GuestKernel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "running" if self.ready else "starting"
        return f"<GuestKernel {self.name!r} {state}, {self.connection_file}>"


def start_guest_kernel(
    kernel: BaseKernel,
    name: str = "embedded",
    *,
    run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
    run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object] | None = None,
    host_uses_signal_set_wakeup_fd: bool = False,
    on_ready: Callable[[GuestKernel], None] | None = None,
    on_stopped: Callable[[BaseException | None], None] | None = None,
    allow_shutdown: bool = False,
    connection_file: str | os.PathLike[str] | None = None,
    transport: Transport = "tcp",
    ip: str = "127.0.0.1",
    packer: str = "json",
) -> GuestKernel:
    """Serve ``kernel`` on the calling thread's event loop, as a Trio guest.

    Returns at once: the kernel binds its sockets and writes its connection file once the
    loop runs, then calls ``on_ready(handle)``; errors at start (a port taken) come to
    ``on_stopped(error)``. ``run_sync_soon_threadsafe`` (and the optional
    ``run_sync_soon_not_threadsafe`` and ``host_uses_signal_set_wakeup_fd``) are
    :func:`trio.lowlevel.start_guest_run`'s: how to make the loop call a function soon.
    The other arguments are :func:`~kernelsdk.embed.start_kernel`'s; cells run on the loop's
    thread (see the module's notes on interrupts).

    Raises:
        ValueError: a bad ``name``.
    """
    handle = GuestKernel(
        kernel,
        name,
        allow_shutdown=allow_shutdown,
        connection_file=connection_file,
        transport=transport,
        ip=ip,
        packer=packer,
    )
    handle.start(
        run_sync_soon_threadsafe=run_sync_soon_threadsafe,
        run_sync_soon_not_threadsafe=run_sync_soon_not_threadsafe,
        host_uses_signal_set_wakeup_fd=host_uses_signal_set_wakeup_fd,
        on_ready=on_ready,
        on_stopped=on_stopped,
    )
    return handle


async def start_kernel_async(
    kernel: BaseKernel,
    name: str = "embedded",
    *,
    allow_shutdown: bool = False,
    connection_file: str | os.PathLike[str] | None = None,
    transport: Transport = "tcp",
    ip: str = "127.0.0.1",
    packer: str = "json",
) -> GuestKernel:
    """Serve ``kernel`` on the running asyncio loop (no thread); return once it listens.

    ``async with await start_kernel_async(kernel, "name") as handle:`` stops it at the end of
    the block; else ``await handle.aclose()``. The arguments are
    :func:`~kernelsdk.embed.start_kernel`'s; cells run on the loop's thread.

    Raises:
        ValueError: a bad ``name``.
        TransportError: a socket cannot be bound.
        ConfigError: the connection file cannot be written.
    """
    loop = asyncio.get_running_loop()
    listening: asyncio.Future[None] = loop.create_future()
    stopped: asyncio.Future[None] = loop.create_future()

    def on_ready(_: GuestKernel) -> None:
        if not listening.done():
            listening.set_result(None)

    def on_stopped(error: BaseException | None) -> None:
        if not listening.done():
            listening.set_exception(
                error or RuntimeError(f"embedded kernel {name!r} stopped before it listened")
            )
        if not stopped.done():
            stopped.set_result(None)

    handle = GuestKernel(
        kernel,
        name,
        allow_shutdown=allow_shutdown,
        connection_file=connection_file,
        transport=transport,
        ip=ip,
        packer=packer,
    )
    handle._asyncio_stopped = stopped
    handle.start(
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        # asyncio owns the wakeup fd (for its signal handlers): Trio must leave it alone.
        host_uses_signal_set_wakeup_fd=True,
        on_ready=on_ready,
        on_stopped=on_stopped,
    )
    try:
        await asyncio.shield(listening)
    except asyncio.CancelledError:
        handle.stop()
        raise
    return handle
