"""The language-independent half of the debugger: one DAP session per kernel process.

:class:`DebugSession` answers each ``debug_request``'s DAP request. It handles itself what a
frontend needs whatever the language, and passes the rest to the kernel's
:class:`~kernelsdk.Debugger`:

* ``debugInfo`` (answered before the debugger starts, too): whether it is started, the hash
  method and seed and the temp file prefix and suffix JupyterLab names cells with, the
  breakpoints of every source and the stopped threads. JupyterLab rebuilds its whole state
  from this reply when a notebook is opened, refreshed or switched to.
* ``dumpCell``: writes the cell's code to the file JupyterLab names it by
  (:func:`kernelsdk._dap.cell_file_name`), in a directory of this kernel process (0700).
* ``source``: a dumped cell's code, or a file's.
* ``initialize`` (starts the kernel's debugger; the capabilities), ``attach``,
  ``configurationDone``, ``disconnect`` (stops it: breakpoints forgotten, stopped threads
  released).
* ``setBreakpoints`` is passed on and its answer recorded; ``stopped`` and ``continued``
  events update the stopped threads.

Every failure is a DAP response with ``success: false``, never a missing reply or a dead
kernel: a frontend that gets no ``debug_reply`` waits forever (ipymini and every kernel on
ipykernel's base without debugpy do exactly that).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

from ._dap import HASH_METHOD, HASH_SEED, cell_file_name, event, parse_request, response
from ._debugger import Debugger, DebuggerError, ResumeKind

log = logging.getLogger("kernelsdk")

#: Why a kernel without a debugger fails every DAP request.
NO_DEBUGGER: Final = "this kernel has no debugger (its kernel_info_reply does not claim 'debugger')"
#: Why a request that needs the debugger started fails before ``initialize``.
NOT_STARTED: Final = "the debugger is not started: send 'initialize' first"
#: Requests answered whether or not the debugger is started.
_STATIC: Final = frozenset(
    {"debugInfo", "dumpCell", "source", "inspectVariables", "richInspectVariables", "disconnect"}
)

#: Publishes one DAP event's content as a ``debug_event``; callable from any thread.
Publish = Callable[[dict[str, Any]], None]


def temp_prefix(implementation: str, pid: int | None = None) -> str:
    """The directory (with a trailing separator) where this kernel process dumps cells."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in implementation)
    return os.path.join(tempfile.gettempdir(), f"kernelsdk_{safe}_{pid or os.getpid()}") + os.sep


class DebugSession:
    """Answers DAP requests for one kernel; ``debugger`` None: a kernel without one.

    Args:
        debugger: the kernel's debugger, or None.
        publish: sends a DAP event as a ``debug_event`` (from any thread).
        implementation: the kernel's name (part of the temp directory's name).
        file_extension: the language's, with its dot: the cells' files end with it.
    """

    def __init__(
        self,
        debugger: Debugger | None,
        publish: Publish,
        *,
        implementation: str,
        file_extension: str,
    ) -> None:
        self.debugger = debugger
        self._publish = publish
        self.prefix = temp_prefix(implementation)
        self.suffix = file_extension
        self.started = False
        self._seq = 0
        self._lock = threading.Lock()  # seq and stopped threads: events come from any thread
        self.breakpoints: dict[str, list[dict[str, Any]]] = {}  # by source path, as answered
        self.stopped_threads: set[int] = set()
        self.exception_filters: list[str] = []
        if debugger is not None:
            debugger.attach_session(self.send_event, self.cell_path)

    # -- what the kernel's debugger uses ---------------------------------------------------

    def cell_path(self, code: str) -> str:
        return cell_file_name(code, self.prefix, self.suffix, HASH_SEED)

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def send_event(self, name: str, body: dict[str, Any]) -> None:
        """Publish a DAP event, keeping the stopped threads up to date."""
        with self._lock:
            thread = body.get("threadId")
            if name == "stopped":
                if isinstance(thread, int):
                    self.stopped_threads.add(thread)
            elif name == "continued":
                if body.get("allThreadsContinued", True) or not isinstance(thread, int):
                    self.stopped_threads.clear()
                else:
                    self.stopped_threads.discard(thread)
            elif name in ("terminated", "exited"):
                self.stopped_threads.clear()
            self._seq += 1
            content = event(self._seq, name, body)
        self._publish(content)

    # -- requests ---------------------------------------------------------------------------

    async def handle(self, content: Mapping[str, Any]) -> dict[str, Any]:
        """The DAP response to one ``debug_request``'s content (never raises)."""
        request = parse_request(content)
        if isinstance(request, str):
            seq = content.get("seq")
            request_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
            command = str(content.get("command") or "")
            return response(self._next_seq(), request_seq, command, message=request)
        command, args = request.command, request.arguments
        try:
            body = await self._dispatch(command, args)
        except DebuggerError as exc:
            return response(self._next_seq(), request.seq, command, message=str(exc))
        except Exception as exc:
            log.exception("debug request %r failed", command)
            why = f"{type(exc).__name__}: {exc}"
            return response(self._next_seq(), request.seq, command, message=why)
        return response(self._next_seq(), request.seq, command, body=body)

    async def _dispatch(self, command: str, args: dict[str, Any]) -> dict[str, Any]:
        if command == "debugInfo":
            return self._debug_info()
        debugger = self.debugger
        if debugger is None:
            raise DebuggerError(NO_DEBUGGER)
        if command not in _STATIC and command != "initialize" and not self.started:
            raise DebuggerError(NOT_STARTED)
        handler = self._HANDLERS.get(command)
        if handler is not None:
            return await handler(self, debugger, args)
        return await debugger.request(command, args)

    def _debug_info(self) -> dict[str, Any]:
        debugger = self.debugger
        with self._lock:
            stopped = sorted(self.stopped_threads)
        return {
            "isStarted": self.started,
            "hashMethod": HASH_METHOD,
            "hashSeed": HASH_SEED,
            "tmpFilePrefix": self.prefix,
            "tmpFileSuffix": self.suffix,
            "breakpoints": [
                {"source": path, "breakpoints": points}
                for path, points in self.breakpoints.items()
                if points
            ],
            "stoppedThreads": stopped,
            "richRendering": True,
            "exceptionPaths": list(debugger.exception_paths) if debugger is not None else [],
            "copyToGlobals": False,
        }

    async def _initialize(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        if not self.started:
            await debugger.start()
            self.started = True
            log.info("the debugger has started")
        return {
            "supportsConfigurationDoneRequest": True,
            "supportsEvaluateForHovers": True,
            "supportsDelayedStackTraceLoading": False,
            **debugger.capabilities,
            "exceptionBreakpointFilters": list(debugger.exception_filters),
        }

    async def _done(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        return {}  # attach, configurationDone: the breakpoints are set as they arrive

    async def _disconnect(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        await self.stop()
        return {}

    async def stop(self) -> None:
        """Stop the kernel's debugger (a ``disconnect``, or the kernel shutting down): a
        stopped thread runs on, every breakpoint is forgotten."""
        was_started, self.started = self.started, False
        self.breakpoints.clear()
        self.exception_filters = []
        with self._lock:
            stopped = bool(self.stopped_threads)
        if self.debugger is not None and (was_started or stopped):
            await self.debugger.stop()
            if stopped:
                self.send_event("continued", {"threadId": 0, "allThreadsContinued": True})
            log.info("the debugger has stopped")

    def close(self) -> None:
        """Remove the dumped cells' directory (the kernel process ends)."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.prefix)

    async def _dump_cell(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        code = args.get("code")
        if not isinstance(code, str):
            raise DebuggerError("dumpCell needs the cell's 'code' (a string)")
        path = self.cell_path(code)
        directory = Path(self.prefix)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Written as bytes: no newline translation, the file holds exactly the cell.
        Path(path).write_bytes(code.encode("utf-8"))
        return {"sourcePath": path}

    async def _source(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        source = args.get("source")
        path = source.get("path") if isinstance(source, dict) else None
        if not isinstance(path, str) or not os.path.isfile(path):
            raise DebuggerError("source unavailable")
        return {"content": Path(path).read_text(encoding="utf-8", errors="replace")}

    async def _set_breakpoints(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        source = args.get("source")
        path = source.get("path") if isinstance(source, dict) else None
        if not isinstance(path, str):
            raise DebuggerError("setBreakpoints needs 'source.path'")
        wanted = args.get("breakpoints")
        if wanted is None:  # the deprecated form: lines only
            lines = args.get("lines") or []
            wanted = [{"line": line} for line in lines]
        if not isinstance(wanted, list) or not all(
            isinstance(b, dict) and isinstance(b.get("line"), int) for b in wanted
        ):
            raise DebuggerError("setBreakpoints needs 'breakpoints': [{'line': int}, ...]")
        answered = await debugger.set_breakpoints(path, [dict(b) for b in wanted])
        for point in answered:
            point.setdefault("source", {"path": path})
        # Recorded as debugInfo reports them: what was asked, on the lines the kernel chose.
        self.breakpoints[path] = [
            {**ask, "line": got.get("line", ask["line"])}
            for ask, got in zip(wanted, answered, strict=False)
            if got.get("verified", True)
        ]
        return {"breakpoints": answered}

    async def _set_exception_breakpoints(
        self, debugger: Debugger, args: dict[str, Any]
    ) -> dict[str, Any]:
        filters = args.get("filters") or []
        known = {f.get("filter") for f in debugger.exception_filters}
        chosen = [f for f in filters if isinstance(f, str) and f in known]
        await debugger.set_exception_breakpoints(chosen)
        self.exception_filters = chosen
        return {"breakpoints": [{"verified": True} for _ in chosen]}

    async def _threads(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        return {"threads": await debugger.threads()}

    async def _stack_trace(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        start = _int(args.get("startFrame"), 0)
        levels = _int(args.get("levels"), 0) or None
        frames = await debugger.stack_trace(_int(args.get("threadId"), 1), start, levels)
        return {"stackFrames": frames, "totalFrames": len(frames)}

    async def _scopes(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        return {"scopes": await debugger.scopes(_int(args.get("frameId"), 0))}

    async def _variables(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        reference = _int(args.get("variablesReference"), 0)
        start = args.get("start")
        count = args.get("count")
        found = await debugger.variables(
            reference,
            start if isinstance(start, int) else None,
            count if isinstance(count, int) and count > 0 else None,
        )
        return {"variables": found}

    async def _resume(self, debugger: Debugger, args: dict[str, Any], kind: ResumeKind) -> None:
        thread = _int(args.get("threadId"), 1)
        await debugger.resume(thread, kind)
        with self._lock:
            self.stopped_threads.discard(thread)

    async def _continue(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        await self._resume(debugger, args, "continue")
        return {"allThreadsContinued": True}

    async def _next(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        await self._resume(debugger, args, "next")
        return {}

    async def _step_in(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        await self._resume(debugger, args, "stepIn")
        return {}

    async def _step_out(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        await self._resume(debugger, args, "stepOut")
        return {}

    async def _pause(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        await debugger.pause(_int(args.get("threadId"), 1))
        return {}

    async def _evaluate(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        expression = args.get("expression")
        if not isinstance(expression, str):
            raise DebuggerError("evaluate needs an 'expression' string")
        frame = args.get("frameId")
        context = args.get("context")
        return await debugger.evaluate(
            expression,
            frame if isinstance(frame, int) else None,
            context if isinstance(context, str) else "repl",
        )

    async def _inspect_variables(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        return {"variables": await debugger.inspect_variables()}

    async def _rich_inspect(self, debugger: Debugger, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("variableName")
        if not isinstance(name, str):
            raise DebuggerError("richInspectVariables needs a 'variableName' string")
        frame = args.get("frameId")
        frame_id = frame if isinstance(frame, int) else None
        return await debugger.rich_inspect_variables(name, frame_id)

    _HANDLERS: Final[
        Mapping[str, Callable[[DebugSession, Debugger, dict[str, Any]], Awaitable[dict[str, Any]]]]
    ] = {
        "initialize": _initialize,
        "attach": _done,
        "configurationDone": _done,
        "disconnect": _disconnect,
        "dumpCell": _dump_cell,
        "source": _source,
        "setBreakpoints": _set_breakpoints,
        "setExceptionBreakpoints": _set_exception_breakpoints,
        "threads": _threads,
        "stackTrace": _stack_trace,
        "scopes": _scopes,
        "variables": _variables,
        "continue": _continue,
        "next": _next,
        "stepIn": _step_in,
        "stepOut": _step_out,
        "pause": _pause,
        "evaluate": _evaluate,
        "inspectVariables": _inspect_variables,
        "richInspectVariables": _rich_inspect,
    }


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
