"""``BaseKernel``: what a kernel author subclasses.

Set the class attributes that describe the language, override the ``do_*`` hooks you support,
and leave the protocol to the framework: busy/idle, ``execute_input``, execution counts,
silent requests, error replies, ``stop_on_error`` aborts, interrupts, stdin, comms and
shutdown are handled by :class:`kernelsdk._server.KernelServer` around these hooks.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

import attrs

from ._comm import CommManager
from ._history import InMemoryHistory
from ._version import PROTOCOL_VERSION, __version__

if TYPE_CHECKING:
    from ._context import ExecuteContext, MimeBundle
    from ._debugger import Debugger


@final
@attrs.frozen
class Completions:
    """The answer of :meth:`BaseKernel.do_complete`: ``code[cursor_start:cursor_end]`` is
    what each match replaces."""

    matches: list[str]
    cursor_start: int
    cursor_end: int
    metadata: dict[str, Any] = attrs.field(factory=dict)


@final
@attrs.frozen
class IsComplete:
    """The answer of :meth:`BaseKernel.do_is_complete`.

    ``status`` is ``"complete"``, ``"incomplete"``, ``"invalid"`` or ``"unknown"``; ``indent``
    is a hint for the next line, used only when incomplete.
    """

    status: Literal["complete", "incomplete", "invalid", "unknown"]
    indent: str = ""


class BaseKernel:
    """Base class of every kernel built on kernelsdk.

    Class attributes describe the kernel (they feed ``kernel_info_reply`` and ``kernel.json``):

    Attributes:
        implementation: the kernel's name, e.g. ``"echo"``.
        implementation_version: the kernel's version.
        language_info: ``name``, ``version``, ``mimetype``, ``file_extension`` (with the dot)
            and optionally ``pygments_lexer``, ``codemirror_mode``, ``nbconvert_exporter``.
        banner: shown by ``jupyter console`` at start.
        help_links: ``[{"text": ..., "url": ...}]`` shown in the frontend's help menu.
        display_name: the name frontends show in their kernel list (default: implementation).
        interrupt_mode: ``"signal"`` (SIGINT) or ``"message"`` (``interrupt_request``).
        resources: a directory whose ``logo-*`` files are installed with the kernelspec.
        kernelspec_env: environment variables written into ``kernel.json``.
        capture_native_output: when the kernel owns its process (``python -m kernelsdk run``),
            what is written to descriptors 1 and 2 while a cell runs (C code, subprocesses)
            becomes that cell's ``stream`` output; outside cells it goes to the kernel's log.
            Off by default; kernels that run native code turn it on.
        concurrent_subshells: the language can run cells concurrently, so the kernel claims
            kernel subshells (JEP 91): ``kernel_info`` lists ``"kernel subshells"`` in
            ``supported_features``, clients may create subshells, and the requests of each
            subshell are handled in a Trio task of its own: in order within a subshell,
            concurrently across subshells (``do_execute`` may then be running several times
            at once; an interrupt cancels every one). Off by default: a kernel that does not
            claim them refuses ``create_subshell_request`` with an error reply and ignores
            a request's ``subshell_id`` (everything runs in the main shell, one at a time).
        debugger_class: the kernel's debugger (a :class:`~kernelsdk.Debugger` subclass,
            made with the kernel instance): ``kernel_info`` then claims ``"debugger"`` (in
            ``supported_features``, and ``debugger: true``), the kernelspec says
            ``metadata.debugger: true`` (JupyterLab offers its debugger only then), and
            ``debug_request`` reaches it. None by default: every DAP request is answered with
            ``success: false``.

    Instance attributes, ready before the first request:

    Attributes:
        comms: register comm targets and open comms (:class:`~kernelsdk.CommManager`).
        history: the default in-memory history of ``store_history`` executions (the main
            shell's).
        subshell_histories: each kernel subshell's own history, by subshell id (JEP 91:
            "each subshell will store its own execution count and history"), created and
            dropped with the subshell.
    """

    implementation: ClassVar[str] = "kernelsdk"
    implementation_version: ClassVar[str] = __version__
    language_info: ClassVar[dict[str, Any]] = {
        "name": "text",
        "mimetype": "text/plain",
        "file_extension": ".txt",
    }
    banner: ClassVar[str] = ""
    help_links: ClassVar[list[dict[str, str]]] = []
    display_name: ClassVar[str | None] = None
    interrupt_mode: ClassVar[Literal["signal", "message"]] = "signal"
    resources: ClassVar[str | os.PathLike[str] | None] = None
    kernelspec_env: ClassVar[dict[str, str]] = {}
    capture_native_output: ClassVar[bool] = False
    concurrent_subshells: ClassVar[bool] = False
    debugger_class: ClassVar[type[Debugger] | None] = None

    def __init__(self) -> None:
        self.comms = CommManager()
        self.history = InMemoryHistory()
        cls = self.debugger_class
        self.debugger: Debugger | None = cls(self) if cls is not None else None
        self.subshell_histories: dict[str, InMemoryHistory] = {}

    def history_of(self, subshell_id: str | None) -> InMemoryHistory | None:
        """The history of a subshell (None: the main shell's, :attr:`history`); None for a
        subshell that does not exist."""
        if subshell_id is None:
            return self.history
        return self.subshell_histories.get(subshell_id)

    # -- hooks ----------------------------------------------------------------------------

    async def do_execute(self, code: str, ctx: ExecuteContext) -> MimeBundle | str | None:
        """Run one cell. Required.

        Send output through ``ctx`` (``ctx.print``, ``ctx.display``, ...). Return the cell's
        value as a mime bundle or a string (shown as ``Out[n]``; ignored when silent), or
        ``None`` for no result. Raise :class:`~kernelsdk.ExecutionError` for an error in the
        user's code; the framework publishes it and replies with status ``error``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement do_execute")

    async def do_complete(self, code: str, cursor_pos: int) -> Completions:
        """Completions at ``cursor_pos`` (in unicode code points)."""
        return Completions([], cursor_pos, cursor_pos)

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int) -> MimeBundle | None:
        """Help for the name at ``cursor_pos`` as a mime bundle, or ``None`` if none is found."""
        return None

    async def do_is_complete(self, code: str) -> IsComplete:
        """Whether ``code`` is ready to run (consoles ask before sending a line)."""
        return IsComplete("unknown")

    async def do_user_expression(self, expression: str) -> MimeBundle:
        """Evaluate one of ``execute_request.user_expressions`` after a successful cell.

        Raise to report an error for this expression only. By default expressions are not
        supported and each reports a ``NotImplementedError``.
        """
        raise NotImplementedError("this kernel does not evaluate user_expressions")

    async def do_history(
        self,
        hist_access_type: str,
        output: bool,
        raw: bool,
        session: int = 0,
        start: int = 0,
        stop: int | None = None,
        n: int | None = None,
        pattern: str = "*",
        unique: bool = False,
        subshell_id: str | None = None,
    ) -> list[list[Any]]:
        """History entries ``[session, line, input]`` (or ``[..., [input, output]]``).

        The default answers from :attr:`history`, or for a ``history_request`` sent to a
        kernel subshell from that subshell's (``subshell_id`` is passed only then: a kernel
        that claims subshells and overrides this hook must accept it).
        """
        history = self.history_of(subshell_id)
        if history is None:
            entries = []
        elif hist_access_type == "tail":
            entries = history.tail(n or 10)
        elif hist_access_type == "range":
            entries = history.range(session, start, stop)
        elif hist_access_type == "search":
            entries = history.search(pattern, n, unique)
        else:
            entries = []
        return [e.as_reply_item(output) for e in entries]

    async def do_shutdown(self, restart: bool) -> None:
        """Release the kernel's resources before the process exits (or restarts)."""

    def do_interrupt(self) -> None:
        """Stop native work running in a worker thread (called on the Trio thread).

        The framework already cancels the running ``do_execute``; override this when the
        kernel runs code that cancellation cannot reach, e.g. a C interpreter loop started
        with ``ctx.run_blocking`` (set a flag or hook the interpreter checks).
        """

    def kernel_info(self) -> dict[str, Any]:
        """The content of ``kernel_info_reply`` (without ``status``)."""
        return {
            "protocol_version": PROTOCOL_VERSION,
            "implementation": self.implementation,
            "implementation_version": self.implementation_version,
            "language_info": dict(self.language_info),
            "banner": self.banner,
            "help_links": list(self.help_links),
            "debugger": self.debugger is not None,
            "supported_features": [
                *(["kernel subshells"] if self.concurrent_subshells else []),
                *(["debugger"] if self.debugger is not None else []),
            ],
        }
