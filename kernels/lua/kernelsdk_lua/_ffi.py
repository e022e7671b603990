"""The Lua C library: finding it, declaring the part of its C API we call, loading it.

Where the runtime comes from: the ``lupa`` wheel ships each Lua version as an extension module
(``lupa/lua54.cpython-*.so``) that also exports the whole Lua C API; we ``dlopen`` it and
declare by hand the few functions we use. That export is an implementation detail of lupa,
hence the pinned major version and the symbol check in :func:`load_library`. Debian's system
library (``liblua5.4.so.0``) works the same way.

What differs between Lua versions (5.1's ``lua_pcall``, 5.4's ``lua_resume`` with ``nres``,
5.5's ``luaL_openselectedlibs``, the registry's index) is one :class:`Flavor` per version. Also
here, because they concern the installation rather than a state: where LuaRocks and Debian put
Lua modules (:func:`module_paths`), and making the library's symbols global for the C modules
``require`` loads (:func:`export_symbols`). Which of these functions may be called from Python,
and how, is :class:`~kernelsdk_lua._state.LuaState`'s business.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cffi

LUA_OK, LUA_YIELD, LUA_ERRMEM = 0, 1, 4
LUA_TSTRING, LUA_TTHREAD = 4, 8
LUA_MASKCOUNT = 1 << 3
LUA_GCCOUNT, LUA_GCCOUNTB = 3, 4

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
