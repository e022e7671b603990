"""kernelsdk: write Jupyter kernels for new languages as a small async subclass.

The public API is exactly what this module names in ``__all__``, plus the namespaces
:mod:`kernelsdk.protocol` (the sans-IO protocol core, like ``trio.lowlevel``),
:mod:`kernelsdk.testing`, :mod:`kernelsdk.mpi` and :mod:`kernelsdk.embed`; every name is public
in exactly one of them, and everything in ``_modules`` is private (``tests/test_exports.py``
polices both).

The runtime (Trio and pyzmq) loads lazily: ``import kernelsdk`` and
``import kernelsdk.protocol`` import neither, and the names that need Trio
(:data:`_LAZY`) are imported on first access through the module ``__getattr__``.
"""

import typing as _typing

from ._comm import Comm as Comm
from ._comm import CommManager as CommManager
from ._connection import ConnectionInfo as ConnectionInfo
from ._debugger import Debugger as Debugger
from ._debugger import DebuggerError as DebuggerError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import ExecutionError as ExecutionError
from ._exceptions import InputInterrupted as InputInterrupted
from ._exceptions import KernelNotFoundError as KernelNotFoundError
from ._exceptions import KernelSDKError as KernelSDKError
from ._exceptions import LocalProtocolError as LocalProtocolError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import RemoteProtocolError as RemoteProtocolError
from ._exceptions import StdinNotAllowedError as StdinNotAllowedError
from ._exceptions import TransportError as TransportError
from ._executor import Executor as Executor
from ._history import InMemoryHistory as InMemoryHistory
from ._kernel import BaseKernel as BaseKernel
from ._kernel import Completions as Completions
from ._kernel import IsComplete as IsComplete
from ._kernelspec import KernelSpec as KernelSpec
from ._transport import Transport as Transport
from ._version import __version__ as __version__

if _typing.TYPE_CHECKING:
    # What static tools see; at run time these come from __getattr__ below.
    from ._context import ExecuteContext as ExecuteContext
    from ._context import MimeBundle as MimeBundle
    from ._native import NativeOutput as NativeOutput
    from ._native import NativeRunner as NativeRunner
    from ._runtime import open_kernel as open_kernel
    from ._runtime import run_kernel as run_kernel
    from ._server import KernelServer as KernelServer

#: The public names that need Trio (or pyzmq), and the private module defining each.
_LAZY: dict[str, str] = {
    "ExecuteContext": "._context",
    "MimeBundle": "._context",
    "NativeOutput": "._native",
    "NativeRunner": "._native",
    "KernelServer": "._server",
    "open_kernel": "._runtime",
    "run_kernel": "._runtime",
}

if not _typing.TYPE_CHECKING:  # a module __getattr__ would make every misspelt name Any to mypy

    def __getattr__(name: str) -> _typing.Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module, __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY.keys())


__all__ = [
    "BaseKernel",
    "Comm",
    "CommManager",
    "Completions",
    "ConfigError",
    "ConnectionInfo",
    "Debugger",
    "DebuggerError",
    "ExecuteContext",
    "ExecutionError",
    "Executor",
    "InMemoryHistory",
    "InputInterrupted",
    "IsComplete",
    "KernelNotFoundError",
    "KernelSDKError",
    "KernelServer",
    "KernelSpec",
    "LocalProtocolError",
    "MimeBundle",
    "NativeOutput",
    "NativeRunner",
    "ProtocolError",
    "RemoteProtocolError",
    "StdinNotAllowedError",
    "Transport",
    "TransportError",
    "__version__",
    "open_kernel",
    "run_kernel",
]
