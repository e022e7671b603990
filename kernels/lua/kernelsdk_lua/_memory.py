"""How much memory the Lua state may use: the memory guard's limit.

By default a fraction (half) of the memory this process can still get when the kernel starts:
the least of what its cgroup allows (cgroup v2 ``memory.max`` or v1
``memory.limit_in_bytes``, minus what the cgroup already uses, at every level up to the
root), what ``RLIMIT_AS`` and ``RLIMIT_DATA`` leave, and the physical memory available
(``MemAvailable``). On a shared JupyterHub node this keeps one runaway cell from taking the
node, or the user's other kernels, down with it; the cell gets a Lua "not enough memory" error
instead. ``KERNELSDK_LUA_MEMORY_LIMIT`` overrides it: a size (``2G``, ``512M``), a percentage
of that available memory (``25%``), or ``off``.
"""

from __future__ import annotations

import logging
import os
import resource
from dataclasses import dataclass
from pathlib import Path

#: The environment variable that sets the limit (see the module docstring).
MEMORY_LIMIT_VARIABLE = "KERNELSDK_LUA_MEMORY_LIMIT"
DEFAULT_FRACTION = 0.5
#: Below this a Lua state can hardly run a cell; a smaller derived limit is raised to it.
MINIMUM_LIMIT = 32 << 20
#: cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages, rounded).
_UNLIMITED = 1 << 60
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_BAD_SETTING = "ignoring %s=%r (expected e.g. 2G, 25%% or off)"

log = logging.getLogger("kernelsdk_lua")


@dataclass(frozen=True)
class MemoryLimit:
    """The guard's limit in bytes and, for messages, where it came from."""

    limit: int
    origin: str


def parse_size(text: str) -> int:
    """``"64M"`` -> 67108864 (suffixes K, M, G, T; plain numbers are bytes)."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    number = text[:-1] if factor != 1 else text
    return int(float(number) * factor)


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _cgroup_dirs() -> list[tuple[Path, str, str]]:
    """(directory, limit file, usage file) of this process's memory cgroup and its parents."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found: list[tuple[Path, str, str]] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (_CGROUP_ROOT / "cgroup.controllers").exists():
            base, files = _CGROUP_ROOT, ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base = _CGROUP_ROOT / "memory"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        # Inside a container with a cgroup namespace the path may not exist under the mount;
        # the mount's root is then the container's own cgroup.
        parts = Path(path.strip() or "/").parts[1:]
        for depth in range(len(parts), -1, -1):
            directory = base.joinpath(*parts[:depth])
            if directory.is_dir():
                found.append((directory, *files))
    return found


def _cgroup_available() -> int | None:
    available: int | None = None
    for directory, limit_file, usage_file in _cgroup_dirs():
        limit = _read_int(directory / limit_file)
        usage = _read_int(directory / usage_file)
        if limit is None or limit >= _UNLIMITED or usage is None:
            continue
        left = max(limit - usage, 0)
        available = left if available is None else min(available, left)
    return available


def _proc_fields(path: str) -> dict[str, int]:
    """``Key: 123 kB`` lines of /proc/self/status or /proc/meminfo, in bytes."""
    fields: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                words = rest.split()
                if words and words[0].isdigit():
                    fields[key] = int(words[0]) * (1024 if words[1:] == ["kB"] else 1)
    except OSError:
        pass
    return fields


def available_memory() -> tuple[int, str] | None:
    """The memory this process can still get, and which bound decided it (None: unknown)."""
    candidates: list[tuple[int, str]] = []
    cgroup = _cgroup_available()
    if cgroup is not None:
        candidates.append((cgroup, "the cgroup's memory limit"))
    status = _proc_fields("/proc/self/status")
    for rlimit, field, name in (
        (resource.RLIMIT_AS, "VmSize", "RLIMIT_AS"),
        (resource.RLIMIT_DATA, "VmData", "RLIMIT_DATA"),
    ):
        soft, _ = resource.getrlimit(rlimit)
        if soft != resource.RLIM_INFINITY:
            candidates.append((max(soft - status.get(field, 0), 0), name))
    meminfo = _proc_fields("/proc/meminfo")
    physical = meminfo.get("MemAvailable", meminfo.get("MemTotal"))
    if physical is None:
        try:
            physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            physical = None
    if physical is not None:
        candidates.append((physical, "the available physical memory"))
    return min(candidates) if candidates else None


def memory_limit(setting: str | None) -> MemoryLimit | None:
    """The guard's limit for ``setting`` (the variable's value; None: the default), or None
    when the guard is off."""
    text = (setting or "").strip()
    if text.lower() in ("off", "none", "0"):
        return None
    if text and not text.endswith("%"):
        try:
            return MemoryLimit(parse_size(text), MEMORY_LIMIT_VARIABLE)
        except ValueError:
            log.warning(_BAD_SETTING, MEMORY_LIMIT_VARIABLE, text)
            text = ""
    fraction = DEFAULT_FRACTION
    if text:
        try:
            fraction = float(text[:-1]) / 100
        except ValueError:
            log.warning(_BAD_SETTING, MEMORY_LIMIT_VARIABLE, text)
    available = available_memory()
    if available is None:
        return None
    size, bound = available
    limit = max(int(size * fraction), MINIMUM_LIMIT)
    return MemoryLimit(limit, f"{fraction:.0%} of the {format_size(size)} left by {bound}")
