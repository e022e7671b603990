"""A Jupyter kernel for Lua, built on kernelsdk: the Lua C API through cffi (ABI mode).

Entry points (group ``kernelsdk.kernels``): ``lua54`` (default), ``lua51``, ``lua52``,
``lua53``, ``lua55``.
"""

from ._ffi import LuaNotFoundError, load_library
from ._kernel import Lua51Kernel, Lua52Kernel, Lua53Kernel, Lua55Kernel, LuaKernel

__all__ = [
    "Lua51Kernel",
    "Lua52Kernel",
    "Lua53Kernel",
    "Lua55Kernel",
    "LuaKernel",
    "LuaNotFoundError",
    "load_library",
]
