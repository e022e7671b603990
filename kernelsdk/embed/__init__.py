"""Embed a kernel in a running program: the program's data, live, in a notebook.

* :func:`start_kernel` serves any :class:`~kernelsdk.BaseKernel` from a thread of its own
  and returns an :class:`EmbeddedKernel` handle; with ``safe_points=True`` cells run on the
  host's own thread, only inside :meth:`EmbeddedKernel.poll` (a time-step loop's safe point).
* :func:`start_kernel_async` (asyncio) and :func:`start_guest_kernel` (Qt, any loop) run the
  kernel on the host's event loop instead, as a Trio guest.
* :func:`start_mpi_kernel`: one kernel across every rank of an MPI program, cells run on
  every rank at the same safe point (a collective poll).
* :class:`PythonKernel`: the kernel whose cells are Python, run in the host's process, with
  the host's data in its namespace.

See docs/embedding.md. Like :mod:`kernelsdk`, this namespace loads Trio and pyzmq only when a
name that needs them is first used, so that reading connection files (the attach provisioner,
which Jupyter servers load) stays cheap.
"""

import typing as _typing

if _typing.TYPE_CHECKING:
    from ._guest import GuestKernel as GuestKernel
    from ._guest import InlineExecutor as InlineExecutor
    from ._guest import start_guest_kernel as start_guest_kernel
    from ._guest import start_kernel_async as start_kernel_async
    from ._mpi import start_mpi_kernel as start_mpi_kernel
    from ._python import PythonKernel as PythonKernel
    from ._python import mime_bundle as mime_bundle
    from ._safepoints import HostStoppedError as HostStoppedError
    from ._safepoints import SafePoints as SafePoints
    from ._thread import EmbeddedKernel as EmbeddedKernel
    from ._thread import start_kernel as start_kernel

#: Every public name, and the private module defining it (all are loaded lazily).
_LAZY: dict[str, str] = {
    "EmbeddedKernel": "._thread",
    "GuestKernel": "._guest",
    "HostStoppedError": "._safepoints",
    "InlineExecutor": "._guest",
    "PythonKernel": "._python",
    "SafePoints": "._safepoints",
    "mime_bundle": "._python",
    "start_guest_kernel": "._guest",
    "start_kernel": "._thread",
    "start_kernel_async": "._guest",
    "start_mpi_kernel": "._mpi",
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
    "EmbeddedKernel",
    "GuestKernel",
    "HostStoppedError",
    "InlineExecutor",
    "PythonKernel",
    "SafePoints",
    "mime_bundle",
    "start_guest_kernel",
    "start_kernel",
    "start_kernel_async",
    "start_mpi_kernel",
]
