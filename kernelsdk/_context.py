"""The context object through which kernel code sends output: never a patched ``sys.stdout``.

One :class:`ExecuteContext` exists per ``execute_request``. Every output it publishes carries
that request as parent, so output lands in the right notebook cell even when several kernels
share a process. Output methods are plain functions that may be called from the Trio thread or
from a worker thread started by :meth:`ExecuteContext.run_blocking` (they hop to the Trio thread
themselves). When the request is ``silent`` nothing they publish leaves the kernel (the protocol
core drops it); once the execution has ended (a worker thread an interrupt left running) they
publish nothing either, and it is logged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._events import Publisher
from ._exceptions import StdinNotAllowedError
from ._message import Message

if TYPE_CHECKING:
    from ._captured_output import CapturedOutput

T = TypeVar("T")
MimeBundle = dict[str, Any]
InputFn = Callable[[str, bool], Awaitable[str]]
#: Runs blocking work for :meth:`ExecuteContext.run_blocking` (an :class:`~kernelsdk.Executor`'s).
BlockingRunner = Callable[..., Awaitable[Any]]


class ExecuteContext:
    """Output, input and blocking-work helpers for one execution.

    Attributes:
        execution_count: the count of this execution (shown as ``In [n]``).
        silent: the frontend asked for no output; what output calls publish is dropped.
        store_history: this execution is recorded in history.
        allow_stdin: :meth:`input` may ask the frontend for input.
        request: the ``execute_request`` message (its ``metadata`` holds e.g. JupyterLab's
            ``cellId``).
    """

    def __init__(
        self,
        *,
        request: Message,
        execution_count: int,
        silent: bool,
        store_history: bool,
        allow_stdin: bool,
        publish: Publisher,
        request_input: InputFn,
        run_blocking: BlockingRunner | None = None,
        native_output: CapturedOutput | None = None,
    ) -> None:
        self.request = request
        self.execution_count = execution_count
        self.silent = silent
        self.store_history = store_history
        self.allow_stdin = allow_stdin
        self._publish_in_trio = publish
        self._request_input = request_input
        self._run_blocking = run_blocking
        self._native_output = native_output
        self._trio_thread = threading.get_ident()
        self._token = trio.lowlevel.current_trio_token()

    # -- output ---------------------------------------------------------------------------

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> None:
        """Publish any IOPub message as output of this execution, from any thread.

        Internal: what relays use (:mod:`kernelsdk.mpi` republishes other ranks' outputs);
        kernel code uses the helpers below. What a ``silent`` execution publishes is dropped
        by the protocol core, which owns that rule.
        """
        if threading.get_ident() == self._trio_thread:
            self._publish_in_trio(msg_type, content, metadata, buffers)
        else:
            trio.from_thread.run_sync(
                self._publish_in_trio, msg_type, content, metadata, buffers, trio_token=self._token
            )

    @property
    def captured_output(self) -> CapturedOutput | None:
        """Internal: the process's captured descriptors, when the kernel owns them (None
        otherwise); :class:`~kernelsdk.NativeRunner` orders its output with theirs."""
        return self._native_output

    def native_output(self, into: ExecuteContext | None = None) -> AbstractContextManager[None]:
        """While the block runs, what the process's captured descriptors 1 and 2 carry is
        this execution's ``stream`` output; leaving the block publishes all of it.

        Internal: the framework brackets each ``do_execute`` so; a relay that runs the cell
        under a context of its own passes it as ``into`` (:mod:`kernelsdk.mpi` labels rank
        0's output so). Does nothing when the descriptors are not captured.
        """
        if self._native_output is None:
            return contextlib.nullcontext()
        return self._native_output.into((into or self).stream)

    def stream(self, name: str, text: str) -> None:
        """Send text to ``stdout`` or ``stderr``."""
        if name not in ("stdout", "stderr"):
            raise ValueError(f"stream name must be 'stdout' or 'stderr', not {name!r}")
        if text:
            self.publish("stream", {"name": name, "text": text})

    def print(self, *values: object, sep: str = " ", end: str = "\n") -> None:
        """Like :func:`print`, to this cell's stdout."""
        self.stream("stdout", sep.join(map(str, values)) + end)

    def stdout(self, text: str) -> None:
        self.stream("stdout", text)

    def stderr(self, text: str) -> None:
        self.stream("stderr", text)

    def display(
        self,
        data: MimeBundle,
        metadata: dict[str, Any] | None = None,
        *,
        display_id: str | None = None,
        buffers: Sequence[bytes] = (),
    ) -> None:
        """Show a mime bundle (``{"text/html": ..., "text/plain": ...}``) in the output area.

        With ``display_id``, :meth:`update_display` can replace it later, wherever it is shown.
        """
        content: dict[str, Any] = {"data": data, "metadata": metadata or {}, "transient": {}}
        if display_id is not None:
            content["transient"] = {"display_id": display_id}
        self.publish("display_data", content, None, buffers)

    def update_display(
        self, display_id: str, data: MimeBundle, metadata: dict[str, Any] | None = None
    ) -> None:
        """Replace every output shown with ``display_id``."""
        self.publish(
            "update_display_data",
            {"data": data, "metadata": metadata or {}, "transient": {"display_id": display_id}},
        )

    def execute_result(self, data: MimeBundle, metadata: dict[str, Any] | None = None) -> None:
        """Publish the cell's result (``Out[n]``); it should include ``text/plain``."""
        self.publish(
            "execute_result",
            {"execution_count": self.execution_count, "data": data, "metadata": metadata or {}},
        )

    def clear_output(self, wait: bool = False) -> None:
        """Clear the output area; with ``wait``, only when the next output arrives."""
        self.publish("clear_output", {"wait": wait})

    # -- input and blocking work -----------------------------------------------------------

    async def input(self, prompt: str = "", *, password: bool = False) -> str:
        """Ask the frontend for a line of input (``input_request`` on stdin).

        An interrupt cancels it like any ``await`` of ``do_execute``.

        Raises:
            StdinNotAllowedError: the request had ``allow_stdin=False``.
            EOFError: the user sent end-of-input.
            InputInterrupted: this execution was interrupted or has ended (only where the
                interrupt's cancellation cannot reach the caller: a worker thread).
        """
        if not self.allow_stdin:
            raise StdinNotAllowedError("this frontend does not support input requests")
        return await self._request_input(prompt, password)

    def input_from_thread(self, prompt: str = "", *, password: bool = False) -> str:
        """:meth:`input` for code running in a worker thread (:meth:`run_blocking`, or a
        :class:`~kernelsdk.NativeRunner` call); blocks the thread until the reply.

        Raises:
            InputInterrupted: at once, when this execution is interrupted or ends or the
                kernel shuts down while the thread waits (or before it asks). The
                ``input_request`` is dropped: a late reply to it answers nothing.
            StdinNotAllowedError, EOFError: as :meth:`input`.
        """
        return trio.from_thread.run(
            lambda: self.input(prompt, password=password), trio_token=self._token
        )

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking or native code in a worker thread, keeping the kernel responsive.

        Heartbeat, control requests and comms are served meanwhile. ``fn``'s exception is
        raised as it is. On interrupt, the kernel's :meth:`~kernelsdk.BaseKernel.do_interrupt`
        hook is called to stop the native work, and this call raises at once even if ``fn``
        has not returned yet; the execution then ends, and output ``fn`` still sends is
        dropped (nothing of a request is published after its ``idle``).

        A kernel embedded with safe points runs ``fn`` on the host's thread instead, at the
        host's next safe point (see :mod:`kernelsdk.embed`).
        """
        if self._run_blocking is not None:
            result: T = await self._run_blocking(fn, *args)
            return result
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
