"""The kernel of a language written in C: every request goes to a callback the host registered.

The callbacks run one at a time (a C interpreter is single-threaded): a cell through
``ctx.run_blocking`` -- a worker thread, or the host's own thread at a safe point -- and
completion, inspection and is_complete in a worker thread. What they produce arrives through
the request functions (``ksdk_stream``, ``ksdk_result``...) into a :class:`Request`, which
this kernel turns into the reply once the callback has returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from ..._exceptions import ExecutionError
from ..._kernel import BaseKernel, Completions, IsComplete
from ._requests import Request, RequestTable

if TYPE_CHECKING:
    from ..._context import ExecuteContext, MimeBundle

_STATUSES: Final = {0: "complete", 1: "incomplete", 2: "invalid", 3: "unknown"}


@attrs.define
class Callback:
    """A C function pointer (a cffi cdata of its type) and the user pointer passed back."""

    fn: Any
    user: Any

    def __call__(self, *args: Any) -> int:
        return int(self.fn(*args, self.user) or 0)


@attrs.define
class Callbacks:
    execute: Callback | None = None
    complete: Callback | None = None
    inspect: Callback | None = None
    is_complete: Callback | None = None
    interrupt: Callback | None = None


def byte_offset(code: str, cursor_pos: int) -> int:
    """A cursor in code points (Jupyter's) as a byte offset in the UTF-8 code (C's)."""
    return len(code[: max(0, cursor_pos)].encode())


def code_points(encoded: bytes, offset: int) -> int:
    offset = min(max(0, offset), len(encoded))
    return len(encoded[:offset].decode(errors="ignore"))


def word_start(encoded: bytes, cursor: int) -> int:
    """The start of the run of non-blank bytes that ends at ``cursor``."""
    start = cursor
    while start > 0 and encoded[start - 1 : start] not in (b" ", b"\t", b"\n", b"\r"):
        start -= 1
    return start


class NativeKernel(BaseKernel):
    """Serves the callbacks of a C host (kind "native" of ``ksdk_create``)."""

    interrupt_mode = "message"

    def __init__(
        self, callbacks: Callbacks, info: dict[str, Any], banner: str, requests: RequestTable
    ) -> None:
        super().__init__()
        self._callbacks = callbacks
        self._info = info
        self._banner = banner
        self._requests = requests
        # One callback at a time, held in the thread that calls C: an interrupted cell whose
        # thread was abandoned still holds it, so the next call waits for the C code to return.
        self._native = threading.Lock()
        self._running: Request | None = None

    def kernel_info(self) -> dict[str, Any]:
        content = super().kernel_info()
        content["implementation"] = self._info["implementation"]
        content["implementation_version"] = self._info["implementation_version"]
        content["language_info"] = dict(self._info["language_info"])
        content["banner"] = self._banner
        return content

    def _call(self, request: Request, callback: Callback, *args: Any) -> int:
        with self._native:
            if not request.active:  # ended (interrupted) while waiting for the previous call
                return 0
            self._running = request
            try:
                return callback(request.id, *args)
            finally:
                self._running = None

    async def _in_worker(self, fn: Callable[..., int], *args: Any) -> int:
        return await trio.to_thread.run_sync(fn, *args)

    async def do_execute(self, code: str, ctx: ExecuteContext) -> MimeBundle | str | None:
        callback = self._callbacks.execute
        if callback is None:
            raise ExecutionError(
                "NotImplementedError",
                "this kernel registered no execute callback (ksdk_on_execute)",
            )
        request = self._requests.open("execute", ctx)
        try:
            status = await ctx.run_blocking(self._call, request, callback, code.encode())
        finally:
            self._requests.close(request)
        if request.error is not None:
            raise ExecutionError(*request.error)
        if status != 0:
            raise ExecutionError("Error", f"the cell failed (its callback returned {status})")
        return request.bundle or None

    async def do_complete(self, code: str, cursor_pos: int) -> Completions:
        callback = self._callbacks.complete
        if callback is None:
            return Completions([], cursor_pos, cursor_pos)
        encoded = code.encode()
        cursor = byte_offset(code, cursor_pos)
        request = self._requests.open("complete")
        try:
            await self._in_worker(self._call, request, callback, encoded, cursor)
        finally:
            self._requests.close(request)
        start, end = request.match_range or (word_start(encoded, cursor), cursor)
        return Completions(
            list(request.matches), code_points(encoded, start), code_points(encoded, end)
        )

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int) -> MimeBundle | None:
        callback = self._callbacks.inspect
        if callback is None:
            return None
        request = self._requests.open("inspect")
        try:
            await self._in_worker(
                self._call,
                request,
                callback,
                code.encode(),
                byte_offset(code, cursor_pos),
                detail_level,
            )
        finally:
            self._requests.close(request)
        return request.bundle or None

    async def do_is_complete(self, code: str) -> IsComplete:
        callback = self._callbacks.is_complete
        if callback is None:
            return IsComplete("unknown")
        request = self._requests.open("is_complete")
        try:
            status = await self._in_worker(self._call, request, callback, code.encode())
        finally:
            self._requests.close(request)
        verdict = _STATUSES.get(status, "unknown")
        return IsComplete(verdict, request.indent if verdict == "incomplete" else "")  # type: ignore[arg-type]

    def do_interrupt(self) -> None:
        running = self._running
        if running is not None:
            running.interrupted = True
        if self._callbacks.interrupt is not None:
            self._callbacks.interrupt.fn(self._callbacks.interrupt.user)
