"""Running a kernel process: connection file in, Trio event loop, sockets, signals, exit.

This is what ``python -m kernelsdk run KERNEL -f CONNECTION_FILE`` calls.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Final, TextIO

import trio

from ._captured_output import CapturedOutput
from ._clock import UtcClock
from ._connection import ConnectionInfo
from ._exceptions import RemoteProtocolError, TransportError
from ._executor import Executor
from ._handlers import OnShutdown
from ._kernel import BaseKernel
from ._packers import get_packer
from ._parent import ParentWatch
from ._protocol import KernelProtocol
from ._registration import ACK_TIMEOUT, Registration
from ._server import KernelServer
from ._session import Session
from ._zmq_transport import ZmqTransport

log = logging.getLogger("kernelsdk")

#: At most how long an orphaned kernel's ``do_shutdown`` may take before it exits anyway.
ORPHAN_SHUTDOWN_GRACE: Final = 5.0

#: Set (to anything but "" or "0") to silence the warning about unencrypted tcp.
QUIET_PLAINTEXT_ENV: Final = "KERNELSDK_NO_ENCRYPTION_WARNING"

#: ipykernel's words (7.3+), so that people who searched for one find the other.
PLAINTEXT_WARNING: Final = (
    "Kernel is running over TCP without encryption. All communication (including code and "
    "outputs) is sent in plain text and is susceptible to eavesdropping. Use IPC transport or "
    "launch with kernel manager-provisioned CurveZMQ keys to enable transport encryption "
    f"(jupyter_client's transport_encryption; {QUIET_PLAINTEXT_ENV}=1 silences this)."
)


def _warn_if_plaintext(info: ConnectionInfo, warn_unencrypted: bool) -> None:
    if not info.plaintext_on_network:
        log.info("transport %s%s", info.transport, ", CurveZMQ" if info.encrypted else "")
        return
    if warn_unencrypted and os.environ.get(QUIET_PLAINTEXT_ENV, "") in ("", "0"):
        log.warning(PLAINTEXT_WARNING)


def _load_or_create(path: str) -> tuple[ConnectionInfo, bool]:
    """Read the connection file; a missing one is created (ports chosen, a fresh key)."""
    if os.path.exists(path):
        return ConnectionInfo.from_file(path), False
    return ConnectionInfo(key=str(uuid.uuid4())), True


@asynccontextmanager
async def open_kernel(
    kernel: BaseKernel,
    info: ConnectionInfo,
    *,
    packer: str = "json",
    connection_file: str | None = None,
    warn_unencrypted: bool = True,
    executor: Executor | None = None,
    on_shutdown: OnShutdown = "stop",
    native_output: CapturedOutput | None = None,
) -> AsyncIterator[KernelServer]:
    """Bind a kernel's sockets and serve it in the background.

    The server is running inside the ``async with`` block; leaving it stops the kernel.
    Several kernels can be opened in one process. With ``connection_file``, the ports actually
    bound are written there (ports of 0 in ``info`` are chosen by the kernel).

    With a registration file (``info.registers``, JEP 66) the kernel reports its ports to the
    registrar before it serves, and the connection file written is a classic one.

    With CurveZMQ keys in ``info`` (JEP 145) every socket is encrypted. Without them on tcp,
    a warning is logged (as ipykernel does) unless ``warn_unencrypted`` is false or the
    environment variable ``KERNELSDK_NO_ENCRYPTION_WARNING`` is set.

    ``executor`` says where cells run (see :class:`~kernelsdk.Executor`; by default in the
    kernel's Trio task, blocking work in worker threads). With ``on_shutdown="detach"`` (a
    kernel embedded in a program that keeps running) a shutdown request ends only the client's
    session: it is answered, ``do_shutdown`` is not called, the kernel keeps serving, and a
    restart request is refused with an error reply (see :meth:`KernelServer.wait_detached`).

    ``native_output`` (internal): the process's captured descriptors, installed by
    :func:`run_kernel` for a kernel that asks (``capture_native_output``). Descriptors belong
    to the whole process, so a kernel opened here never captures them on its own.

    Raises:
        TransportError: a socket cannot be bound, or the registrar did not acknowledge.
    """
    transport = ZmqTransport.bind(info)
    _warn_if_plaintext(info, warn_unencrypted)
    session = Session(info.key.encode(), info.signature_scheme, get_packer(packer))
    protocol = KernelProtocol(
        session,
        session_id=uuid.uuid4().hex,
        clock=UtcClock(),
        subshells=kernel.concurrent_subshells,
    )
    server = KernelServer(
        kernel,
        transport,
        protocol,
        executor=executor,
        on_shutdown=on_shutdown,
        native_output=native_output,
    )
    try:
        if info.registers:
            # Before serving: what the client sends after the acknowledgement waits in the
            # bound sockets, and a failure here is a plain exception, not a nursery's group.
            await _register(transport, session)
        if connection_file is not None:
            transport.info.connection_file().write(connection_file)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        transport.close()


async def _register(transport: ZmqTransport, session: Session) -> None:
    """Report the bound ports to the registrar and check its acknowledgement (JEP 66)."""
    info = transport.info
    registration = Registration(info.kernel_id, info.ports)
    answer = await transport.register(registration.to_frames(session), ACK_TIMEOUT)
    where = info.registration_endpoint
    if answer is None:
        raise TransportError(f"the registrar at {where} did not acknowledge within {ACK_TIMEOUT} s")
    try:
        Registration.check_ack(session, answer)
    except RemoteProtocolError as exc:
        raise TransportError(f"the registrar at {where} answered badly: {exc}") from None
    log.info("registered ports %s with %s", info.ports, where)


async def _serve(
    kernel_factory: Callable[[], BaseKernel],
    info: ConnectionInfo,
    path: str,
    packer: str,
    created: bool,
    parent: ParentWatch | None,
    capture_output: bool | None,
) -> None:
    kernel = kernel_factory()
    write_back = created or info.registers or 0 in info.ports.values()
    with native_output(kernel, capture_output) as captured:
        async with open_kernel(
            kernel,
            info,
            packer=packer,
            connection_file=path if write_back else None,
            native_output=captured,
        ) as server:
            log.info("%s ready, connection file %s", type(kernel).__name__, path)
            await _serve_until_stopped(server, parent)


@contextmanager
def native_output(kernel: BaseKernel, capture: bool | None) -> Iterator[CapturedOutput | None]:
    """Descriptors 1 and 2 captured for the Trio run, if the kernel (or ``capture``) asks.

    Only for a process the kernel owns: descriptors belong to the whole process.
    """
    if not (kernel.capture_native_output if capture is None else capture):
        yield None
        return
    captured = CapturedOutput()
    captured.install()
    try:
        captured.bind(trio.lowlevel.current_trio_token())
        yield captured
    finally:
        captured.uninstall()


async def _serve_until_stopped(server: KernelServer, parent: ParentWatch | None) -> None:
    """Forward SIGINT as interrupts, and stop when orphaned, until a shutdown is answered."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def forward_interrupts() -> None:
                async for _ in signals:
                    server.interrupt()

            nursery.start_soon(forward_interrupts)
            if parent is not None:
                nursery.start_soon(_stop_when_orphaned, parent, server, nursery.cancel_scope)
            await server.wait_stopped()
            nursery.cancel_scope.cancel()
    # Leaving open_kernel then stops the server and closes the sockets, releasing the ports.


async def _stop_when_orphaned(
    parent: ParentWatch, server: KernelServer, serving: trio.CancelScope
) -> None:
    """Once the frontend is gone, shut down as a shutdown request would: stop the running
    cell (a native one returns only through do_interrupt), let the kernel clean up, stop."""
    await parent.wait_for_exit()
    log.warning("%s exited: shutting down", parent.description)
    server.interrupt()
    with trio.move_on_after(ORPHAN_SHUTDOWN_GRACE):
        await server.kernel.do_shutdown(False)
    serving.cancel()


def run_kernel(
    kernel_factory: Callable[[], BaseKernel],
    connection_file: str,
    *,
    packer: str = "json",
    log_level: str = "WARNING",
    watch_parent: bool = False,
    capture_output: bool | None = None,
) -> None:
    """Serve a kernel on the sockets described by ``connection_file`` until shutdown.

    ``kernel_factory`` is the kernel class (or any callable returning a kernel instance),
    called once the process is set up.

    SIGINT never kills the process: while idle it is ignored, while code runs it interrupts it.

    With ``watch_parent`` (what ``python -m kernelsdk run`` passes), the kernel also shuts down
    when its frontend dies: the process named by ``JPY_PARENT_PID`` if that is an ancestor,
    else the parent. Off by default: a process that serves a kernel of its own is the one to
    decide when it ends.

    ``capture_output`` overrides the kernel's ``capture_native_output``: whether what is
    written to descriptors 1 and 2 while a cell runs becomes the cell's output.
    """
    # Ignored from the first moment: the client's interrupt must not kill a starting kernel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Decided first, while the parent is surely alive: a later look could find it gone.
    parent = ParentWatch.from_environment() if watch_parent else None
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.WARNING),
        stream=log_stream(),
        format="[%(name)s %(levelname)s] %(message)s",
    )
    info, created = _load_or_create(connection_file)
    trio.run(_serve, kernel_factory, info, connection_file, packer, created, parent, capture_output)


def log_stream() -> TextIO:
    """Where a kernel process logs: its stderr as it is now. A duplicate of the descriptor, so
    that when descriptor 2 is captured later the log still goes there and never loops back
    into a cell's output."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr: log where Python would
        return sys.stderr
    return os.fdopen(os.dup(fd), "w", buffering=1, errors="backslashreplace")
