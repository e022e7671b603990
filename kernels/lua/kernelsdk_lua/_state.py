"""One Lua state with the kernel's driver loaded, driven through the Lua C API (cffi, ABI mode).

:mod:`._ffi` finds and loads the library; :class:`LuaState` creates a state, loads
``driver.lua`` into it, runs cells as interruptible coroutines, serves the driver's host
callbacks and keeps the state under the memory guard's limit (:mod:`._memory_guard`).

The one rule: **no Lua error may longjmp through a Python frame** (it would skip Python's
stack unwinding and corrupt the interpreter). So:

* every call that can raise (compiling, running, converting values, allocating) happens
  inside ``lua_pcall`` or inside the cell's coroutine (``lua_resume`` is protected);
* from Python we only call API functions that cannot raise outside protected mode: loading a
  chunk (``luaL_loadbufferx`` is protected internally), ``lua_pushvalue``, ``lua_settop``,
  ``lua_type``, ``lua_tolstring`` on values that already are strings, ``lua_sethook``;
* Python callbacks (``host`` and the interrupt hook) only read strings and push at most an
  integer; strings travel back to Lua as integers the driver reassembles.

Interrupts (from the Trio thread, while the worker thread runs Lua): a count hook is set on
the cell's coroutine only when an interrupt is pending (a permanent hook halves Lua's speed);
the hook's Python callback yields the coroutine (``lua_yieldk`` from a hook returns normally,
no longjmp), which makes ``lua_resume`` return ``LUA_YIELD``. Where the coroutine cannot yield
(inside a C function such as ``table.sort``), the callback installs a Lua-level hook that
raises an error instead; Lua unwinds that itself.

Interleaving (kernel subshells): a cell of another shell may run *inside* a running cell's
hook, which is where Lua's state is consistent and Lua allows calling back into Lua (a hook
function may run any Lua code). When such a call waits for its turn (``preempt``, from its
worker thread), the same one-shot count hook is set on the running cell's coroutines; at the
next instruction :meth:`LuaState._hook_entry` pauses the cell (:meth:`Turn.pause`: its worker
thread blocks inside the hook, having saved what this object holds for it) while the waiting
call runs on the state from its own worker thread, in a coroutine of its own, to its end; then
the paused cell's state is put back and its coroutine goes on from the instruction where it
stopped. Calls nest like function calls, so the state is only ever used by one thread at a
time, and the driver keeps one record per running cell (``K.start``/``K.finish``). No hook is
set while nobody waits: a cell alone runs at full speed.

**The hook**: :meth:`LuaState._hook_entry` is the one ``lua_Hook`` the kernel sets, and
:meth:`LuaState._arm_hook_locked` the one way to set it (it keeps a user's ``debug.sethook``
hook and puts it back when it has fired). Every reason to stop Lua at an instruction is
dispatched there, in this order: an interrupt, the memory check, a call waiting to interleave.
A debugger adds its reason there too (e.g. a line hook while breakpoints are set), rather
than setting a hook of its own, which would replace this one.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

from ._ffi import (
    LUA_ERRMEM,
    LUA_GCCOUNT,
    LUA_GCCOUNTB,
    LUA_MASKCOUNT,
    LUA_OK,
    LUA_TSTRING,
    LUA_TTHREAD,
    LUA_YIELD,
    LuaLibrary,
    LuaNotFoundError,
    export_symbols,
    module_paths,
)
from ._literals import lua_literal
from ._memory import MEMORY_LIMIT_VARIABLE
from ._memory_guard import MemoryGuard

#: How often the memory guard checks the heap while user code runs, besides after each GC
#: cycle (see LuaState._watch_memory): a hook call every 10 ms costs nothing measurable.
WATCH_INTERVAL = 0.01
#: How much the heap may grow between two GC cycles, at most, with Lua's default settings
#: (measured: 1.75 in Lua 5.2, 2 in 5.1, 2.25 in 5.3, 5.4 and 5.5), with a margin.
CYCLE_GROWTH = 2.5
ARM_KEY = 0x4B53444B  # registry slot of the driver's arm_interrupt (see driver.lua)
DEBUG_SYNC_KEY = 0x4B534447  # registry slot of debugger.lua's sync (see _debugger.py)


#: Called for every host operation the driver performs: (op, text, number) -> integer reply.
HostFn = Callable[[str, bytes, int], int]


class Turn(Protocol):
    """How a cell lends the state to a call of another shell (a
    :class:`~kernelsdk.NativeOutput` of a runner made with ``preempt``)."""

    @property
    def waiting(self) -> bool:
        """A call waits to run at this cell's next safe point."""
        ...

    def pause(self) -> None:
        """Let the waiting calls run (from this cell's worker thread); return once they
        have ended."""


class _Paused:
    """What :class:`LuaState` holds for a cell while it is paused in its hook."""

    __slots__ = (
        "co",
        "hook_yielded",
        "host",
        "interrupt_pending",
        "memory_active",
        "nested",
        "reply",
        "turn",
    )

    def __init__(self, state: LuaState) -> None:
        self.co = state._co
        self.nested = state._nested
        self.host = state.host
        self.reply = state._reply
        self.turn = state._turn
        self.hook_yielded = state._hook_yielded
        self.interrupt_pending = state._interrupt_pending
        self.memory_active = state.memory is not None and state.memory.active

    def restore(self, state: LuaState) -> None:
        state._co, state._nested, state.host = self.co, self.nested, self.host
        state._reply, state._turn = self.reply, self.turn
        state._hook_yielded = self.hook_yielded
        state._interrupt_pending = self.interrupt_pending


class LuaState:
    """One Lua state with the kernel's driver loaded; used from one thread at a time."""

    def __init__(
        self,
        library: LuaLibrary,
        *,
        memory_limit: int | None = None,
        memory_origin: str = MEMORY_LIMIT_VARIABLE,
    ) -> None:
        self.library = library
        ffi, lib = library.ffi, library.lib
        self.ffi, self.lib = ffi, lib
        self.host: HostFn | None = None
        self._reply = b""
        self._co: Any = None  # the running cell's coroutine (lua_State*), or None
        self._hook_yielded = False
        self._interrupt_pending = False
        self._closed = False
        self._lock = threading.Lock()  # guards _co and _nested against the interrupting thread
        self._nested: dict[int, Any] = {}  # depth -> coroutines resumed by the cell (driver)
        self._debug_sync = False  # the debugger has news for the running cell (arm_debugger)
        self._turn: Turn | None = None  # the running cell's, when it may be paused
        self._paused: list[_Paused] = []  # cells paused in their hook, innermost last
        # thread address -> the hook (function, mask, count) the memory check replaced once
        self._saved_hooks: dict[int, tuple[Any, int, int]] = {}
        self._user_code_runs = threading.Event()  # wakes the memory watcher (_watch_memory)
        self._skip_cycles = 0  # GC cycles the driver's sentinel may let pass unchecked

        # The callbacks must stay referenced as long as the state lives.
        self._host_cb = ffi.callback("int(lua_State*)", self._host_entry, onerror=self._on_cb_error)
        self._hook_cb = ffi.callback("void(lua_State*, lua_Debug*)", self._hook_entry)
        L = lib.luaL_newstate()
        if L == ffi.NULL:
            raise MemoryError("cannot create a Lua state")
        self.L = L
        if library.flavor.openlibs_selected:
            lib.luaL_openselectedlibs(L, ~0, 0)
        else:
            lib.luaL_openlibs(L)
        if library.flavor.globals_index is not None:
            lib.lua_pushvalue(L, library.flavor.globals_index)
        else:
            lib.lua_rawgeti(L, library.flavor.registry_index, 2)  # LUA_RIDX_GLOBALS
        if lib.lua_type(L, -1) != 5:  # a table, or the registry index is wrong
            raise LuaNotFoundError(f"{library.path}: unexpected Lua ABI (registry layout)")
        lib.lua_settop(L, 0)
        driver = resources.files(__package__).joinpath("driver.lua").read_bytes()
        self._check(self._load(L, driver, b"=kernelsdk_lua"))
        # 5.2+: a C function without upvalues is a light function, pushing it does not
        # allocate. (5.1 allocates a closure here: only an out-of-memory at startup could
        # raise, outside protection, and nothing could be saved then anyway.)
        lib.lua_pushcclosure(L, self._host_cb, 0)
        self._check(self._pcall(L, 1, 1))
        # Slot 1 of the main state holds the driver table K for good.
        self.version_string = self.call("_VERSION")
        path_extra, cpath_extra = module_paths(library.version)
        self.call(f"K.extend_paths({lua_literal(path_extra)}, {lua_literal(cpath_extra)})")
        self.memory: MemoryGuard | None = None
        if memory_limit is not None:
            self.memory = MemoryGuard(ffi, lib, L, memory_limit, memory_origin)
            self.call("K.memory_guard(true)")
            threading.Thread(target=self._watch_memory, name="lua-memory", daemon=True).start()

    # -- the calls that differ between 5.1 and 5.2+ -------------------------------------------

    def _load(self, L: Any, chunk: bytes, name: bytes) -> int:
        if self.library.flavor.lua51_api:
            return int(self.lib.luaL_loadbuffer(L, chunk, len(chunk), name))
        return int(self.lib.luaL_loadbufferx(L, chunk, len(chunk), name, b"t"))

    def _pcall(self, L: Any, nargs: int, nresults: int) -> int:
        if self.library.flavor.lua51_api:
            return int(self.lib.lua_pcall(L, nargs, nresults, 0))
        return int(self.lib.lua_pcallk(L, nargs, nresults, 0, 0, self.ffi.NULL))

    def _tointeger(self, L: Any, idx: int) -> int:
        if self.library.flavor.lua51_api:
            return int(self.lib.lua_tointeger(L, idx))
        return int(self.lib.lua_tointegerx(L, idx, self.ffi.NULL))

    # -- calls into the driver -------------------------------------------------------------

    def _check(self, status: int) -> None:
        if status != LUA_OK:
            message = self._string(-1) or f"status {status}"
            self.lib.lua_settop(self.L, -2)
            raise RuntimeError(f"Lua driver failed: {message}")

    def _string(self, idx: int, L: Any = None) -> str | None:
        L = self.L if L is None else L
        if self.lib.lua_type(L, idx) != LUA_TSTRING:
            return None
        size = self.ffi.new("size_t *")
        ptr = self.lib.lua_tolstring(L, idx, size)
        return bytes(self.ffi.buffer(ptr, size[0])).decode("utf-8", "replace")

    def call_raw(self, expression: str, nresults: int = 1) -> list[Any]:
        """Evaluate ``expression`` (Lua, with ``K`` the driver) in protected mode.

        Returns the results that are strings (others as None) and leaves the stack as it was.
        """
        lib, L = self.lib, self.L
        chunk = f"local K = ...; return {expression}".encode()
        status = self._load(L, chunk, b"=kernelsdk_lua")
        if status == LUA_OK:
            lib.lua_pushvalue(L, 1)
            status = self._pcall(L, 1, nresults)
        if status != LUA_OK:
            message = self._string(-1)
            lib.lua_settop(L, 1)
            raise RuntimeError(f"Lua driver call failed: {message}")
        top = lib.lua_gettop(L)
        results = [self._string(i) for i in range(top - nresults + 1, top + 1)]
        self._results_threads = [
            lib.lua_tothread(L, i) if lib.lua_type(L, i) == LUA_TTHREAD else None
            for i in range(top - nresults + 1, top + 1)
        ]
        lib.lua_settop(L, 1)
        return results

    def call(self, expression: str) -> Any:
        return self.call_raw(expression)[0]

    def call_json(self, expression: str) -> Any:
        text = self.call(expression)
        return None if text is None else json.loads(text)

    # -- cells ------------------------------------------------------------------------------

    def execute(
        self, code: str, chunkname: str, host: HostFn, turn: Turn | None = None
    ) -> dict[str, Any]:
        """Run a cell to its end (or interrupt); returns the driver's outcome. With ``turn``,
        the cell pauses at an instruction when a call of another shell waits."""
        prepare = f"K.prepare({lua_literal(code)}, {lua_literal('=' + chunkname)})"
        return self.run_coroutine(prepare, host, turn)

    def run_coroutine(self, prepare: str, host: HostFn, turn: Turn | None = None) -> dict[str, Any]:
        """Run user code as an interruptible coroutine: ``prepare`` is a driver call returning
        ``"ready", coroutine`` (or an outcome) and the coroutine returns the outcome as JSON.
        With ``turn``, it pauses at an instruction when a call of another shell waits."""
        self.host = host
        prepared, _ = self.call_raw(prepare, 2)
        if prepared != "ready":
            early: dict[str, Any] = json.loads(prepared or "{}")  # a syntax error
            return early
        co = self._results_threads[1]
        with self._lock:
            self._co = co
            self._hook_yielded = False
            if self._interrupt_pending:  # an interrupt arrived before the cell started
                self._co = None
                self.call("K.finish()")
                return {"interrupted": True}
            self._turn = turn
            if turn is not None and turn.waiting:  # came while this cell was being prepared
                self._arm_hook_locked(co)
        memory = self.memory
        refused = memory.refused if memory is not None else 0
        try:
            if memory is not None:
                memory.active = True
                self._user_code_runs.set()
            status, text = self._resume(co)
        finally:
            if memory is not None:
                self._user_code_runs.clear()
                memory.active = False
            with self._lock:
                self._co = None
                self._turn = None
                self._nested.clear()
            self.call("K.finish()")
            self.host = None
            if not self._paused:  # not while a paused cell's user code may still allocate
                self._settle_memory()
        outcome: dict[str, Any]
        if status == LUA_OK and text is not None:
            outcome = json.loads(text)
        elif status == LUA_YIELD and self._hook_yielded:
            return {"interrupted": True}
        elif status == LUA_YIELD:
            return {
                "ename": "LuaError",
                "evalue": "attempt to yield from outside a coroutine",
                "traceback": "",
            }
        else:
            evalue = text or f"Lua error (status {status})"
            ename = "MemoryError" if status == LUA_ERRMEM else "LuaError"
            outcome = {"ename": ename, "evalue": evalue}
        refused_now = memory is not None and memory.refused > refused
        if memory is not None and refused_now and outcome.get("ename") == "MemoryError":
            # Say why, and what to do: Lua's own message is only "not enough memory".
            outcome["evalue"] = f"{outcome['evalue']} ({memory.describe()})"
            outcome["traceback"] = f"MemoryError: {outcome['evalue']}"
        return outcome

    # -- the memory guard (see MemoryGuard) ----------------------------------------------------

    def _gc_count(self, L: Any) -> int:
        """The heap's size in bytes (not inside a finalizer: Lua 5.4.6+ answers -1 there)."""
        lib = self.lib
        if self.library.flavor.gc_variadic:
            kbytes, rest = lib.lua_gc(L, LUA_GCCOUNT), lib.lua_gc(L, LUA_GCCOUNTB)
        else:
            kbytes, rest = lib.lua_gc(L, LUA_GCCOUNT, 0), lib.lua_gc(L, LUA_GCCOUNTB, 0)
        return max(int(kbytes), 0) * 1024 + max(int(rest), 0)

    def _arm_memory_check(self, L: Any) -> None:
        """After a GC cycle (the driver's sentinel was finalized): check the heap's size at
        the next instruction of thread ``L``, from a one-shot count hook."""
        with self._lock:  # against interrupt(), which sets hooks from the Trio thread
            self._arm_hook_locked(L)

    def _arm_hook_locked(self, L: Any) -> None:
        """Make :meth:`_hook_entry` run at the next instruction of thread ``L`` (one shot),
        keeping a user's hook to put back then. Called with ``_lock`` held."""
        ffi, lib = self.ffi, self.lib
        if self._closed or (self._interrupt_pending and self._co is not None):
            return  # an interrupt's hook is (about to be) set: it wins
        current = lib.lua_gethook(L)
        if current == self._hook_cb:  # cdata function pointers compare by address
            return
        # A user's debug.sethook hook is put back after the check (it misses one count).
        self._saved_hooks[int(ffi.cast("uintptr_t", L))] = (
            current,
            int(lib.lua_gethookmask(L)),
            int(lib.lua_gethookcount(L)),
        )
        lib.lua_sethook(L, self._hook_cb, LUA_MASKCOUNT, 1)

    def _watch_memory(self) -> None:
        """A daemon thread: every WATCH_INTERVAL while user code runs, the memory check on
        the running coroutines. The GC sentinel alone misses growth that runs no collector
        step: `t[i] = i` in a loop only resizes one table, and Lua's VM checks for a GC step
        when it creates objects, not when it resizes a table."""
        while True:
            self._user_code_runs.wait()
            if self._closed:
                return
            time.sleep(WATCH_INTERVAL)
            with self._lock:  # the coroutines stay anchored in Lua while _co is set
                if self._co is not None:
                    for co in [self._co, *self._nested.values()]:
                        self._arm_hook_locked(co)

    def _check_memory(self, L: Any, extra: int = 0) -> None:
        """Switch to the counting allocator when the heap (plus ``extra`` bytes about to be
        allocated) passes ``watch_from``."""
        memory = self.memory
        if memory is None or memory.precise:
            return
        used = self._gc_count(L)
        if used + extra > memory.watch_from:
            memory.engage(used)
            return
        # A small heap goes through many short GC cycles (an allocating loop over a 200 KB
        # heap: hundreds per second, two Python calls each, 10 % of its time). Between two
        # cycles the heap grows at most about 2.3-fold with Lua's default GC settings, so the
        # sentinel may skip the cycles that cannot reach watch_from (the 10 ms watcher
        # covers other settings).
        growth = memory.watch_from / max(used + extra, 1)
        self._skip_cycles = min(max(int(math.log(growth, CYCLE_GROWTH)) - 1, 0), 30)

    def _settle_memory(self) -> None:
        """After user code: leave the counting allocator once a full collection brings the
        heap back under ``release_below`` (e.g. after a failed runaway cell)."""
        memory = self.memory
        if memory is None or not memory.precise or self._closed:
            return
        gc_stopped = self.call("K.collect()") == "stopped"
        if not gc_stopped and self._gc_count(self.L) < memory.release_below:
            memory.release()

    def _resume(self, co: Any) -> tuple[int, str | None]:
        lib = self.lib
        flavor = self.library.flavor
        if flavor.lua51_api:
            status = lib.lua_resume(co, 0)
        elif flavor.resume_has_nres:
            nres = self.ffi.new("int *")
            status = lib.lua_resume(co, self.L, 0, nres)
        else:
            status = lib.lua_resume(co, self.L, 0)
        text = self._string(-1, co) if lib.lua_gettop(co) > 0 else None
        if status == LUA_OK:
            lib.lua_settop(co, 0)
        return status, text

    # -- interrupts -------------------------------------------------------------------------

    def set_interrupt_pending(self, pending: bool) -> None:
        with self._lock:
            self._interrupt_pending = pending

    def interrupt(self) -> None:
        """Stop the running cell soon, and every cell paused for it. Called from another
        thread than the one running Lua."""
        with self._lock:
            self._interrupt_pending = True
            # Safe from another thread: Lua's own `lua` REPL does this from a signal handler.
            # The cell's coroutine and every coroutine it is running (nested resumes): the
            # innermost stops with an error, the cell's then yields. A paused cell's hook
            # fires once it goes on.
            coroutines = [self._co, *self._nested.values()]
            for paused in self._paused:
                paused.interrupt_pending = True
                coroutines += [paused.co, *paused.nested.values()]
            for co in coroutines:
                if co is not None:
                    self.lib.lua_sethook(co, self._hook_cb, LUA_MASKCOUNT, 1)

    def preempt(self) -> None:
        """A call of another shell waits for the state (called from its worker thread): the
        running cell, if it may be paused, pauses at its next instruction (see
        :meth:`_hook_entry`). Cheap and non-blocking."""
        with self._lock:
            if self._co is not None and self._turn is not None:
                for co in [self._co, *self._nested.values()]:
                    self._arm_hook_locked(co)

    def arm_debugger(self) -> None:
        """The debugger has news for the running cell (breakpoints, a pause): it takes them
        at its next instruction, in :meth:`_hook_entry`. Without a running cell, the next
        cell gets them before it starts. Called from any thread."""
        with self._lock:
            self._debug_sync = True
            if self._co is not None:
                for co in [self._co, *self._nested.values()]:
                    self._arm_hook_locked(co)

    def _hook_entry(self, L: Any, ar: Any) -> None:
        """The kernel's one ``lua_Hook``: runs on the Lua thread, inside the VM, at the
        instruction where it was armed (one shot). Consume nothing, raise nothing.

        Every reason to stop there is dispatched here, in order: an interrupt (the pending
        flag, which interrupt() sets before setting the hook: the cell yields or raises),
        the memory check (after a GC cycle, or the watcher's), and a call of another shell
        waiting for the state (the running cell pauses here while it runs), and the
        debugger's news (:meth:`arm_debugger`: debugger.lua's ``sync`` runs here).
        """
        lib, ffi = self.lib, self.ffi
        saved = self._saved_hooks.pop(int(ffi.cast("uintptr_t", L)), None)
        if saved is not None and saved[0] != ffi.NULL:
            lib.lua_sethook(L, saved[0], saved[1], saved[2])
        else:
            lib.lua_sethook(L, ffi.NULL, 0, 0)
        if not (self._interrupt_pending and self._co is not None):
            self._check_memory(L)
            turn = self._turn
            if turn is not None and turn.waiting:
                self._pause(turn)
            if self._debug_sync:
                # debugger.lua's sync: new breakpoints, or a pause (it may stop right here).
                # The hook may have fired in the middle of a fetch: keep what it reads.
                self._debug_sync = False
                reply = self._reply
                lib.lua_rawgeti(L, self.library.flavor.registry_index, DEBUG_SYNC_KEY)
                if self._pcall(L, 0, 0) != LUA_OK:
                    lib.lua_settop(L, -2)
                self._reply = reply
            return
        if self._co == L and self.library.flavor.has_isyieldable and lib.lua_isyieldable(L):
            self._hook_yielded = True
            lib.lua_yieldk(L, 0, 0, self.ffi.NULL)  # in a hook: returns, the VM then yields
            return
        # Not yieldable here (a C function is on the stack, or a nested coroutine): let a Lua
        # hook raise the error, from Lua, on the next instruction.
        lib.lua_rawgeti(L, self.library.flavor.registry_index, ARM_KEY)
        if self._pcall(L, 0, 0) != LUA_OK:
            lib.lua_settop(L, -2)

    def lend(self, turn: Turn) -> None:
        """Let the calls waiting for the state run now, from the running cell's worker thread
        while it waits inside Lua (a cell stopped at a breakpoint, in its debug hook), as
        :meth:`_hook_entry` does at an instruction."""
        if turn.waiting:
            self._pause(turn)

    def _pause(self, turn: Turn) -> None:
        """Pause the running cell inside its hook while the calls waiting for the state run
        (from their own worker threads), then put back what this object holds for it."""
        memory = self.memory
        with self._lock:
            paused = _Paused(self)
            self._paused.append(paused)
            self._co, self._nested, self._turn, self.host = None, {}, None, None
            self._interrupt_pending = False
        if memory is not None:
            memory.active = False
            self._user_code_runs.clear()
        try:
            turn.pause()
        finally:
            with self._lock:
                self._paused.pop()
                paused.restore(self)  # with interrupt_pending as interrupt() left it
            if memory is not None and paused.memory_active:
                memory.active = True
                self._user_code_runs.set()

    # -- host callback ------------------------------------------------------------------------

    def _host_entry(self, L: Any) -> int:
        lib, ffi = self.lib, self.ffi
        op = self._string(1, L) or ""
        size = ffi.new("size_t *")
        text = b""
        if lib.lua_type(L, 2) == LUA_TSTRING:
            ptr = lib.lua_tolstring(L, 2, size)
            text = bytes(ffi.buffer(ptr, size[0]))
        number = self._tointeger(L, 3)
        if op == "enter":  # the driver resumes a coroutine: "thread: 0x..." (anchored in Lua)
            with self._lock:
                for d in [d for d in self._nested if d >= number]:
                    del self._nested[d]
                self._nested[number] = ffi.cast("lua_State *", int(text.split()[-1], 16))
                if self._interrupt_pending:
                    lib.lua_sethook(self._nested[number], self._hook_cb, LUA_MASKCOUNT, 1)
            value = 0
        elif op == "leave":
            with self._lock:
                for d in [d for d in self._nested if d >= number]:
                    del self._nested[d]
            value = 0
        elif op == "fetch":
            chunk = self._reply[number : number + 6]
            value = int.from_bytes(chunk, "little")
        elif op == "gc":  # from a finalizer: a GC cycle ended
            self._arm_memory_check(L)
            value = self._skip_cycles  # see _check_memory
        elif op == "reserve":  # string.rep is about to allocate `number` bytes
            self._check_memory(L, number)
            value = 0
        elif op == "cmodule":  # require found a C module: let it link against this Lua
            problem = export_symbols(self.library)
            value = 0 if problem is None else -self.set_reply(problem.encode())
        elif self.host is None:
            value = 0
        else:
            value = self.host(op, text, number)
        lib.lua_pushinteger(L, value)
        return 1

    def set_reply(self, data: bytes) -> int:
        """Make ``data`` fetchable by the driver; returns its length."""
        self._reply = data
        return len(data)

    def _on_cb_error(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # A Python exception must not cross into Lua: report it and return 0 (no results).
        import traceback

        traceback.print_exception(exc_type, exc, tb)

    def close(self) -> None:
        if not self._closed:
            with self._lock:  # finalizers run by lua_close must not arm memory checks
                self._closed = True
            self._user_code_runs.set()  # the watcher sees _closed and ends
            self.lib.lua_close(self.L)
