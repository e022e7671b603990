"""Finding kernel classes: entry points of the group ``kernelsdk.kernels``, or ``module:Class``.

A distribution registers a kernel as ``<kernel name> = "<module>:<Class>"``. This module is on
the kernel startup path (``python -m kernelsdk run NAME``), so it reads the entry points once
and imports nothing but the kernel's own module.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ._exceptions import ConfigError, KernelNotFoundError

GROUP = "kernelsdk.kernels"


def available_kernels() -> dict[str, EntryPoint]:
    """Kernels registered through entry points, by name (the first registration of a name wins,
    in ``sys.path`` order, like Python's own lookup)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def load_kernel(name_or_spec: str) -> type[Any]:
    """The kernel class for an entry-point name (``echo``) or a ``module:Class`` spec.

    Raises:
        KernelNotFoundError: no such entry point, module or class; the message lists the
            kernels that are available.
        ConfigError: the entry point or spec names something that is not a class, or the
            kernel's module fails to import.
    """
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
    if not isinstance(obj, type):
        raise ConfigError(f"{where!r} names {type(obj).__name__} {obj!r}, not a kernel class")
    return obj


def _load_spec(spec: str) -> object:
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
            raise KernelNotFoundError(
                _not_found(f"no module named {module_name!r} (from {spec!r})", None)
            ) from None
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
