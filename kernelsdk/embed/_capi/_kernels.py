"""The kernels a C host made, behind integer handles: options, callbacks, host data, state.

A handle is an index into :class:`KernelTable`, never a pointer, and never reused: a call
with a stale, unknown or misordered handle is an :class:`~._errors.ApiError` that C gets as
an error code, never a crash. One table per library (per process); nothing global beyond it.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Final, Literal

import attrs

from ._errors import EHANDLE, ELIMIT, ApiError, bad_argument, wrong_state
from ._host_data import HostData
from ._native_kernel import Callbacks

State = Literal["created", "started", "stopped"]

#: Options that are booleans ("0"/"1", "true"/"false", "yes"/"no", "on"/"off").
BOOL_OPTIONS: Final = frozenset({"safe_points", "allow_shutdown", "watch_parent", "mpi"})
#: Options of every kernel.
TEXT_OPTIONS: Final = frozenset({"connection_file", "transport", "ip", "packer"})
#: Options that describe a native kernel's language (kernel_info_reply).
NATIVE_OPTIONS: Final = frozenset(
    {
        "implementation",
        "implementation_version",
        "language",
        "language_version",
        "file_extension",
        "mimetype",
        "pygments_lexer",
        "codemirror_mode",
        "banner",
    }
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


@attrs.define(eq=False)
class HostKernel:
    """One kernel of the host: what was configured, and once started its handle."""

    id: int
    name: str
    kind: Literal["python", "native"]
    options: dict[str, str] = attrs.field(factory=dict)
    callbacks: Callbacks = attrs.field(factory=Callbacks)
    data: HostData = attrs.field(factory=HostData)
    state: State = "created"
    handle: Any = None  # the EmbeddedKernel, once started
    kernel: Any = None  # the BaseKernel it serves
    connection_file: Any = None  # a cffi char[] kept alive for ksdk_connection_file
    orphaned: bool = False  # watch_parent: the frontend that launched the program died

    def flag(self, key: str) -> bool:
        return self.options.get(key, "0").strip().lower() in _TRUE

    def set_option(self, key: str, value: str) -> None:
        if self.state != "created":
            raise wrong_state(
                f"kernel {self.id} is {self.state}: options are set before ksdk_start"
            )
        if key in BOOL_OPTIONS:
            if value.strip().lower() not in _TRUE | _FALSE:
                raise bad_argument(f"option {key} takes 0 or 1, not {value!r}")
        elif key in NATIVE_OPTIONS:
            if self.kind != "native":
                raise bad_argument(f"option {key} describes a native kernel's language")
        elif key not in TEXT_OPTIONS:
            known = ", ".join(sorted(BOOL_OPTIONS | TEXT_OPTIONS | NATIVE_OPTIONS))
            raise bad_argument(f"unknown option {key!r}; the options are: {known}")
        if key == "mpi" and self.kind != "python" and value.strip().lower() in _TRUE:
            raise bad_argument("option mpi is for kernels of kind python")
        self.options[key] = value

    def language(self) -> tuple[dict[str, Any], str]:
        """A native kernel's kernel_info: implementation, language_info; and its banner."""
        o = self.options
        language = o.get("language", self.name)
        language_info = {
            "name": language,
            "version": o.get("language_version", ""),
            "mimetype": o.get("mimetype", "text/plain"),
            "file_extension": o.get("file_extension", ".txt"),
        }
        for key in ("pygments_lexer", "codemirror_mode"):
            if key in o:
                language_info[key] = o[key]
        info = {
            "implementation": o.get("implementation", language),
            "implementation_version": o.get(
                "implementation_version", o.get("language_version", "")
            ),
            "language_info": language_info,
        }
        return info, o.get("banner", "")


class KernelTable:
    """Every kernel the host created, by handle."""

    def __init__(self, max_handles: int) -> None:
        self._max = max_handles
        self._ids = itertools.count(1)
        self._kernels: dict[int, HostKernel] = {}
        self._lock = threading.Lock()

    def create(self, name: str, kind: Literal["python", "native"]) -> HostKernel:
        with self._lock:
            k = next(self._ids)
            if k >= self._max:
                raise ApiError(
                    ELIMIT, f"at most {self._max - 1} kernels can be created per process"
                )
            kernel = HostKernel(k, name, kind)
            self._kernels[k] = kernel
        return kernel

    def get(self, k: int, *states: State) -> HostKernel:
        kernel = self._kernels.get(k)
        if kernel is None:
            raise ApiError(EHANDLE, f"no kernel has the handle {k}")
        if states and kernel.state not in states:
            raise wrong_state(_state_message(kernel, states))
        return kernel

    def live(self) -> list[HostKernel]:
        return [k for k in self._kernels.values() if k.state == "started"]


def _state_message(kernel: HostKernel, wanted: tuple[State, ...]) -> str:
    if kernel.state == "stopped":
        return f"kernel {kernel.id} ({kernel.name}) was stopped"
    if kernel.state == "created":
        return f"kernel {kernel.id} ({kernel.name}) is not started: call ksdk_start first"
    return f"kernel {kernel.id} ({kernel.name}) is already started"
