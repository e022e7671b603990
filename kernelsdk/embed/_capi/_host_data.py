"""Views of a C host's memory for the cells of an embedded Python kernel.

``ksdk_expose_array`` and ``ksdk_expose_scalar`` hand a pointer, an element type and a shape;
cells see a NumPy array over that memory (a memoryview when NumPy is not importable), never a
copy, so they read the host's current values and, when the host allowed it, write them.

A scalar is a 0-d view: a cell reads ``float(source)`` or ``source + 1``, and may write
``source[...] = 2`` -- or simply ``source = 2``, which rebinds the name; after each cell,
:meth:`HostData.sync` writes such a number through to the host and puts the view back.
"""

from __future__ import annotations

import ctypes
import numbers
from collections.abc import MutableMapping
from typing import Any, Final

import attrs

from ._errors import bad_argument

#: dtype names (NumPy's and C's) -> struct format character.
_FORMATS: Final = {
    "float64": "d",
    "double": "d",
    "float32": "f",
    "float": "f",
    "int64": "q",
    "int64_t": "q",
    "long long": "q",
    "int32": "i",
    "int32_t": "i",
    "int": "i",
    "int16": "h",
    "int16_t": "h",
    "short": "h",
    "int8": "b",
    "int8_t": "b",
    "signed char": "b",
    "uint64": "Q",
    "uint64_t": "Q",
    "uint32": "I",
    "uint32_t": "I",
    "unsigned int": "I",
    "uint16": "H",
    "uint16_t": "H",
    "uint8": "B",
    "uint8_t": "B",
    "unsigned char": "B",
    "long": "q" if ctypes.sizeof(ctypes.c_long) == 8 else "i",
    "unsigned long": "Q" if ctypes.sizeof(ctypes.c_long) == 8 else "I",
}
_SIZES: Final = {"d": 8, "f": 4, "q": 8, "i": 4, "h": 2, "b": 1, "Q": 8, "I": 4, "H": 2, "B": 1}


def element_format(dtype: str) -> str:
    try:
        return _FORMATS[dtype.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(_FORMATS))
        raise bad_argument(f"unknown dtype {dtype!r}; one of: {known}") from None


@attrs.define
class Exposed:
    """One named piece of host memory and the view cells see."""

    name: str
    view: Any
    writable: bool
    scalar: bool
    fmt: str

    def write(self, value: Any) -> None:
        """Store a number a cell bound to the name, converted to the element type."""
        number = float(value) if self.fmt in "df" else int(value)
        self.view[()] = number


def make_view(
    buffer: Any, fmt: str, shape: tuple[int, ...], writable: bool, column_major: bool = False
) -> Any:
    """A NumPy array (or memoryview) of ``fmt`` elements in ``shape`` over ``buffer``.

    ``column_major``: ``shape`` is in Fortran order; NumPy shows it as is (a transposed view
    of the C-order array of the reversed shape), a memoryview (C order only) reversed."""
    c_shape = tuple(reversed(shape)) if column_major else shape
    try:
        import numpy
    except ImportError:
        view: memoryview = memoryview(buffer).cast("B").cast(fmt, list(c_shape))  # type: ignore[call-overload]
        return view if writable else view.toreadonly()
    array = numpy.frombuffer(buffer, dtype=numpy.dtype(fmt)).reshape(c_shape)
    if column_major:
        array = array.T
    array.flags.writeable = writable
    return array


def check_shape(ndim: int, shape: list[int]) -> tuple[int, ...]:
    if ndim < 0 or ndim > 32:
        raise bad_argument(f"ndim must be between 0 and 32, not {ndim}")
    if any(n < 0 for n in shape):
        raise bad_argument(f"a shape has no negative extent: {shape}")
    return tuple(shape)


def nbytes(fmt: str, shape: tuple[int, ...]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count * _SIZES[fmt]


@attrs.define
class HostData:
    """What a host exposed to one kernel, by name."""

    items: dict[str, Exposed] = attrs.field(factory=dict)

    def add(self, item: Exposed, namespace: MutableMapping[str, Any] | None) -> None:
        self.items[item.name] = item
        if namespace is not None:
            namespace[item.name] = item.view

    def publish_to(self, namespace: MutableMapping[str, Any]) -> None:
        for item in self.items.values():
            namespace[item.name] = item.view

    def sync(self, namespace: MutableMapping[str, Any]) -> list[str]:
        """After a cell: write numbers bound to writable scalars' names through to the host
        and put every rebound view back. Returns a warning for each name that could not be
        written (a read-only one, or a value that is not a number)."""
        warnings: list[str] = []
        for item in self.items.values():
            current = namespace.get(item.name)
            if current is item.view:
                continue
            namespace[item.name] = item.view
            if current is None:
                continue
            if not (item.scalar and item.writable):
                warnings.append(f"{item.name} belongs to the host and is not writable this way")
            elif isinstance(current, numbers.Real) or _is_numpy_scalar(current):
                item.write(current)
            else:
                warnings.append(f"{item.name} takes a number, not {type(current).__name__}")
        return warnings


def _is_numpy_scalar(value: Any) -> bool:
    return getattr(value, "shape", None) == () and hasattr(value, "item")
