"""The Lua kernel's debugger: kernelsdk's :class:`~kernelsdk.Debugger` over ``debugger.lua``.

Theory of operation
-------------------
The SDK answers the Jupyter side (debugInfo, dumpCell, initialize...); this class answers
the rest of DAP for Lua. Lua's state belongs to one worker thread at a time (the
:class:`~kernelsdk.NativeRunner`'s), so this class never touches it from the Trio thread:

* what the frontend configures (breakpoints, "pause on uncaught errors", which cell file is
  which chunk) is kept here and handed to Lua at its next safe point: before a cell starts
  (:meth:`LuaDebugger.before_cell`), while a cell is stopped (a ``configure`` command), or,
  while a cell runs, at the next instruction: :meth:`LuaState.arm_debugger` arms the
  kernel's one C hook, whose dispatch calls ``debugger.lua``'s ``sync``, which asks for it
  (``dbg_sync``). ``pause`` travels the same way.
* a stopped cell's worker thread stays inside Lua's debug hook, blocked in ``dbg_wait``
  (:meth:`LuaDebugger.host`) on a queue of commands: each request that needs the stopped
  stack (frames, scopes, variables, evaluate) is put there by the Trio task and answered
  through ``dbg_result``; ``continue``, ``next``, ``stepIn``, ``stepOut``, an interrupt
  (:meth:`release`) and a ``disconnect`` end the wait.
* when nothing runs, requests for the top level (``inspectVariables``, a global table's
  children, ``evaluate`` without a frame) run through the runner like completions do;
  while a cell runs and is not stopped, they answer from what was last seen.

There is one thread for DAP (id 1): the cell that stopped, whichever shell it belongs to.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from importlib import resources
from typing import Any, Final, Protocol

import trio

from kernelsdk import Debugger, DebuggerError, NativeOutput, NativeRunner

from ._literals import lua_literal, lua_table_literal
from ._state import LuaState

log = logging.getLogger("kernelsdk_lua")

THREAD_ID: Final = 1
#: The registry slot of debugger.lua's ``sync`` (run from the kernel's C hook).
SYNC_KEY: Final = 0x4B534447
#: ``dbg_wait``'s answer when the stopped cell must end (an interrupt, the kernel going).
_INTERRUPT: Final = -1


class _Command:
    """One command for the stopped cell, and its answer."""

    def __init__(self, text: str) -> None:
        self.text = text  # a Lua table constructor, e.g. {op = "frames"}
        self.answer: dict[str, Any] | None = None
        self.done = trio.Event()


class _Stopped:
    """A cell stopped in Lua's debug hook: the queue its worker thread waits on."""

    def __init__(self, token: trio.lowlevel.TrioToken, event: dict[str, Any]) -> None:
        self.commands: queue.SimpleQueue[_Command | str] = queue.SimpleQueue()
        self.token = token
        self.event = event  # the body of its stopped event
        self.current: _Command | None = None  # the command Lua is answering


class _LuaKernel(Protocol):
    """What the debugger uses of the Lua kernel (``_kernel.LuaKernel``)."""

    lua: LuaState
    runner: NativeRunner


class LuaDebugger(Debugger):
    """Breakpoints (with conditions and log messages) in cells and ``require``d files, step
    over, into and out, the stack across Lua functions, locals, upvalues and globals (tables
    expand), ``evaluate`` in a stopped frame, and stops on uncaught errors."""

    capabilities = {
        "supportsConditionalBreakpoints": True,
        "supportsLogPoints": True,
        "supportsEvaluateForHovers": True,
    }
    exception_filters = [
        {
            "filter": "uncaught",
            "label": "Uncaught Lua errors",
            "description": "Stop where an error that the cell does not catch is raised",
            "default": False,
        }
    ]
    exception_paths = ["Lua errors"]

    def __init__(self, kernel: _LuaKernel) -> None:
        super().__init__(kernel)
        self.lua_kernel = kernel
        self.active = False
        self.breakpoints: dict[str, list[dict[str, Any]]] = {}
        self.break_on_error = False
        self.pause_wanted = False
        self._cells: dict[str, str] = {}  # chunk name -> code, of every cell run
        self._paths_sent: set[str] = set()  # chunk names whose file Lua knows
        self._version = 1  # of the configuration; Lua has _applied
        self._applied = 0
        self._lock = threading.Lock()
        # Stopped cells, innermost last: a call of another shell (a subshell's cell, a comm
        # handler) may run while a cell is stopped, and stop too.
        self._stops: list[_Stopped] = []
        self._stop_count = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._globals: list[dict[str, Any]] = []  # last seen, for a busy kernel

    @property
    def _stopped(self) -> _Stopped | None:
        """The innermost stopped cell: the one DAP's thread 1 is."""
        return self._stops[-1] if self._stops else None

    # -- loading (the kernel's worker thread, or its constructor) -------------------------

    def load(self) -> None:
        """Load ``debugger.lua`` into the kernel's state (once, at start: it sets no hook)."""
        lua = self.lua_kernel.lua
        chunk = resources.files(__package__).joinpath("debugger.lua").read_bytes()
        lib, L = lua.lib, lua.L
        lua._check(lua._load(L, chunk, b"=kernelsdk_lua_debugger"))
        lib.lua_pushvalue(L, 1)  # K, the driver
        lib.lua_pushcclosure(L, lua._host_cb, 0)
        lua._check(lua._pcall(L, 2, 0))
        lua.call(f"K.debugger.set_cwd({lua_literal(os.getcwd())})")

    # -- the configuration, handed to Lua at safe points -----------------------------------

    def _changed(self) -> None:
        with self._lock:
            self._version += 1
        stopped = self._stopped
        if stopped is not None:
            return  # the stopped loop takes it with the next command (see _ask)
        self.lua_kernel.lua.arm_debugger()  # a running cell takes it at its next instruction

    def _config_literal(self, everything: bool = False) -> str | None:
        """The configuration for Lua, if it changed since it was last handed over (or
        ``everything``); called on the thread that holds the state."""
        with self._lock:
            if self._applied == self._version and not everything:
                return None
            self._applied = self._version
            config: dict[str, Any] = {
                "active": self.active,
                "break_on_error": self.break_on_error,
                "breakpoints": {
                    path: [
                        {
                            "line": bp["line"],
                            **({"condition": bp["condition"]} if bp.get("condition") else {}),
                            **({"log": bp["logMessage"]} if bp.get("logMessage") else {}),
                        }
                        for bp in points
                    ]
                    for path, points in self.breakpoints.items()
                },
            }
            if self.active:
                new = [name for name in self._cells if name not in self._paths_sent]
                config["paths"] = {"=" + name: self.cell_path(self._cells[name]) for name in new}
                self._paths_sent.update(new)
        return lua_table_literal(config)

    def before_cell(self, code: str, chunkname: str) -> None:
        """On the worker thread, before a cell runs: remember it, configure Lua if needed
        (and pause it at its first line if a pause is waiting)."""
        self._cells[chunkname] = code
        if self.active and chunkname not in self._paths_sent:
            with self._lock:
                self._version += 1
        config = self._config_literal()
        with self._lock:
            pause, self.pause_wanted = self.pause_wanted and self.active, False
        if config is not None:
            self.lua_kernel.lua.call(f"K.debugger.configure({config})")
        if pause:
            self.lua_kernel.lua.call("K.debugger.pause_next()")

    def sync_text(self) -> bytes:
        """What ``debugger.lua``'s ``sync`` gets, from the kernel's hook: ``pause`` and/or the
        configuration (a Lua chunk returning a table)."""
        config = self._config_literal()
        with self._lock:
            pause, self.pause_wanted = self.pause_wanted, False
        flag = "true" if pause else "false"
        return f"return {{pause = {flag}, config = {config or 'nil'}}}".encode()

    # -- the host operations of a stopped cell (its worker thread) -------------------------

    def host(self, op: str, text: bytes, out: NativeOutput) -> int:
        lua = self.lua_kernel.lua
        if op == "dbg_stopped":
            if self._token is None:  # never started from a frontend: nothing can resume it
                return 0
            event = json.loads(text.decode("utf-8", "replace"))
            body: dict[str, Any] = {
                "reason": event.get("reason", "breakpoint"),
                "threadId": THREAD_ID,
                "allThreadsStopped": True,
            }
            if event.get("text"):
                body["text"] = event["text"]
                body["description"] = event["text"]
            self._stops.append(_Stopped(self._token, body))
            self._stop_count += 1
            # After what the cell printed before it stopped.
            out.run_sync(self.send_event, "stopped", body)
            return 0
        if op == "dbg_wait":
            stopped = self._stopped
            if out.interrupted:
                return _INTERRUPT
            if stopped is None:  # no frontend to resume it (dbg_stopped said so): run on
                return lua.set_reply(b'{op = "resume", kind = "continue"}')
            while True:
                if out.waiting:  # also one that came while this cell was stopping
                    self._lend(stopped, out)
                if (item := stopped.commands.get()) != "turn":
                    break
            if isinstance(item, str):  # resume (a Lua table) or interrupt
                self._stops.remove(stopped)
                self.send_event("continued", {"threadId": THREAD_ID, "allThreadsContinued": True})
                if item == "interrupt":
                    return _INTERRUPT
                text_sent = item
            else:
                stopped.current = item
                text_sent = item.text
            config = self._config_literal()
            if config is not None:  # changed while stopped: Lua takes it with this command
                text_sent = text_sent[:-1] + f", config = {config}}}"
            return lua.set_reply(text_sent.encode())
        if op == "dbg_result":
            stopped = self._stopped
            if stopped is not None and stopped.current is not None:
                command, stopped.current = stopped.current, None
                command.answer = json.loads(text.decode("utf-8", "replace"))
                trio.from_thread.run_sync(command.done.set, trio_token=stopped.token)
            return 0
        if op == "dbg_sync":
            return lua.set_reply(self.sync_text())
        return 0

    def _lend(self, stopped: _Stopped, out: NativeOutput) -> None:
        """A call of another shell waits for the state: it runs now, from this stopped
        cell's worker thread (see :meth:`LuaState.lend`). If it stopped too, the frontend
        saw it continue: this cell is shown stopped again."""
        before = self._stop_count
        self.lua_kernel.lua.lend(out)  # returns at once if nothing waits any more
        if self._stop_count != before and self._stopped is stopped:
            self.send_event("stopped", stopped.event)

    def wake(self) -> None:
        """A call of another shell waits for the state (from its worker thread): a stopped
        cell lends it (see :meth:`_lend`)."""
        stopped = self._stopped
        if stopped is not None:
            stopped.commands.put("turn")

    def release(self) -> None:
        """End every stopped cell's wait: they stop with an interrupt (called on the Trio
        thread by the kernel's interrupt)."""
        for stopped in list(self._stops):
            stopped.commands.put("interrupt")

    # -- asking the stopped cell -----------------------------------------------------------

    async def _ask(self, command: str) -> Any:
        stopped = self._stopped
        if stopped is None:
            raise DebuggerError("the cell is not stopped")
        item = _Command(command)
        stopped.commands.put(item)
        await item.done.wait()
        answer = item.answer or {}
        if "error" in answer:
            raise DebuggerError(str(answer["error"]))
        return answer.get("result")

    async def _at_top_level(self, expression: str) -> Any:
        """A driver call when no cell runs (None when one does)."""
        runner = self.lua_kernel.runner
        if runner.busy:
            return None

        def call(out: NativeOutput) -> Any:
            return self.lua_kernel.lua.call_json(expression)

        return await runner.run(call)

    # -- the Debugger interface ------------------------------------------------------------

    async def start(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self.active = True
        self._paths_sent.clear()
        self._changed()

    async def stop(self) -> None:
        self.active = False
        self.breakpoints.clear()
        self.break_on_error = False
        self.pause_wanted = False
        self._changed()
        for stopped in list(self._stops):
            stopped.commands.put('{op = "resume", kind = "continue"}')

    async def set_breakpoints(
        self, path: str, breakpoints: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        self.breakpoints[path] = breakpoints
        if not breakpoints:
            del self.breakpoints[path]
        self._changed()
        return [{"verified": True, "line": bp["line"]} for bp in breakpoints]

    async def set_exception_breakpoints(self, filters: list[str]) -> None:
        self.break_on_error = "uncaught" in filters
        self._changed()

    async def threads(self) -> list[dict[str, Any]]:
        return [{"id": THREAD_ID, "name": "Lua"}]

    async def stack_trace(
        self, thread_id: int, start_frame: int, levels: int | None
    ) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = await self._ask('{op = "frames"}') or []
        end = None if levels is None else start_frame + levels
        return frames[start_frame:end]

    async def scopes(self, frame_id: int) -> list[dict[str, Any]]:
        scopes: list[dict[str, Any]] = await self._ask(f"{{op = 'scopes', frame = {frame_id}}}")
        return scopes

    async def variables(
        self, reference: int, start: int | None, count: int | None
    ) -> list[dict[str, Any]]:
        paging = f"start = {start or 0}, count = {count or 'nil'}"
        if self._stopped is not None:
            found = await self._ask(f"{{op = 'variables', ref = {reference}, {paging}}}")
        else:
            found = await self._at_top_level(
                f"K.debugger.variables({reference}, {start or 0}, {count or 'nil'})"
            )
            if isinstance(found, dict):
                raise DebuggerError(str(found.get("error")))
        return list(found or [])

    async def resume(self, thread_id: int, kind: Any) -> None:
        stopped = self._stopped
        if stopped is None:
            raise DebuggerError("no cell is stopped")
        stopped.commands.put(f"{{op = 'resume', kind = {lua_literal(str(kind))}}}")

    async def pause(self, thread_id: int) -> None:
        """The running cell stops at its next line; with none running, the next cell stops
        at its first (a pause sent just before a cell starts must not be lost)."""
        if self._stopped is not None:
            return
        with self._lock:
            self.pause_wanted = True
            self._version += 1
        self.lua_kernel.lua.arm_debugger()

    async def evaluate(self, expression: str, frame_id: int | None, context: str) -> dict[str, Any]:
        if self._stopped is not None:
            frame = "nil" if frame_id is None else str(frame_id)
            body: dict[str, Any] = await self._ask(
                f"{{op = 'evaluate', frame = {frame}, expression = {lua_literal(expression)}}}"
            )
            return body
        found = await self._at_top_level(f"K.debugger.evaluate_global({lua_literal(expression)})")
        if found is None:
            raise DebuggerError("a cell is running: evaluate when it stops or ends")
        if "error" in found:
            raise DebuggerError(str(found["error"]))
        return dict(found)

    async def inspect_variables(self) -> list[dict[str, Any]]:
        if self._stopped is not None:
            self._globals = list(await self._ask('{op = "globals"}') or [])
            return self._globals
        found = await self._at_top_level("K.debugger.globals()")
        if found is not None:
            self._globals = list(found)
        return self._globals

    async def rich_inspect_variables(self, name: str, frame_id: int | None) -> dict[str, Any]:
        try:
            body = await self.evaluate(name, frame_id, "clipboard")
        except DebuggerError:
            return {"data": {}, "metadata": {}}
        return {"data": {"text/plain": body.get("result", "")}, "metadata": {}}
