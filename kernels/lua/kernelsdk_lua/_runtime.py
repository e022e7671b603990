"""A Lua state driven through the Lua C API with cffi in ABI mode (no compiler needed).

Where the runtime comes from: the ``lupa`` wheel ships each Lua version as an extension module
(``lupa/lua54.cpython-*.so``) that also exports the whole Lua C API; we ``dlopen`` it and
declare by hand the few functions we use. That export is an implementation detail of lupa,
hence the pinned major version and the symbol check in :func:`load_library`. Debian's system
library (``liblua5.4.so.0``) works the same way.

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
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cffi

from ._memory import MEMORY_LIMIT_VARIABLE, format_size
from ._memory import parse_size as parse_size  # re-exported: it lived here before _memory

LUA_OK, LUA_YIELD, LUA_ERRMEM = 0, 1, 4
LUA_TSTRING, LUA_TTHREAD = 4, 8
LUA_MASKCOUNT = 1 << 3
LUA_GCCOUNT, LUA_GCCOUNTB = 3, 4
#: How often the memory guard checks the heap while user code runs, besides after each GC
#: cycle (see LuaState._watch_memory): a hook call every 10 ms costs nothing measurable.
WATCH_INTERVAL = 0.01
#: How much the heap may grow between two GC cycles, at most, with Lua's default settings
#: (measured: 1.75 in Lua 5.2, 2 in 5.1, 2.25 in 5.3, 5.4 and 5.5), with a margin.
CYCLE_GROWTH = 2.5
ARM_KEY = 0x4B53444B  # registry slot of the driver's arm_interrupt (see driver.lua)

_COMMON_CDEF = """
typedef struct lua_State lua_State;
typedef struct lua_Debug lua_Debug;
typedef int (*lua_CFunction)(lua_State *L);
typedef void (*lua_Hook)(lua_State *L, lua_Debug *ar);
lua_State *luaL_newstate(void);
void lua_close(lua_State *L);
int lua_gettop(lua_State *L);
void lua_settop(lua_State *L, int idx);
void lua_pushvalue(lua_State *L, int idx);
int lua_type(lua_State *L, int idx);
const char *lua_tolstring(lua_State *L, int idx, size_t *len);
lua_State *lua_tothread(lua_State *L, int idx);
void lua_pushcclosure(lua_State *L, lua_CFunction fn, int n);
void lua_pushinteger(lua_State *L, long long n);  /* lua_Integer: 64 bits on 64-bit builds */
void lua_rawgeti(lua_State *L, int idx, long long n);  /* 5.3+ return the type: unused */
void lua_sethook(lua_State *L, lua_Hook func, int mask, int count);  /* 5.1, 5.2: int */
typedef void *(*lua_Alloc)(void *ud, void *ptr, size_t osize, size_t nsize);
void lua_setallocf(lua_State *L, lua_Alloc f, void *ud);
lua_Alloc lua_getallocf(lua_State *L, void **ud);
lua_Hook lua_gethook(lua_State *L);
int lua_gethookmask(lua_State *L);
int lua_gethookcount(lua_State *L);
"""

# 5.2+: the continuation-aware calls. (5.2 declares ctx as int and k as a lua_CFunction; on the
# 64-bit ABIs we run on, both travel in registers, so one declaration serves 5.2 to 5.5.)
_MODERN_CDEF = """
typedef intptr_t lua_KContext;
typedef int (*lua_KFunction)(lua_State *L, int status, lua_KContext ctx);
long long lua_tointegerx(lua_State *L, int idx, int *isnum);
int luaL_loadbufferx(lua_State *L, const char *buff, size_t sz, const char *name,
                     const char *mode);
int lua_pcallk(lua_State *L, int nargs, int nresults, int errfunc, lua_KContext ctx,
               lua_KFunction k);
int lua_yieldk(lua_State *L, int nresults, lua_KContext ctx, lua_KFunction k);
"""
_MODERN_SYMBOLS = ["lua_tointegerx", "luaL_loadbufferx", "lua_pcallk", "lua_yieldk"]

_LUA51_CDEF = """
long long lua_tointeger(lua_State *L, int idx);
int luaL_loadbuffer(lua_State *L, const char *buff, size_t sz, const char *name);
int lua_pcall(lua_State *L, int nargs, int nresults, int errfunc);
"""
_LUA51_SYMBOLS = ["lua_tointeger", "luaL_loadbuffer", "lua_pcall"]

_LIBC_CDEF = """
void *realloc(void *ptr, size_t size);
void free(void *ptr);
"""
_libc_ffi = cffi.FFI()
_libc_ffi.cdef(_LIBC_CDEF)
_libc: Any = None


@dataclass(frozen=True)
class Flavor:
    """What differs between the Lua versions we support."""

    name: str  # "5.4"
    resume_cdef: str
    openlibs_cdef: str
    resume_has_nres: bool
    openlibs_selected: bool  # 5.5: luaL_openlibs is a macro over luaL_openselectedlibs
    registry_index: int = -1001000  # -LUAI_MAXSTACK - 1000
    # 5.3+: lua_isyieldable tells whether a hook may yield; 5.1 and 5.2 lack it, so their
    # interrupt hook always takes the error path.
    has_isyieldable: bool = True
    lua51_api: bool = False  # lua_pcall, luaL_loadbuffer, lua_tointeger, lua_resume(L, n)
    globals_index: int | None = None  # 5.1: LUA_GLOBALSINDEX (else registry[2] is _G)
    gc_variadic: bool = True  # 5.4+: lua_gc(L, what, ...); before: lua_gc(L, what, data)


FLAVORS = {
    "5.1": Flavor(
        "5.1",
        "int lua_resume(lua_State *L, int narg);",
        "void luaL_openlibs(lua_State *L);",
        resume_has_nres=False,
        openlibs_selected=False,
        registry_index=-10000,
        has_isyieldable=False,
        lua51_api=True,
        globals_index=-10002,
        gc_variadic=False,
    ),
    "5.2": Flavor(
        "5.2",
        "int lua_resume(lua_State *L, lua_State *from, int narg);",
        "void luaL_openlibs(lua_State *L);",
        resume_has_nres=False,
        openlibs_selected=False,
        has_isyieldable=False,
        gc_variadic=False,
    ),
    "5.3": Flavor(
        "5.3",
        "int lua_resume(lua_State *L, lua_State *from, int narg);",
        "void luaL_openlibs(lua_State *L);",
        resume_has_nres=False,
        openlibs_selected=False,
        gc_variadic=False,
    ),
    "5.4": Flavor(
        "5.4",
        "int lua_resume(lua_State *L, lua_State *from, int narg, int *nres);",
        "void luaL_openlibs(lua_State *L);",
        resume_has_nres=True,
        openlibs_selected=False,
    ),
    "5.5": Flavor(
        "5.5",
        "int lua_resume(lua_State *L, lua_State *from, int narg, int *nres);",
        "void luaL_openselectedlibs(lua_State *L, int load, int preload);",
        resume_has_nres=True,
        openlibs_selected=True,
        registry_index=-((2**31 - 1) // 2 + 1000),  # 5.5: -(INT_MAX/2 + 1000)
    ),
}

REQUIRED = [
    "luaL_newstate",
    "lua_close",
    "lua_gettop",
    "lua_settop",
    "lua_pushvalue",
    "lua_type",
    "lua_tolstring",
    "lua_tothread",
    "lua_pushcclosure",
    "lua_pushinteger",
    "lua_rawgeti",
    "lua_sethook",
    "lua_resume",
    "lua_setallocf",
    "lua_getallocf",
    "lua_gethook",
    "lua_gethookmask",
    "lua_gethookcount",
    "lua_gc",
]

SYSTEM_LIBRARIES = {
    "5.1": ["liblua5.1.so.0"],
    "5.4": ["liblua5.4.so.0", "liblua5.4.so"],
    "5.3": ["liblua5.3.so.0"],
    "5.2": ["liblua5.2.so.0"],
}
LUPA_MODULES = {"5.1": "lua51", "5.2": "lua52", "5.3": "lua53", "5.4": "lua54", "5.5": "lua55"}
INSTALL_HINT = (
    "install the lupa wheel, which bundles Lua ({}) (`pip install 'lupa>=2,<3'`), or Debian's "
    "system Lua (`apt-get install liblua5.4-0`)"
)


class LuaNotFoundError(RuntimeError):
    """No usable Lua runtime of the requested version."""


@dataclass
class LuaLibrary:
    version: str
    path: str
    ffi: cffi.FFI
    lib: Any
    flavor: Flavor


def library_variable(version: str) -> str:
    """The environment variable that forces the library of Lua ``version``."""
    return "KERNELSDK_LUA{}_LIBRARY".format(version.replace(".", ""))


def candidate_paths(version: str) -> list[str]:
    """Where Lua ``version`` may be: ``$KERNELSDK_LUA54_LIBRARY`` (a path or a soname such as
    ``liblua5.4.so.0``) if set, else lupa's module, then the system library."""
    paths: list[str] = []
    forced = os.environ.get(library_variable(version))
    if forced:
        return [forced]
    module = LUPA_MODULES.get(version)
    if module is not None:
        # Only lupa's directory: its Python API is not used (nor imported).
        spec = importlib.util.find_spec("lupa")
        if spec is not None and spec.origin is not None:
            lupa_dir = Path(spec.origin).parent
            paths += sorted(glob.glob(str(lupa_dir / f"{module}.cpython-*.so")))
            paths += sorted(glob.glob(str(lupa_dir / f"{module}*.pyd")))
    paths += SYSTEM_LIBRARIES.get(version, [])
    return paths


def load_library(version: str = "5.4") -> LuaLibrary:
    """dlopen the first usable Lua ``version`` and check it exports what we call.

    Raises:
        LuaNotFoundError: with what was tried and what to install.
    """
    flavor = FLAVORS[version]
    tried: list[str] = []
    for path in candidate_paths(version):
        ffi = cffi.FFI()
        extra = "int lua_isyieldable(lua_State *L);" if flavor.has_isyieldable else ""
        api = _LUA51_CDEF if flavor.lua51_api else _MODERN_CDEF
        gc = (
            "int lua_gc(lua_State *L, int what, ...);"
            if flavor.gc_variadic
            else "int lua_gc(lua_State *L, int what, int data);"
        )
        ffi.cdef(
            "\n".join([_COMMON_CDEF, api, flavor.resume_cdef, flavor.openlibs_cdef, gc, extra])
        )
        try:
            lib = ffi.dlopen(path)
        except OSError as exc:
            tried.append(f"{path}: {exc}")
            continue
        needed = [
            *REQUIRED,
            "luaL_openselectedlibs" if flavor.openlibs_selected else "luaL_openlibs",
            *(["lua_isyieldable"] if flavor.has_isyieldable else []),
            *(_LUA51_SYMBOLS if flavor.lua51_api else _MODERN_SYMBOLS),
        ]
        missing = []
        for symbol in needed:
            try:
                getattr(lib, symbol)
            except AttributeError:
                missing.append(symbol)
        if missing:
            tried.append(f"{path}: lacks {', '.join(missing)}")
            continue
        if _exported is not None and _exported[0] != path:
            # See export_symbols: the exported library's lua_* would replace this one's own.
            raise LuaNotFoundError(
                f"cannot load {path}: this process already exports the C API of {_exported[0]} "
                "to Lua C modules, so the two Lua libraries would mix (run one Lua per process)"
            )
        return LuaLibrary(version, path, ffi, lib, flavor)
    raise LuaNotFoundError(
        f"no Lua {version} runtime found; "
        + INSTALL_HINT.format(version)
        + (f". Tried: {'; '.join(tried)}" if tried else "")
    )


#: The Lua library whose symbols this process exports (see export_symbols), and its handle.
_exported: tuple[str, ctypes.CDLL] | None = None


def export_symbols(library: LuaLibrary) -> str | None:
    """Make ``library``'s ``lua_*`` symbols global (``RTLD_GLOBAL``), so that the C modules
    ``require`` loads (LuaRocks' ``lfs.so``, Debian's ``lpeg.so``: they leave ``lua_*``
    undefined, to be found in the process that loads them) link against this Lua.

    Done only when a C module is about to be loaded, not at startup, because it is not
    reversible: lupa's modules call their own API through the PLT, so a Lua library loaded
    *after* another one went global would run the global one's functions on its own states.
    Returns None on success, else why it failed.
    """
    global _exported
    if _exported is not None:
        return None if _exported[0] == library.path else f"{_exported[0]} exports its C API"
    try:
        # RTLD_NOLOAD: the library is loaded already; this only promotes it to global.
        handle = ctypes.CDLL(library.path, mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    except OSError as exc:
        return str(exc)
    _exported = (library.path, handle)
    return None


def lua_literal(text: str | bytes) -> str:
    """A Lua string literal for ``text`` (decimal escapes: safe for any byte)."""
    data = text.encode() if isinstance(text, str) else text
    out = ['"']
    for b in data:
        if 32 <= b < 127 and b not in (34, 92):
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def lua_table_literal(value: Any) -> str:
    """Lua constructor syntax for a JSON-like value (comm data travelling to Lua)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value and abs(value) != float("inf") else "0/0"
    if isinstance(value, str):
        return lua_literal(value)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua_table_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"[{lua_literal(str(k))}] = {lua_table_literal(v)}" for k, v in value.items()
            )
            + "}"
        )
    return lua_literal(str(value))


def module_paths(version: str) -> tuple[str, str]:
    """Where LuaRocks (``--local`` and system-wide) and Debian's ``lua-*`` packages put Lua
    ``version``'s modules: (``package.path`` templates, ``package.cpath`` templates) to append.
    Empty where ``LUA_PATH``/``LUA_CPATH`` (or their ``_5_4`` forms) are set: those replace
    Lua's defaults on purpose (``eval "$(luarocks path)"``)."""
    import sysconfig

    suffix = "_" + version.replace(".", "_")
    home = Path.home()
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    lua_dirs = [f"{home}/.luarocks/share/lua/{version}", f"/usr/local/share/lua/{version}"]
    lua_dirs.append(f"/usr/share/lua/{version}")
    c_dirs = [f"{home}/.luarocks/lib/lua/{version}", f"/usr/local/lib/lua/{version}"]
    if multiarch:
        c_dirs.append(f"/usr/lib/{multiarch}/lua/{version}")
    c_dirs.append(f"/usr/lib/lua/{version}")
    path = ";".join(f"{d}/?.lua;{d}/?/init.lua" for d in lua_dirs)
    cpath = ";".join(f"{d}/?.so" for d in c_dirs)
    if os.environ.get("LUA_PATH" + suffix) or os.environ.get("LUA_PATH"):
        path = ""
    if os.environ.get("LUA_CPATH" + suffix) or os.environ.get("LUA_CPATH"):
        cpath = ""
    return path, cpath


#: Called for every host operation the driver performs: (op, text, number) -> integer reply.
HostFn = Callable[[str, bytes, int], int]


class MemoryGuard:
    """Keeps the Lua state under ``limit`` bytes without a Python call per allocation.

    Lua's own allocator (C, from ``luaL_newstate``) serves allocations while the state is far
    from the limit. The driver keeps a sentinel object whose finalizer runs once per garbage
    collection cycle and calls ``host("gc")``; that sets a one-shot count hook (finalizers
    cannot read the memory count in Lua 5.4.6+), whose callback reads the count with
    ``lua_gc(LUA_GCCOUNT)`` and, above ``watch_from`` (a third of the limit: in a runaway
    loop the heap grows at most about 2.3 times between two cycles with Lua's default GC
    settings), switches to :meth:`_alloc`, a Python ``lua_Alloc`` that refuses to grow past
    the limit. Lua turns a refused allocation into an emergency full collection and, if that
    frees too little, a "not enough memory" error raised by Lua itself after the callback has
    returned (no longjmp crosses it). After the cell, once a full collection brings the heap
    under ``release_below``, Lua's own allocator comes back. Costs: one Python call per GC
    cycle far from the limit; near it, allocation-heavy Lua runs several times slower.

    The limit applies only while user code runs (``active``): the driver's own calls between
    cells never fail for memory, so a state left full by the user stays usable. Blocks come
    from the C library's realloc/free, like Lua's default allocator, which is why the two can
    be swapped on a state that holds memory.
    """

    def __init__(self, ffi: cffi.FFI, lib: Any, L: Any, limit: int, origin: str) -> None:
        global _libc
        if _libc is None:
            _libc = _libc_ffi.dlopen(None)
        self.limit, self.origin = limit, origin
        self.watch_from = limit // 3
        self.release_below = limit // 4
        self._ffi, self._lib, self._L = ffi, lib, L
        self._null = ffi.NULL
        self.callback = ffi.callback("void*(void*, void*, size_t, size_t)", self._alloc)
        ud = ffi.new("void **")
        self._default_alloc = lib.lua_getallocf(L, ud)
        self._default_ud = ud[0]
        self.precise = False  # self._alloc is the state's allocator
        self.active = False  # user code runs: refuse to grow past the limit
        self.used = 0  # bytes, counted by self._alloc while precise
        self.refused = 0
        self.engagements = 0  # how often precise mode was entered (tests, diagnostics)

    def _alloc(self, ud: Any, ptr: Any, osize: int, nsize: int) -> Any:
        if ptr == self._null:
            osize = 0  # then osize encodes the kind of object, not a size
        if nsize == 0:
            _libc.free(ptr)
            self.used -= osize
            return self._null
        if self.active and nsize > osize and self.used + nsize - osize > self.limit:
            self.refused += 1
            return self._null
        new = _libc.realloc(ptr, nsize)
        if new != _libc_ffi.NULL:
            self.used += nsize - osize
        return new

    def engage(self, used: int) -> None:
        """Switch to the counting allocator; ``used`` is the heap's size now."""
        if not self.precise:
            self.used = used
            self._lib.lua_setallocf(self._L, self.callback, self._null)
            self.precise = True
            self.engagements += 1

    def release(self) -> None:
        """Back to Lua's own allocator."""
        if self.precise:
            self._lib.lua_setallocf(self._L, self._default_alloc, self._default_ud)
            self.precise = False

    def describe(self) -> str:
        return (
            f"Lua's memory limit in this kernel is {format_size(self.limit)} ({self.origin}); "
            f"set {MEMORY_LIMIT_VARIABLE} (e.g. 4G, 75% or off) in the kernelspec to change it"
        )


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

    def execute(self, code: str, chunkname: str, host: HostFn) -> dict[str, Any]:
        """Run a cell to its end (or interrupt); returns the driver's outcome."""
        prepare = f"K.prepare({lua_literal(code)}, {lua_literal('=' + chunkname)})"
        return self.run_coroutine(prepare, host)

    def run_coroutine(self, prepare: str, host: HostFn) -> dict[str, Any]:
        """Run user code as an interruptible coroutine: ``prepare`` is a driver call returning
        ``"ready", coroutine`` (or an outcome) and the coroutine returns the outcome as JSON."""
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
                self._nested.clear()
            self.call("K.finish()")
            self.host = None
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
            self._arm_memory_check_locked(L)

    def _arm_memory_check_locked(self, L: Any) -> None:
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
                        self._arm_memory_check_locked(co)

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
        """Stop the running cell soon. Called from another thread than the one running Lua."""
        with self._lock:
            self._interrupt_pending = True
            # Safe from another thread: Lua's own `lua` REPL does this from a signal handler.
            # The cell's coroutine and every coroutine it is running (nested resumes): the
            # innermost stops with an error, the cell's then yields.
            for co in [self._co, *self._nested.values()]:
                if co is not None:
                    self.lib.lua_sethook(co, self._hook_cb, LUA_MASKCOUNT, 1)

    def _hook_entry(self, L: Any, ar: Any) -> None:
        # Runs on the Lua thread, inside the VM: consume nothing, raise nothing. Set either by
        # interrupt() or by the memory check (_arm_memory_check); the pending flag, read after
        # the hook is removed, tells which (interrupt() sets it before setting the hook).
        lib, ffi = self.lib, self.ffi
        saved = self._saved_hooks.pop(int(ffi.cast("uintptr_t", L)), None)
        if saved is not None and saved[0] != ffi.NULL:
            lib.lua_sethook(L, saved[0], saved[1], saved[2])
        else:
            lib.lua_sethook(L, ffi.NULL, 0, 0)
        if not (self._interrupt_pending and self._co is not None):
            self._check_memory(L)
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
