"""Finding kernel classes: entry points of the group ``kernelsdk.kernels``, or ``module:Class``.

A distribution registers a kernel as ``<kernel name> = "<module>:<Class>"``. This module is on
the kernel startup path (``python -m kernelsdk run NAME``), so it reads the entry points once
and imports nothing but the kernel's own module. Installed kernelspecs also pass the class the
entry point named (``--class module:Class``): importing it directly skips
:mod:`importlib.metadata` and the scan of every installed distribution, about 25 ms of a
kernel's start (see ``docs/performance.md``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigError, KernelNotFoundError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

GROUP = "kernelsdk.kernels"


def available_kernels() -> dict[str, EntryPoint]:
    """Kernels registered through entry points, by name (the first registration of a name wins,
    in ``sys.path`` order, like Python's own lookup)."""
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def load_kernel(name_or_spec: str, *, hint: str | None = None) -> type[Any]:
    """The kernel class for an entry-point name (``echo``) or a ``module:Class`` spec.

    ``hint`` is the ``module:Class`` an entry point named when a kernelspec was written: it
    is tried first, and the entry points are read only when it no longer exists (the
    distribution moved the class since).

    Raises:
        KernelNotFoundError: no such entry point, module or class; the message lists the
            kernels that are available.
        ConfigError: the entry point or spec names something that is not a class, or the
            kernel's module fails to import.
    """
    if hint is not None and ":" not in name_or_spec:
        try:
            return _kernel_class(_load_spec(hint, list_kernels=False), hint)
        except KernelNotFoundError:
            pass  # the distribution moved the class since the kernelspec was written
    if ":" in name_or_spec:
        obj = _load_spec(name_or_spec)
        where = name_or_spec
    else:
        kernels = available_kernels()
        ep = kernels.get(name_or_spec)
        if ep is None:  # kernel names are case-insensitive in Jupyter
            folded = name_or_spec.casefold()
            ep = next((e for n, e in kernels.items() if n.casefold() == folded), None)
        if ep is None:
            raise KernelNotFoundError(_not_found(f"no kernel named {name_or_spec!r}", kernels))
        where = f"{ep.name} = {ep.value}"
        try:
            obj = ep.load()
        except ImportError as exc:
            raise ConfigError(f"cannot import kernel {where!r}: {exc}") from exc
        except AttributeError as exc:
            raise ConfigError(f"kernel entry point {where!r} is broken: {exc}") from exc
    return _kernel_class(obj, where)


def class_spec(cls: type[Any]) -> str | None:
    """``module:Class`` that imports ``cls`` again, or None for a class defined in a function."""
    if "<" in cls.__qualname__:
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def _kernel_class(obj: object, where: str) -> type[Any]:
    if not isinstance(obj, type):
        raise ConfigError(f"{where!r} names {type(obj).__name__} {obj!r}, not a kernel class")
    return obj


def _load_spec(spec: str, *, list_kernels: bool = True) -> object:
    module_name, _, qualname = spec.partition(":")
    module_name, qualname = module_name.strip(), qualname.strip()
    if not module_name or not qualname:
        raise ConfigError(f"invalid kernel spec {spec!r}: expected 'module:Class'")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing module *named by the spec* means "not found"; a missing dependency of
        # the kernel's module is an import error of that module.
        if exc.name is not None and _is_prefix(exc.name, module_name):
            what = f"no module named {module_name!r} (from {spec!r})"
            raise KernelNotFoundError(_not_found(what, None) if list_kernels else what) from None
        raise ConfigError(f"cannot import kernel {spec!r}: {exc}") from exc
    except ImportError as exc:
        raise ConfigError(f"cannot import kernel {spec!r}: {exc}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise KernelNotFoundError(
                f"module {module_name!r} has no attribute {qualname!r} (from {spec!r})"
            ) from None
    return obj


def _is_prefix(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


def _not_found(what: str, kernels: dict[str, EntryPoint] | None) -> str:
    if kernels is None:
        kernels = available_kernels()
    if kernels:
        listing = f"available kernels: {', '.join(sorted(kernels))}"
    else:
        listing = f"no kernels are available (no installed distribution has {GROUP!r} entry points)"
    return f"{what}; {listing}"
