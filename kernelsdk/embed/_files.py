"""The connection files of embedded kernels: where a host program says "a kernel named NAME is
running here", and where the attach provisioner looks for it.

Each file lives in Jupyter's runtime directory as ``kernelsdk-embed-<name>-<pid>.json``. It is
a normal connection file (what :meth:`ConnectionInfo.write` writes, so ``jupyter console
--existing`` and jupyter_client read it) plus ``"kernel_name": "attach-<name>"`` and a
``"kernelsdk_embed"`` object: ``{"name", "pid", "started", "host"}``. Readers that do not know
the extra keys ignore them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Final, final

import attrs

from .._connection import ConnectionInfo
from .._exceptions import ConfigError

#: What a host may call its embedded kernel: it becomes part of a file name and of the
#: kernelspec name ``attach-<name>``, so it is kept to characters safe in both.
NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: The key holding the embedding's own fields in the connection file.
EMBED_KEY: Final = "kernelsdk_embed"

_PREFIX: Final = "kernelsdk-embed-"


def validate_name(name: object) -> str:
    """``name`` itself if a host may use it for an embedded kernel, else :class:`ValueError`."""
    if not isinstance(name, str):
        raise ValueError(f"an embedded kernel's name must be a string, not {type(name).__name__}")
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"invalid embedded kernel name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return name


def runtime_dir() -> Path:
    """Jupyter's runtime directory (``JUPYTER_RUNTIME_DIR`` or the platform's), created
    readable by its owner only if it does not exist yet.

    Raises:
        ConfigError: it does not exist and cannot be created.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    directory = Path(jupyter_runtime_dir())
    # The files hold signing keys: a directory we create is private. One that exists is left
    # as it is (it may be shared on purpose, and it is not ours to change).
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create Jupyter's runtime directory {directory} ({exc.strerror or exc}): "
            "set JUPYTER_RUNTIME_DIR to a directory you can write to"
        ) from None
    return directory


def connection_file_path(name: str, pid: int | None = None) -> Path:
    """Where the host process ``pid`` (default: this one) writes the file of kernel ``name``."""
    validate_name(name)
    return runtime_dir() / f"{_PREFIX}{name}-{os.getpid() if pid is None else pid}.json"


def write_connection_file(
    info: ConnectionInfo,
    name: str,
    *,
    path: str | os.PathLike[str] | None = None,
    pid: int | None = None,
    started: float | None = None,
    host: str | None = None,
) -> Path:
    """Write the connection file of the embedded kernel ``name``; return its path.

    ``path`` defaults to :func:`connection_file_path` in the runtime directory (only files
    there are found by :func:`find_embedded`). ``pid`` (default: this process) is the host
    whose exit ends the kernel, ``started`` (default: now) the time the kernel started,
    ``host`` (default: the basename of ``sys.argv[0]``) a label for people.

    The file is written to a temporary file in the same directory, readable by its owner only
    (it holds the signing key), then renamed into place, so a reader never sees half of it.

    Raises:
        ValueError: ``name`` is not a valid embedded kernel name.
        ConfigError: the file cannot be written.
    """
    validate_name(name)
    pid = os.getpid() if pid is None else pid
    target = connection_file_path(name, pid) if path is None else Path(path)
    data = info.to_dict()
    data["kernel_name"] = f"attach-{name}"
    data[EMBED_KEY] = {
        "name": name,
        "pid": pid,
        "started": time.time() if started is None else started,
        "host": os.path.basename(sys.argv[0]) if host is None else host,
    }
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # open()'s mode applies only to a new file: a stale temp file keeps its old mode.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write the connection file of embedded kernel {name!r} at {target}: "
            f"{exc.strerror or exc}"
        ) from None
    return target


def remove_connection_file(path: str | os.PathLike[str]) -> None:
    """Remove a connection file written by :func:`write_connection_file`; a file already gone
    is fine (stop is idempotent, and a user may have cleaned the runtime dir)."""
    # Nothing a stopping host could do about a failure; a stale file is skipped by
    # find_embedded once its pid has exited.
    with contextlib.suppress(OSError):
        Path(path).unlink(missing_ok=True)


@final
@attrs.frozen
class EmbeddedRecord:
    """One live embedded kernel, as :func:`find_embedded` found it."""

    #: The connection file.
    path: Path
    #: The host process.
    pid: int
    #: When it started (Unix time).
    started: float
    #: The kernel's name, chosen by the host.
    name: str
    #: The host program's name (basename of its ``argv[0]``), for people.
    host: str
    #: Where to connect.
    info: ConnectionInfo


def read_record(path: str | os.PathLike[str]) -> EmbeddedRecord:
    """Read one embedded kernel's connection file, live or not.

    Raises:
        ConfigError: the file is missing, unreadable, or not an embedded kernel's.
    """
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"connection file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read connection file {path}: {exc}") from None
    meta = data.get(EMBED_KEY) if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        raise ConfigError(f"{path} is not the connection file of an embedded kernel")
    name, pid, started, host = (meta.get(k) for k in ("name", "pid", "started", "host"))
    if (
        not isinstance(name, str)
        or not NAME_RE.fullmatch(name)
        or isinstance(pid, bool)
        or not isinstance(pid, int)
        or pid <= 0
        or isinstance(started, bool)
        or not isinstance(started, int | float)
    ):
        raise ConfigError(f"{path}: bad {EMBED_KEY!r} entry {meta!r}")
    return EmbeddedRecord(
        path=path,
        pid=pid,
        started=float(started),
        name=name,
        host=host if isinstance(host, str) else "",
        info=ConnectionInfo.from_dict(data),
    )


def find_embedded(name: str) -> list[EmbeddedRecord]:
    """The live embedded kernels called ``name`` in the runtime directory, newest first.

    Live: the file is there and its host process runs. Files left by hosts that died are
    skipped, not deleted (the runtime dir may be shared with other tools; a host that was
    killed cannot clean up, and its file says where it was). Unreadable files are skipped.

    Raises:
        ValueError: ``name`` is not a valid embedded kernel name.
    """
    validate_name(name)
    records: list[EmbeddedRecord] = []
    # The name may itself contain '-', so the glob also matches longer names; the name in the
    # file decides.
    for path in runtime_dir().glob(f"{_PREFIX}{name}-*.json"):
        try:
            record = read_record(path)
        except ConfigError:
            continue
        if record.name == name and host_alive(record.pid, record.started):
            records.append(record)
    records.sort(key=lambda r: (r.started, r.pid), reverse=True)
    return records


def host_alive(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not count).

    With ``started`` (when the embedded kernel started), a process that began later than that
    is a different program that got the dead host's pid, and does not count either.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    except OverflowError:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (macOS): signal 0 is all we know
    state, start = stat
    if state in ("Z", "X"):
        return False  # exited, not yet reaped by its parent
    # /proc gives the start in whole seconds of boot time plus clock ticks: 2 s of slack.
    return started is None or start is None or start <= started + 2.0


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """The state letter and start time (Unix time) of ``pid`` from Linux's /proc, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the
    # last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    if not fields:
        return None
    try:
        ticks = int(fields[19])  # field 22 of the whole line: start time in clock ticks
        boot = _boot_time()
        hz = os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return fields[0], None
    return fields[0], None if boot is None else boot + ticks / hz


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text(encoding="ascii").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None
