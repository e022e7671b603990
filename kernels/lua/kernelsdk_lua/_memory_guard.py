"""The memory guard's allocator: a counting ``lua_Alloc`` that refuses to grow past the limit.

How large the limit is comes from :mod:`._memory`; when to switch to this allocator (after a
GC cycle, or from the 10 ms watcher, near the limit) is decided by
:class:`~kernelsdk_lua._state.LuaState`; the Lua half (the GC sentinel) is in ``driver.lua``.
"""

from __future__ import annotations

from typing import Any

import cffi

from ._memory import MEMORY_LIMIT_VARIABLE, format_size

_LIBC_CDEF = """
void *realloc(void *ptr, size_t size);
void free(void *ptr);
"""
_libc_ffi = cffi.FFI()
_libc_ffi.cdef(_LIBC_CDEF)
_libc: Any = None


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
