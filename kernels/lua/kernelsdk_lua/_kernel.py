"""The Lua kernel: kernelsdk's BaseKernel over a Lua state, through kernelsdk's NativeRunner.

Every use of the Lua state (cells, completion, inspection, comm handlers) goes through one
:class:`~kernelsdk.NativeRunner`, which runs it in a worker thread, one at a time; interrupts
reach Lua through :meth:`LuaState.interrupt` (a count hook, see ``_state``).

Kernel subshells (JEP 91): cells, comm handlers, completion, inspection and ``is_complete``
*interleave*: one that arrives while a cell runs (from a subshell console, a widget) runs at
that cell's next instruction, inside its hook, while the cell is paused, to its end; then the
paused cell goes on (see ``_state``). Comm handlers must: the server handles a shell request
only after the comm messages sent before it, so a comm handler waiting for a long cell would
hold every subshell up too (JupyterLab sends widget messages through subshells to a kernel
that claims them precisely so that they are handled while a cell runs). The MPI variants do
not interleave (every rank must run the same calls in the same order).
"""

from __future__ import annotations

import base64
import codecs
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from kernelsdk import (
    BaseKernel,
    Comm,
    Completions,
    ExecuteContext,
    ExecutionError,
    IsComplete,
    NativeOutput,
    NativeRunner,
    StdinNotAllowedError,
)
from kernelsdk import mpi as kernelsdk_mpi
from kernelsdk.protocol import Message, interrupt_error

from ._debugger import LuaDebugger
from ._ffi import load_library
from ._literals import lua_literal, lua_table_literal
from ._memory import MEMORY_LIMIT_VARIABLE as MEMORY_LIMIT_VARIABLE
from ._memory import memory_limit
from ._mpi import Collectives
from ._popen import Commands
from ._state import LuaState

INPUT_EOF, INPUT_NOT_ALLOWED, INPUT_INTERRUPTED = -1, -2, -3
_COMMAND_OPS = frozenset({"popen", "popen_fd", "popen_release", "pclose", "pforget"})
log = logging.getLogger("kernelsdk_lua")


def _byte_offset(text: str, pos: int) -> int:
    return len(text[:pos].encode())


def _char_offset(text: str, byte_pos: int) -> int:
    return len(text.encode()[:byte_pos].decode("utf-8", "ignore"))


_BLOCK_OPENER = re.compile(r"(\bdo|\bthen|\belse|\brepeat|\bfunction\b.*\)|[{(\[])\s*$")


def _indent_hint(code: str) -> str:
    """The indent of the next line: the last line's, one level deeper if it opens a block."""
    lines = [line for line in code.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    indent = last[: len(last) - len(last.lstrip())]
    return indent + "  " if _BLOCK_OPENER.search(last) else indent


class _Host:
    """The Python end of the driver's ``host(op, text, n)`` calls during one native call."""

    def __init__(self, kernel: LuaKernel, out: NativeOutput, *, cell: bool = False) -> None:
        self.kernel = kernel
        self.cell = cell  # running a cell (which runs on every rank), not a comm handler
        self.lua = kernel.lua
        self.out = out
        # Lua writes bytes; a UTF-8 character may be split across two writes.
        self.decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }
        self.blobs: list[bytes] = []

    def __call__(self, op: str, text: bytes, number: int) -> int:
        if op == "out" or op == "err":
            name = "stdout" if op == "out" else "stderr"
            self.out.write(name, self.decoders[name].decode(text))
        elif op == "native":  # a command ended (os.execute): its output goes first
            self.out.native_returned()
        elif op == "blob":
            self.blobs.append(text)
            return len(self.blobs) - 1
        elif op == "display":
            self._display(json.loads(text.decode("utf-8", "replace")))
        elif op == "input":
            return self._input(text.decode("utf-8", "replace"))
        elif op == "comm_open":
            msg = json.loads(text.decode("utf-8", "replace"))
            comm_id = self.out.run_sync(self.kernel._open_comm, msg["target_name"], msg["data"])
            return self.lua.set_reply(comm_id.encode())
        elif op == "comm":
            self.out.run_sync(self.kernel._comm_from_lua, json.loads(text.decode()))
        elif op == "register_target":
            self.out.run_sync(self.kernel._register_target, text.decode("utf-8", "replace"))
        elif op.startswith("p") and op in _COMMAND_OPS:
            return self._command(op, text, number)
        elif op.startswith("dbg_"):  # the debugger: a cell stopped in its hook (see _debugger)
            return self.kernel.lua_debugger.host(op, text, self.out)
        elif op.startswith("mpi_"):
            # A collective: blocks this worker thread (not Trio's) until every rank is there.
            if not self.cell:
                return self.lua.set_reply(b"Eonly cells run on every rank, comm handlers do not")
            reply = self.kernel.mpi.call(op[4:], text, number, lambda: self.out.interrupted)
            return self.lua.set_reply(reply)
        return 0

    def _command(self, op: str, text: bytes, number: int) -> int:
        """io.popen (see _popen): start, hand the pipe to Lua, close, forget."""
        commands = self.kernel.commands
        if op == "popen":
            try:
                return commands.open(text.decode("utf-8", "surrogateescape"), write=number == 1)
            except OSError as exc:
                return -self.lua.set_reply(f"{text.decode(errors='replace')}: {exc}".encode())
        if op == "popen_fd":
            return commands.pipe_fd(number)
        if op == "popen_release":
            commands.release(number)
        elif op == "pclose":
            return commands.close(number, self._write_captured)
        elif op == "pforget":
            commands.forget(number)
        return 0

    def _write_captured(self, name: str, text: str) -> None:
        self.out.write(name, text)

    def _input(self, prompt: str) -> int:
        try:
            value = self.out.input(prompt)
        except StdinNotAllowedError:
            return INPUT_NOT_ALLOWED
        except EOFError:
            return INPUT_EOF
        if value is None:
            return INPUT_INTERRUPTED
        return self.lua.set_reply(value.encode())

    def _decode(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"$blob"}:
            return base64.b64encode(self.blobs[int(value["$blob"])]).decode("ascii")
        if isinstance(value, dict) and set(value) == {"$json"}:
            return json.loads(value["$json"])
        return value

    def _display(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "clear":
            wait = bool(msg.get("wait"))
            self.out.emit(lambda ctx: ctx.clear_output(wait))
            return
        data = {mime: self._decode(v) for mime, v in msg.get("data", {}).items()}
        metadata = msg.get("metadata") or {}
        if not isinstance(metadata, dict):
            metadata = {}
        display_id = msg.get("display_id")
        if op == "update" and display_id is not None:
            self.out.emit(lambda ctx: ctx.update_display(display_id, data, metadata))
        else:
            self.out.emit(lambda ctx: ctx.display(data, metadata, display_id=display_id))


class LuaKernel(BaseKernel):
    """Lua 5.4 (the runtime bundled with lupa, or Debian's liblua5.4)."""

    lua_version: ClassVar[str] = "5.4"
    implementation = "kernelsdk-lua"
    implementation_version = "0.1.0"
    language_info = {
        "name": "lua",
        "version": "5.4",
        "mimetype": "text/x-lua",
        "file_extension": ".lua",
        "pygments_lexer": "lua",
        "codemirror_mode": "lua",
    }
    display_name = "Lua 5.4"
    help_links = [{"text": "Lua reference manual", "url": "https://www.lua.org/manual/5.4/"}]
    resources = Path(__file__).parent / "resources"  # the launcher's logos
    # os.execute, C modules that print, io.popen's children: their output is the cell's.
    capture_native_output = True
    # A subshell's cell runs at a hook point of the running cell (see _state): same state.
    concurrent_subshells = True
    # Breakpoints, stepping, variables and evaluate in JupyterLab (see _debugger).
    debugger_class = LuaDebugger

    def __init__(self) -> None:
        super().__init__()
        self.library = load_library(self.lua_version)
        # The memory guard: on by default (see _memory), KERNELSDK_LUA_MEMORY_LIMIT=off stops it.
        limit = memory_limit(os.environ.get(MEMORY_LIMIT_VARIABLE))
        self.lua = LuaState(
            self.library,
            memory_limit=limit.limit if limit is not None else None,
            memory_origin=limit.origin if limit is not None else "",
        )
        self.commands = Commands()  # io.popen's
        # Lua's `mpi` table: under `--mpi`, collectives on duplicates of COMM_WORLD made now
        # (every rank creates its kernel once, at startup); otherwise rank 0 of 1.
        world = kernelsdk_mpi.world()
        # Calls interleave at hook points (kernel subshells), except under MPI, where every
        # rank must run the same calls in one order (RootKernel claims no subshells there).
        self.interleaves = world is None
        self.runner = NativeRunner(self._stop, preempt=self._preempt if self.interleaves else None)
        self.mpi = Collectives(world.Dup() if world is not None else None)
        self.lua.call(f"K.mpi_setup({self.mpi.rank}, {self.mpi.size})")
        self.lua_debugger.load()  # sets no hook: free until a frontend debugs
        version = self.lua.version_string or f"Lua {self.lua_version}"
        # The running library's version and name (the class attributes describe the spec).
        self.runtime_version = version.split()[-1]
        self.runtime_banner = f"{version} (kernelsdk, {os.path.basename(self.library.path)})"

    def kernel_info(self) -> dict[str, Any]:
        info = super().kernel_info()
        info["language_info"] = {**info["language_info"], "version": self.runtime_version}
        info["banner"] = self.runtime_banner
        return info

    def _preempt(self) -> None:
        # A call of another shell waits: the running cell pauses at its next instruction, or,
        # stopped at a breakpoint, lends the state from its debugger's wait.
        self.lua.preempt()
        self.lua_debugger.wake()

    @property
    def lua_debugger(self) -> LuaDebugger:
        assert isinstance(self.debugger, LuaDebugger)
        return self.debugger

    def _stop(self) -> None:
        # Called on the Trio thread on interrupt: stop Lua, and the commands io.popen started
        # (Lua may be blocked reading one of them, out of reach of any hook); a cell stopped
        # at a breakpoint ends.
        self.lua_debugger.release()
        self.lua.interrupt()
        self.commands.interrupt()

    # -- execution --------------------------------------------------------------------------

    async def do_execute(self, code: str, ctx: ExecuteContext) -> dict[str, Any] | None:
        self.mpi.new_cell()
        # Each subshell counts its own cells: its chunk names must not reuse the main shell's.
        subshell = ctx.request.header.subshell_id
        where = "" if subshell is None else f"@{subshell[:8]}"
        outcome = await self.runner.run(
            self._execute, code, f"In[{ctx.execution_count}{where}]", ctx=ctx, interleave=True
        )
        if outcome.get("interrupted"):
            raise ExecutionError(**interrupt_error())
        if "ename" in outcome:
            evalue = str(outcome.get("evalue", ""))
            tb = str(outcome.get("traceback") or f"{outcome['ename']}: {evalue}")
            raise ExecutionError(str(outcome["ename"]), evalue, tb.splitlines())
        value = outcome.get("value")
        return None if value is None else {"text/plain": value}

    def _execute(self, out: NativeOutput, code: str, chunkname: str) -> dict[str, Any]:
        self.lua.set_interrupt_pending(out.interrupted)
        self.lua_debugger.before_cell(code, chunkname)
        return self.lua.execute(code, chunkname, _Host(self, out, cell=True), turn=out)

    def do_interrupt(self) -> None:
        self.runner.interrupt()

    async def _call_json(self, expression: str) -> Any:
        def call(out: NativeOutput) -> Any:
            self.lua.host = _Host(self, out)
            try:
                return self.lua.call_json(expression)
            finally:
                self.lua.host = None

        return await self.runner.run(call, interleave=True)

    # -- introspection ----------------------------------------------------------------------

    async def do_complete(self, code: str, cursor_pos: int) -> Completions:
        result = await self._call_json(
            f"K.complete({lua_literal(code)}, {_byte_offset(code, cursor_pos)})"
        )
        if not result:
            return Completions([], cursor_pos, cursor_pos)
        matches = list(result.get("matches") or [])
        types = list(result.get("types") or [])
        metadata = {
            "_jupyter_types_experimental": [
                {
                    "text": m,
                    "type": t,
                    "start": _char_offset(code, result["start"]),
                    "end": _char_offset(code, result["end"]),
                }
                for m, t in zip(matches, types, strict=False)
            ]
        }
        return Completions(
            matches,
            _char_offset(code, result["start"]),
            _char_offset(code, result["end"]),
            metadata,
        )

    async def do_inspect(
        self, code: str, cursor_pos: int, detail_level: int
    ) -> dict[str, Any] | None:
        result = await self._call_json(
            f"K.inspect({lua_literal(code)}, {_byte_offset(code, cursor_pos)}, {detail_level})"
        )
        if not result:
            return None
        return {"text/plain": result["text"]}

    async def do_is_complete(self, code: str) -> IsComplete:
        status = await self.runner.run(
            lambda out: self.lua.call(f"K.is_complete({lua_literal(code)})"), interleave=True
        )
        if status == "incomplete":
            return IsComplete("incomplete", _indent_hint(code))
        return IsComplete("invalid" if status == "invalid" else "complete")

    async def do_shutdown(self, restart: bool) -> None:
        await self.runner.run(lambda out: self.lua.close())
        self.commands.end_all()  # the commands io.popen started that Lua left open

    # -- comms ------------------------------------------------------------------------------

    def _open_comm(self, target: str, data: Any) -> str:
        comm = self.comms.open(target, data if isinstance(data, dict) else {"value": data})
        comm.on_msg(self._comm_msg_to_lua)
        comm.on_close(self._comm_close_to_lua)
        return comm.comm_id

    def _comm_from_lua(self, msg: dict[str, Any]) -> None:
        comm = self.comms.get(str(msg.get("comm_id")))
        if comm is None:
            return
        data = msg.get("data")
        data = data if isinstance(data, dict) else {"value": data}
        if msg.get("op") == "close":
            comm.close(data)
        elif not comm.closed:
            comm.send(data)

    def _register_target(self, name: str) -> None:
        self.comms.register_target(name, self._comm_open_to_lua)

    async def _comm_event(self, kind: str, comm: Comm, msg: Message) -> None:
        # Runs the Lua handler like a cell (interruptible), interleaved with a running cell.
        data = msg.content.get("data") or {}
        prepare = (
            f"K.comm_event({lua_literal(kind)}, {lua_literal(comm.comm_id)}, "
            f"{lua_literal(comm.target_name)}, {lua_literal(lua_table_literal(data))})"
        )

        def run(out: NativeOutput) -> dict[str, Any]:
            self.lua.set_interrupt_pending(out.interrupted)
            return self.lua.run_coroutine(prepare, _Host(self, out), turn=out)

        outcome = await self.runner.run(run, interleave=True)
        if "ename" in outcome:
            log.warning("Lua comm handler failed: %s", outcome.get("traceback") or outcome)

    async def _comm_open_to_lua(self, comm: Comm, msg: Message) -> None:
        comm.on_msg(self._comm_msg_to_lua)
        comm.on_close(self._comm_close_to_lua)
        await self._comm_event("open", comm, msg)

    async def _comm_msg_to_lua(self, comm: Comm, msg: Message) -> None:
        await self._comm_event("msg", comm, msg)

    async def _comm_close_to_lua(self, comm: Comm, msg: Message) -> None:
        await self._comm_event("close", comm, msg)


class Lua51Kernel(LuaKernel):
    """Lua 5.1 (PUC-Rio; not LuaJIT)."""

    lua_version = "5.1"
    display_name = "Lua 5.1"
    language_info = {**LuaKernel.language_info, "version": "5.1"}
    help_links = [{"text": "Lua reference manual", "url": "https://www.lua.org/manual/5.1/"}]


class Lua52Kernel(LuaKernel):
    """Lua 5.2."""

    lua_version = "5.2"
    display_name = "Lua 5.2"
    language_info = {**LuaKernel.language_info, "version": "5.2"}
    help_links = [{"text": "Lua reference manual", "url": "https://www.lua.org/manual/5.2/"}]


class Lua53Kernel(LuaKernel):
    """Lua 5.3."""

    lua_version = "5.3"
    display_name = "Lua 5.3"
    language_info = {**LuaKernel.language_info, "version": "5.3"}
    help_links = [{"text": "Lua reference manual", "url": "https://www.lua.org/manual/5.3/"}]


class Lua55Kernel(LuaKernel):
    """Lua 5.5."""

    lua_version = "5.5"
    display_name = "Lua 5.5"
    language_info = {**LuaKernel.language_info, "version": "5.5"}
    help_links = [{"text": "Lua reference manual", "url": "https://www.lua.org/manual/5.5/"}]
