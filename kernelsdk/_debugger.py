"""``Debugger``: what a kernel implements to be debugged from JupyterLab (the language's half).

The SDK handles the Jupyter side of the debug protocol (``debug_request`` on control,
``debug_reply``, ``debug_event`` on IOPub) and every request that does not depend on the
language: ``debugInfo``, ``dumpCell`` and the cell files, ``initialize``, ``attach``,
``configurationDone``, ``disconnect``, the breakpoints and stopped threads a frontend
rebuilds its state from (see :mod:`kernelsdk._debug_session`). A kernel subclasses
:class:`Debugger` for the rest of DAP and sets :attr:`BaseKernel.debugger_class
<kernelsdk.BaseKernel.debugger_class>`; its methods take and return DAP's JSON objects
(``body`` fields), never messages, and never see a socket.

Methods are awaited on the kernel's event loop, one at a time, in the order the requests
arrived, in a task of their own: a slow one delays other debug requests, never ``interrupt``,
``shutdown`` or ``kernel_info``. :meth:`Debugger.send_event` may be called from any thread,
e.g. from the worker thread of a cell that just stopped at a breakpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

#: How a stopped thread resumes: DAP's ``continue``, ``next``, ``stepIn`` and ``stepOut``.
ResumeKind = Literal["continue", "next", "stepIn", "stepOut"]
#: Sends one DAP event (``event``, ``body``) as a ``debug_event``; callable from any thread.
EventSender = Callable[[str, dict[str, Any]], None]


class DebuggerError(Exception):
    """Raised by a :class:`Debugger` method: the request fails, its message is the reason
    (``success: false``, ``message``). Any other exception fails the request too, and is
    logged with its traceback."""


class Debugger:
    """The language side of a kernel's debugger. Subclass it; override what the language can do.

    Every ``do``-nothing default answers as a debugger that never stops would: no threads
    stopped, no frames, no variables. Thread ids, frame ids and variable references are the
    kernel's own integers; a frame id or reference need only stay valid while the thread is
    stopped (DAP's rule).

    Attributes:
        kernel: the kernel instance this debugger belongs to (a subclass may annotate it
            with its kernel's class).
        capabilities: DAP capabilities added to the ``initialize`` response (the SDK sets
            ``supportsConfigurationDoneRequest`` and the exception filters).
        exception_filters: DAP ``ExceptionBreakpointsFilter`` objects (``filter``, ``label``,
            ``default``): the "pause on exceptions" choices JupyterLab offers.
        exception_paths: ``debugInfo``'s ``exceptionPaths`` (ipykernel: ``["Python
            Exceptions"]``).
    """

    capabilities: ClassVar[dict[str, Any]] = {}
    exception_filters: ClassVar[list[dict[str, Any]]] = []
    exception_paths: ClassVar[list[str]] = []

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self._sender: EventSender | None = None
        self._cell_path: Callable[[str], str] | None = None

    # -- what the SDK gives the kernel ------------------------------------------------------

    def attach_session(self, sender: EventSender, cell_path: Callable[[str], str]) -> None:
        """Called by the SDK once, before any request: how to send events and name cells."""
        self._sender = sender
        self._cell_path = cell_path

    def send_event(self, event: str, body: dict[str, Any] | None = None) -> None:
        """Send a DAP event (``stopped``, ``continued``, ``terminated``, ``output``...), from
        any thread. ``stopped`` and ``continued`` also update the threads ``debugInfo``
        reports as stopped. Dropped when no client session is attached (in-process use)."""
        if self._sender is not None:
            self._sender(event, dict(body or {}))

    def cell_path(self, code: str) -> str:
        """The file name a frontend gives the cell ``code`` (what ``dumpCell`` writes): the
        ``source.path`` of a cell's stack frames and breakpoints."""
        if self._cell_path is None:
            raise RuntimeError("the debugger is not attached to a kernel session yet")
        return self._cell_path(code)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """``initialize``: the frontend turned the debugger on (not called again until
        :meth:`stop`)."""

    async def stop(self) -> None:
        """``disconnect``, or the kernel is shutting down: release any stopped thread, forget
        every breakpoint, and cost nothing from now on."""

    # -- breakpoints ------------------------------------------------------------------------

    async def set_breakpoints(
        self, path: str, breakpoints: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Replace the breakpoints of source ``path`` (a cell's file, see :meth:`cell_path`,
        or a file of the language's own) by DAP ``SourceBreakpoint`` objects (``line``, maybe
        ``condition``, ``hitCondition``, ``logMessage``); return one DAP ``Breakpoint`` each,
        in order (``verified``, ``line``)."""
        raise DebuggerError("this kernel's debugger cannot set breakpoints")

    async def set_exception_breakpoints(self, filters: list[str]) -> None:
        """Stop on the errors of the given :attr:`exception_filters` (an empty list: never)."""

    # -- threads and frames -----------------------------------------------------------------

    async def threads(self) -> list[dict[str, Any]]:
        """DAP ``Thread`` objects (``id``, ``name``)."""
        return [{"id": 1, "name": "main"}]

    async def stack_trace(
        self, thread_id: int, start_frame: int, levels: int | None
    ) -> list[dict[str, Any]]:
        """The stopped thread's DAP ``StackFrame`` objects, innermost first (``id``,
        ``name``, ``line``, ``column``, ``source: {"path": ...}``), from ``start_frame``, at
        most ``levels`` (None: all)."""
        return []

    async def scopes(self, frame_id: int) -> list[dict[str, Any]]:
        """DAP ``Scope`` objects of a frame (``name``, ``variablesReference``,
        ``expensive``)."""
        return []

    async def variables(
        self, reference: int, start: int | None, count: int | None
    ) -> list[dict[str, Any]]:
        """The children of a scope or a structured value: DAP ``Variable`` objects (``name``,
        ``value``, ``type``, ``variablesReference``: 0 when it has no children)."""
        return []

    # -- execution control ------------------------------------------------------------------

    async def resume(self, thread_id: int, kind: ResumeKind) -> None:
        """Let a stopped thread run on: to the next breakpoint (``continue``), the next line
        of the same function or its caller (``next``), the next line anywhere (``stepIn``),
        the next line of the caller (``stepOut``). Return once it has been told, not when it
        stops again (that is a ``stopped`` event)."""
        raise DebuggerError("no thread is stopped")

    async def pause(self, thread_id: int) -> None:
        """Stop a running thread as soon as it can (a ``stopped`` event, reason ``pause``)."""
        raise DebuggerError("this kernel's debugger cannot pause a running thread")

    async def evaluate(self, expression: str, frame_id: int | None, context: str) -> dict[str, Any]:
        """Evaluate ``expression`` in a stopped frame (None: the top level): a DAP
        ``evaluate`` body (``result``, ``type``, ``variablesReference``). ``context`` is
        DAP's: ``repl``, ``watch``, ``hover``, ``clipboard``..."""
        raise DebuggerError("this kernel's debugger cannot evaluate expressions")

    # -- JupyterLab's variable explorer -----------------------------------------------------

    async def inspect_variables(self) -> list[dict[str, Any]]:
        """The user's variables at the top level, as DAP ``Variable`` objects: JupyterLab's
        ``inspectVariables``, asked when the debugger is turned on and after each cell, also
        while nothing is stopped."""
        return []

    async def rich_inspect_variables(self, name: str, frame_id: int | None) -> dict[str, Any]:
        """A rich view of variable ``name`` (in a stopped frame, or at the top level):
        ``{"data": mime bundle, "metadata": {...}}``."""
        return {"data": {}, "metadata": {}}

    # -- the rest of DAP --------------------------------------------------------------------

    async def request(self, command: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Any other DAP request (``modules``, ``setVariable``, ``exceptionInfo``...): its
        response body. The default refuses it."""
        raise DebuggerError(f"this kernel's debugger does not support {command!r}")
