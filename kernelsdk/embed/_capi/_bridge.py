"""The Python side of every function of kernelsdk.h, installed into the embedded interpreter.

The library's init code calls :func:`install` with the cffi module's ``ffi`` and ``lib``; each
``_ksdk_py_*`` function declared ``extern "Python"`` in :mod:`._build` is defined here with
``ffi.def_extern``. Every one is guarded: an :class:`~._errors.ApiError` becomes its code
plus ``ksdk_last_error``'s message, and any other exception ``KSDK_EPYTHON`` with the
exception's text, so nothing raised here ever reaches the host (cffi would print it and return
a default value).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._errors import (
    EINTERRUPTED,
    EPYTHON,
    EREQUEST,
    ESTART,
    ESTDIN,
    OK,
    ApiError,
    bad_argument,
    wrong_state,
)
from ._host_data import Exposed, check_shape, element_format, make_view, nbytes
from ._kernels import HostKernel, KernelTable
from ._native_kernel import Callback, NativeKernel
from ._requests import RequestTable

if TYPE_CHECKING:
    from ..._kernel import BaseKernel

log = logging.getLogger("kernelsdk.embed")

F = TypeVar("F", bound=Callable[..., Any])

#: The fast path's states (capi.c's KSDK_STATE_*).
STATE_NONE: Final = 0
STATE_SERVING: Final = 1
STATE_MPI: Final = 2
#: _ksdk_py_lifecycle's "what".
START, POLL, SERVE, STOP, SHUTDOWN_REQUESTED = range(5)
#: _ksdk_py_output's "what".
OUT_STREAM, OUT_DISPLAY, OUT_RESULT, OUT_ERROR, OUT_MATCH, OUT_INDENT = range(6)
#: ksdk_expose_*'s flags.
WRITABLE: Final = 1
COLUMN_MAJOR: Final = 2
#: _ksdk_py_request_int's "what".
REQ_INTERRUPTED, REQ_RANGE = range(2)
#: ksdk_on_*'s callbacks: which, and their C types.
_CALLBACKS: Final = (
    ("execute", "ksdk_execute_fn"),
    ("complete", "ksdk_complete_fn"),
    ("inspect", "ksdk_inspect_fn"),
    ("is_complete", "ksdk_is_complete_fn"),
    ("interrupt", "ksdk_interrupt_fn"),
)
_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Bridge:
    """What the C functions do, on the kernels and requests of this process."""

    def __init__(self, ffi: Any, lib: Any) -> None:
        self.ffi = ffi
        self.lib = lib
        self.kernels = KernelTable(int(lib._ksdk_max_handles()))
        self.requests = RequestTable()

    # -- arguments -----------------------------------------------------------------------

    def text(self, pointer: Any, what: str, *, optional: bool = False) -> str:
        if pointer == self.ffi.NULL:
            if optional:
                return ""
            raise bad_argument(f"{what} is NULL")
        try:
            value: str = self.ffi.string(pointer).decode()
        except UnicodeDecodeError as exc:
            raise bad_argument(f"{what} is not UTF-8 ({exc})") from None
        return value

    # -- kernels -------------------------------------------------------------------------

    def create(self, name_p: Any, kind_p: Any) -> int:
        name = self.text(name_p, "name")
        kind = self.text(kind_p, "kind")
        if not _NAME.fullmatch(name):
            raise bad_argument(f"a kernel's name is 1 to 64 of A-Z a-z 0-9 . _ -, not {name!r}")
        if kind not in ("python", "native"):
            raise bad_argument(f"kind is 'python' or 'native', not {kind!r}")
        return self.kernels.create(name, kind).id  # type: ignore[arg-type]

    def set_option(self, k: int, key_p: Any, value_p: Any) -> int:
        kernel = self.kernels.get(k)
        kernel.set_option(self.text(key_p, "key"), self.text(value_p, "value"))
        return OK

    def on(self, k: int, which: int, fn: Any, user: Any) -> int:
        kernel = self.kernels.get(k, "created")
        if kernel.kind != "native":
            raise bad_argument(f"kernel {k} is a python kernel: callbacks are for native kernels")
        name, ctype = _CALLBACKS[which]
        callback = None if fn == self.ffi.NULL else Callback(self.ffi.cast(ctype, fn), user)
        setattr(kernel.callbacks, name, callback)
        return OK

    def expose(
        self,
        k: int,
        name_p: Any,
        data: Any,
        dtype_p: Any,
        ndim: int,
        shape_p: Any,
        flags: int,
        scalar: int,
    ) -> int:
        kernel = self.kernels.get(k, "created", "started")
        if kernel.kind != "python":
            raise bad_argument(f"kernel {k} is native: host data is for python kernels")
        name = self.text(name_p, "name")
        if not _IDENTIFIER.fullmatch(name):
            raise bad_argument(f"{name!r} is not a Python identifier")
        if data == self.ffi.NULL:
            raise bad_argument(f"the data of {name} is NULL")
        fmt = element_format(self.text(dtype_p, "dtype"))
        if scalar:
            shape: tuple[int, ...] = ()
        else:
            if ndim > 0 and shape_p == self.ffi.NULL:
                raise bad_argument(f"the shape of {name} is NULL")
            shape = check_shape(ndim, [int(shape_p[i]) for i in range(max(ndim, 0))])
        buffer = self.ffi.buffer(self.ffi.cast("char *", data), nbytes(fmt, shape))
        writable = bool(flags & WRITABLE)
        view = make_view(buffer, fmt, shape, writable, bool(flags & COLUMN_MAJOR))
        namespace = getattr(kernel.kernel, "namespace", None)
        kernel.data.add(Exposed(name, view, writable, bool(scalar), fmt), namespace)
        return OK

    def lifecycle(self, k: int, what: int, timeout: float) -> int:
        if what == START:
            return self.start(self.kernels.get(k, "created"))
        if what == POLL:
            return self.poll(self.kernels.get(k, "started"), timeout)
        if what == SERVE:
            kernel = self.kernels.get(k, "started")
            if kernel.flag("mpi"):
                raise wrong_state("ksdk_serve is not available with mpi: call ksdk_poll each step")
            kernel.handle.serve()
            return OK
        if what == STOP:
            return self.stop(self.kernels.get(k, "created", "started"))
        if what == SHUTDOWN_REQUESTED:
            kernel = self.kernels.get(k, "started", "stopped")
            requested = getattr(kernel.handle, "shutdown_requested", False)
            return int(kernel.orphaned or bool(requested))
        raise bad_argument(f"no lifecycle operation {what}")

    def start(self, kernel: HostKernel) -> int:
        o = kernel.options
        mpi = kernel.flag("mpi")
        if mpi and ({"transport", "ip"} & o.keys() or kernel.flag("allow_shutdown")):
            raise bad_argument(
                "with mpi, the options transport, ip and allow_shutdown are not supported"
            )
        served = self._make_kernel(kernel)
        try:
            if mpi:
                from .._mpi import start_mpi_kernel

                handle: Any = start_mpi_kernel(
                    served,
                    kernel.name,
                    connection_file=o.get("connection_file"),
                    packer=o.get("packer", "json"),
                )
            else:
                handle = self._start_thread(kernel, served)
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(ESTART, f"kernel {kernel.name} could not start: {exc}") from exc
        kernel.kernel, kernel.handle, kernel.state = served, handle, "started"
        if kernel.flag("watch_parent"):
            self._watch_parent(kernel)
        if mpi:
            # A poll is collective: every rank takes part in a broadcast, which C makes itself
            # with the host's MPI_Bcast (entering Python only for a cell), where it can.
            fast = handle.broadcast_handles()
            if fast is not None and self.lib._ksdk_set_mpi(kernel.id, *fast, int(handle.rank == 0)):
                if handle.rank == 0:
                    handle.executor.on_pending_changed = functools.partial(
                        self._pending_changed, kernel.id
                    )
                    if handle.has_pending:
                        self.lib._ksdk_set_pending(kernel.id, 1)
                self.lib._ksdk_set_state(kernel.id, STATE_MPI)
            return OK
        if kernel.flag("safe_points"):
            handle.on_pending_changed = functools.partial(self._pending_changed, kernel.id)
            if handle.has_pending:
                self.lib._ksdk_set_pending(kernel.id, 1)
        self.lib._ksdk_set_state(kernel.id, STATE_SERVING)
        return OK

    def _start_thread(self, kernel: HostKernel, served: BaseKernel) -> Any:
        from ..._connection import ConnectionInfo
        from .._thread import EmbeddedKernel, start_kernel

        o = kernel.options
        safe_points, allow_shutdown = kernel.flag("safe_points"), kernel.flag("allow_shutdown")
        path = o.get("connection_file")
        if path and os.path.exists(path):
            # A frontend's file (a kernelspec's -f {connection_file}): its ports and key.
            info = ConnectionInfo.from_file(path)
            if "info" in inspect.signature(start_kernel).parameters:
                return start_kernel(
                    served,
                    kernel.name,
                    info=info,  # type: ignore[call-arg,unused-ignore]
                    safe_points=safe_points,
                    allow_shutdown=allow_shutdown,
                    connection_file=path,
                    packer=o.get("packer", "json"),
                )
            # Until start_kernel takes the info to listen on: the handle's, before it starts.
            handle = EmbeddedKernel(
                served,
                kernel.name,
                safe_points=safe_points,
                allow_shutdown=allow_shutdown,
                connection_file=path,
                packer=o.get("packer", "json"),
            )
            handle.info = info
            handle.start()
            return handle
        kwargs: dict[str, Any] = {k: o[k] for k in ("connection_file", "packer", "ip") if k in o}
        transport = o.get("transport", "tcp")
        if transport not in ("tcp", "ipc"):
            raise bad_argument(f"transport is 'tcp' or 'ipc', not {transport!r}")
        return start_kernel(
            served,
            kernel.name,
            safe_points=safe_points,
            allow_shutdown=allow_shutdown,
            transport="ipc" if transport == "ipc" else "tcp",
            **kwargs,
        )

    def _watch_parent(self, kernel: HostKernel) -> None:
        """Stop the kernel when the frontend that launched this program dies (as ``python -m
        kernelsdk run`` does): ksdk_serve returns and ksdk_shutdown_requested says 1."""
        import threading

        import trio

        from ..._parent import ParentWatch

        watch = ParentWatch.from_environment()
        if watch is None:
            return

        def wait() -> None:
            trio.run(watch.wait_for_exit)
            log.warning("%s exited: stopping kernel %s", watch.description, kernel.name)
            kernel.orphaned = True
            kernel.handle.stop()

        threading.Thread(target=wait, name=f"kernelsdk-{kernel.name}-parent", daemon=True).start()

    def _pending_changed(self, k: int, pending: bool = True) -> None:
        # Only "something may wait" is stored; poll clears the flag itself before it looks,
        # so the order in which notifications arrive cannot lose a wake-up.
        if pending:
            self.lib._ksdk_set_pending(k, 1)

    def _make_kernel(self, kernel: HostKernel) -> BaseKernel:
        if kernel.kind == "native":
            info, banner = kernel.language()
            return NativeKernel(kernel.callbacks, info, banner, self.requests)
        from ._python_kernel import host_python_kernel

        served = host_python_kernel(kernel.data)
        kernel.data.publish_to(served.namespace)
        return served

    def poll(self, kernel: HostKernel, timeout: float) -> int:
        if kernel.flag("mpi"):
            handle = kernel.handle
            self.lib._ksdk_set_pending(kernel.id, 0)
            try:
                mpi_ran: int = handle.poll(max(timeout, 0.0))
            finally:
                self.lib._ksdk_set_mpi_claimed(kernel.id, handle.claimed)
                if handle.rank == 0 and handle.has_pending:
                    self.lib._ksdk_set_pending(kernel.id, 1)
            return mpi_ran
        if not kernel.flag("safe_points"):
            # Cells run in the kernel's threads: nothing to do here but wait if asked to.
            if timeout > 0:
                time.sleep(timeout)
            return 0
        self.lib._ksdk_set_pending(kernel.id, 0)
        try:
            ran: int = kernel.handle.poll(max(timeout, 0.0))
        finally:
            if kernel.handle.has_pending:
                self.lib._ksdk_set_pending(kernel.id, 1)
        return ran

    def mpi_poll(self, k: int, count: int) -> int:
        """The rest of a collective poll whose broadcast C made on a rank other than 0, and
        which said that rank 0 has claimed ``count`` cells."""
        kernel = self.kernels.get(k, "started")
        handle = kernel.handle
        try:
            ran: int = handle.poll_received(int(count))
        finally:
            self.lib._ksdk_set_mpi_claimed(k, handle.claimed)
        return ran

    def stop(self, kernel: HostKernel) -> int:
        self.lib._ksdk_set_state(kernel.id, STATE_NONE)
        if kernel.state == "started":
            kernel.state = "stopped"
            kernel.handle.stop()
        kernel.state = "stopped"
        return OK

    def connection_file(self, k: int) -> Any:
        kernel = self.kernels.get(k, "started", "stopped")
        if kernel.connection_file is None:
            if kernel.handle is None or not kernel.handle.connection_file:
                raise wrong_state(f"kernel {k} has no connection file (on this MPI rank)")
            path = str(kernel.handle.connection_file)
            kernel.connection_file = self.ffi.new("char[]", path.encode())
        return kernel.connection_file

    # -- requests ------------------------------------------------------------------------

    def output(self, req: int, what: int, a: Any, b: Any, c: Any) -> int:
        if what == OUT_STREAM:
            request = self.requests.get(req, "execute")
            name = self.text(a, "name")
            if name not in ("stdout", "stderr"):
                raise bad_argument(f"a stream is 'stdout' or 'stderr', not {name!r}")
            assert request.ctx is not None
            request.ctx.stream(name, self.text(b, "text"))
        elif what == OUT_DISPLAY:
            request = self.requests.get(req, "execute")
            mimetype = self.text(a, "mimetype")
            assert request.ctx is not None
            request.ctx.display({mimetype: self._mime_value(mimetype, self.text(b, "data"))})
        elif what == OUT_RESULT:
            request = self.requests.get(req, "execute", "inspect")
            mimetype = self.text(a, "mimetype")
            request.bundle[mimetype] = self._mime_value(mimetype, self.text(b, "data"))
        elif what == OUT_ERROR:
            request = self.requests.get(req, "execute")
            ename = self.text(a, "ename")
            evalue = self.text(b, "evalue", optional=True)
            traceback = self.text(c, "traceback", optional=True)
            lines = traceback.splitlines() if traceback else [f"{ename}: {evalue}"]
            request.error = (ename, evalue, lines)
        elif what == OUT_MATCH:
            self.requests.get(req, "complete").matches.append(self.text(a, "match"))
        elif what == OUT_INDENT:
            self.requests.get(req, "is_complete").indent = self.text(a, "indent")
        else:
            raise bad_argument(f"no output operation {what}")
        return OK

    @staticmethod
    def _mime_value(mimetype: str, data: str) -> Any:
        if mimetype == "application/json" or mimetype.endswith("+json"):
            try:
                return json.loads(data)
            except ValueError as exc:
                raise bad_argument(f"the {mimetype} data is not JSON: {exc}") from None
        return data

    def request_int(self, req: int, what: int, a: int, b: int) -> int:
        if what == REQ_INTERRUPTED:
            return int(self.requests.get(req).interrupted)
        if what == REQ_RANGE:
            request = self.requests.get(req, "complete")
            if not 0 <= a <= b:
                raise bad_argument(f"a completion range needs 0 <= start <= end, not {a}, {b}")
            request.match_range = (a, b)
            return OK
        raise bad_argument(f"no request operation {what}")

    def input(self, req: int, prompt_p: Any, password: int, buf: Any, buflen: int) -> int:
        from ..._exceptions import InputInterrupted, StdinNotAllowedError

        request = self.requests.get(req, "execute")
        prompt = self.text(prompt_p, "prompt", optional=True)
        if buf == self.ffi.NULL or buflen < 1:
            raise bad_argument("ksdk_input needs a buffer of at least one byte")
        assert request.ctx is not None
        try:
            line = request.ctx.input_from_thread(prompt, password=bool(password))
        except InputInterrupted:
            raise ApiError(
                EINTERRUPTED, "the request was interrupted while waiting for input"
            ) from None
        except StdinNotAllowedError as exc:
            raise ApiError(ESTDIN, str(exc)) from None
        except EOFError:
            raise ApiError(ESTDIN, "the frontend sent end of input") from None
        if not request.active:
            raise ApiError(EREQUEST, f"request {req} ended while waiting for input")
        data = line.encode()
        n = min(len(data), buflen - 1)
        self.ffi.memmove(buf, data[:n], n)
        buf[n] = b"\0"
        return len(data)


def install(ffi: Any, lib: Any) -> Bridge:
    """Define every ``extern "Python"`` function of the library on this bridge."""
    bridge = Bridge(ffi, lib)

    def report(exc: BaseException) -> int:
        if isinstance(exc, ApiError):
            message, code = exc.message, exc.code
        elif isinstance(exc, KeyboardInterrupt):
            # An interrupt of a cell running on the host thread (safe points) lands in the
            # first Python code that thread runs: here, inside a request function.
            message, code = "the request was interrupted", EINTERRUPTED
        else:
            log.exception("kernelsdk's C API failed")
            message, code = f"kernelsdk failed: {type(exc).__name__}: {exc}", EPYTHON
        lib._ksdk_set_error(message.encode(errors="replace")[:2000])
        return code

    def guarded(fn: F, name: str, *, pointer: bool = False) -> None:
        @functools.wraps(fn)
        def call(*args: Any) -> Any:
            try:
                return fn(*args)
            except BaseException as exc:  # nothing may reach the host
                code = report(exc)
                return ffi.NULL if pointer else code

        ffi.def_extern(name=name, error=None if pointer else EPYTHON)(call)

    guarded(lambda: 1, "_ksdk_py_ready")
    guarded(bridge.create, "_ksdk_py_create")
    guarded(bridge.set_option, "_ksdk_py_set_option")
    guarded(bridge.on, "_ksdk_py_on")
    guarded(bridge.expose, "_ksdk_py_expose")
    guarded(bridge.lifecycle, "_ksdk_py_lifecycle")
    guarded(bridge.connection_file, "_ksdk_py_connection_file", pointer=True)
    guarded(bridge.output, "_ksdk_py_output")
    guarded(bridge.input, "_ksdk_py_input")
    guarded(bridge.request_int, "_ksdk_py_request_int")
    guarded(bridge.mpi_poll, "_ksdk_py_mpi_poll")
    return bridge
