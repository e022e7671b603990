"""Noticing that the frontend which started this kernel process has died.

A frontend that is killed (SIGKILL, a CI job at its timeout, a crashed server) never sends
``shutdown_request``; a kernel that does not notice runs on forever, holding its ports. The
frontend is named by jupyter_client in the kernel's environment: ``JPY_PARENT_PID`` is its pid
(on POSIX; on Windows it is a handle, and nothing is watched here).

Only a process that is still one of this process's *ancestors* is watched. That takes the
frontend under a launcher in between (``mpiexec`` and its proxy start the ranks), and ignores
a ``JPY_PARENT_PID`` that is stale or names a process on another host (a rank that ``srun``
placed elsewhere). Without a usable ``JPY_PARENT_PID`` the direct parent is watched: the
kernel is orphaned when it is reparented.

On Linux the wait is a pidfd (``os.pidfd_open``): it becomes readable the moment the process
exits, costs nothing until then, and cannot be confused with a later process given the same
pid. Elsewhere (or where pidfds are refused) the ancestry is checked every
:data:`POLL_INTERVAL` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Final

import trio

log = logging.getLogger("kernelsdk")

PARENT_PID_VARIABLE: Final = "JPY_PARENT_PID"
#: Seconds between checks where no pidfd can be had.
POLL_INTERVAL: Final = 1.0
#: Ancestor chains longer than this are not followed (a safety bound; real ones are short).
_MAX_DEPTH: Final = 64


class ParentWatch:
    """One process whose exit means this kernel has been orphaned.

    Decide what to watch with :meth:`from_environment` when the process starts (before its
    parent has had time to die), then await :meth:`wait_for_exit`.
    """

    def __init__(self, pid: int, description: str) -> None:
        self.pid = pid
        self.description = description

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ParentWatch | None:
        """The frontend named by ``JPY_PARENT_PID`` if it is an ancestor of this process, else
        the parent; None if there is nothing to watch (Windows, or already orphaned)."""
        if sys.platform == "win32":
            return None
        frontend = _frontend_pid(environ.get(PARENT_PID_VARIABLE, ""))
        if frontend is not None and _is_ancestor(frontend):
            return cls(frontend, f"the frontend (process {frontend}, {PARENT_PID_VARIABLE})")
        if frontend is not None:
            log.debug(
                "%s=%d is not an ancestor: watching the parent", PARENT_PID_VARIABLE, frontend
            )
        parent = os.getppid()
        if parent <= 1:
            return None  # started by init, or already orphaned: no parent to lose
        return cls(parent, f"the parent process ({parent})")

    async def wait_for_exit(self) -> None:
        """Return once the watched process has exited (no longer an ancestor)."""
        pidfd = _open_pidfd(self.pid)
        if pidfd is None:
            await self._poll()
            return
        try:
            # The pid may have been reused between the decision and the open: the process
            # behind the pidfd is the one we meant only if it is still an ancestor.
            if _is_ancestor(self.pid):
                await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)

    async def _poll(self) -> None:
        while _is_ancestor(self.pid):
            await trio.sleep(POLL_INTERVAL)


def _frontend_pid(value: str) -> int | None:
    try:
        pid = int(value)
    except ValueError:
        return None
    return pid if pid > 1 else None


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``; None where pidfds are missing or refused, or ``pid`` is gone."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None  # gone already: the first ancestry check says so
    except OSError:  # ENOSYS before Linux 5.3, EPERM under some seccomp filters: poll
        return None


def _is_ancestor(pid: int) -> bool:
    """``pid`` is this process's parent, or a parent of a parent..."""
    current = os.getppid()
    for _ in range(_MAX_DEPTH):
        if current == pid:
            return True
        if current <= 1:
            return False
        parent = _parent_of(current)
        if parent is None:
            return False
        current = parent
    return False


def _parent_of(pid: int) -> int | None:
    """The parent of ``pid`` from /proc (None without /proc, or when ``pid`` is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        return int(stat.rsplit(b")", 1)[1].split()[1])
    return None
