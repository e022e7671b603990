"""The job's side: what a kernel started by the Slurm provisioner does besides serving.

``python -m kernelsdk run`` wraps the kernel class with :func:`job_kernel` when the
environment has :data:`~kernelsdk.slurm._sbatch.SETTINGS_VAR` (the provisioner sets it for the
job). On rank 0 only (every process of a single-process kernel):

* **walltime warning**: the job's end time comes from ``SLURM_JOB_END_TIME`` (Slurm 23.02+)
  or else ``squeue -o %L`` (time left) at start; the first cell that starts less than
  ``walltime_warning`` seconds before it gets a warning on stderr first;
* **idle limit**: when no cell has run for ``idle_timeout`` seconds, the job sets its comment
  to :data:`~kernelsdk.slurm._sbatch.IDLE_COMMENT` (which the provisioner reads to say why the
  kernel ended) and cancels itself, freeing its nodes. This holds even when the Jupyter server
  is gone.

On every rank, a ``shutdown_request`` with ``restart: true`` makes the process end with
:data:`~kernelsdk.slurm._sbatch.RESTART_STATUS` (:func:`exit_status`): the job script then
starts a fresh kernel in the same job.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from ._sbatch import IDLE_COMMENT, RESTART_STATUS, parse_time_left

if TYPE_CHECKING:
    from .._context import ExecuteContext
    from .._kernel import BaseKernel

log = logging.getLogger("kernelsdk.slurm")

_COMMAND_TIMEOUT: Final = 30

# Whether this process's kernel was asked to restart (see exit_status).
_restart_asked = False


def exit_status() -> int:
    """The status for ``python -m kernelsdk run`` to end with once its kernel has stopped:
    :data:`~kernelsdk.slurm._sbatch.RESTART_STATUS` if it was asked to restart, else 0."""
    return RESTART_STATUS if _restart_asked else 0


def _rank() -> int:
    try:
        from ..mpi import world
    except ImportError:  # pragma: no cover - mpi/ is part of kernelsdk
        return 0
    comm = world()
    return 0 if comm is None else int(comm.Get_rank())


def job_end_time(job_id: str) -> float | None:
    """When the job reaches its time limit, as a ``time.time()`` value, or None (no limit, or
    it cannot be learned)."""
    end = os.environ.get("SLURM_JOB_END_TIME", "")
    if end.isdigit() and int(end) > 0:
        return float(end)
    try:
        result = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%L"],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot learn the job's time limit: %s", exc)
        return None
    left = parse_time_left(result.stdout)
    return None if left is None else time.time() + left


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


class JobWatch:
    """The walltime warning and the idle limit of one job (see the module docstring)."""

    def __init__(self, job_id: str, idle_timeout: float, walltime_warning: float) -> None:
        self.job_id = job_id
        self.idle_timeout = idle_timeout
        self.walltime_warning = walltime_warning
        self.end_time = job_end_time(job_id) if walltime_warning > 0 else None
        self._warned = False
        self._lock = threading.Lock()
        self._running = 0
        self._last_activity = time.monotonic()
        if idle_timeout > 0:
            threading.Thread(target=self._watch_idle, name="slurm-idle", daemon=True).start()

    def cell_started(self) -> str | None:
        """Note a cell's start; the walltime warning to show first, if it is time."""
        with self._lock:
            self._running += 1
            self._last_activity = time.monotonic()
        if self._warned or self.end_time is None:
            return None
        left = self.end_time - time.time()
        if left > self.walltime_warning:
            return None
        self._warned = True
        at = time.strftime("%H:%M:%S", time.localtime(self.end_time))
        return (
            f"Warning: Slurm job {self.job_id} reaches its time limit in {_duration(left)} "
            f"(at {at}); this kernel and everything in it end then. Save your work.\n"
        )

    def cell_ended(self) -> None:
        with self._lock:
            self._running -= 1
            self._last_activity = time.monotonic()

    def _idle_for(self) -> float:
        with self._lock:
            return 0.0 if self._running else time.monotonic() - self._last_activity

    def _watch_idle(self) -> None:
        step = min(max(self.idle_timeout / 10, 0.5), 30.0)
        while (idle := self._idle_for()) < self.idle_timeout:
            time.sleep(min(step, self.idle_timeout - idle + 0.05))
        log.warning(
            "no cell has run for %s (the idle limit): cancelling Slurm job %s",
            _duration(idle),
            self.job_id,
        )
        comment = f"{IDLE_COMMENT} of {self.idle_timeout:g} s"
        for argv in (
            ["scontrol", "update", f"JobId={self.job_id}", f"Comment={comment}"],
            ["scancel", self.job_id],
        ):
            try:
                subprocess.run(argv, capture_output=True, timeout=_COMMAND_TIMEOUT, check=True)
            except (OSError, subprocess.SubprocessError) as exc:
                log.error("%s failed: %s", argv[0], exc)


def job_kernel(cls: type[BaseKernel], settings: str) -> type[BaseKernel]:
    """``cls`` with the walltime warning and the idle limit of the job whose settings are the
    JSON ``settings`` (``idle_timeout``, ``walltime_warning``, in seconds; 0 for none), and
    which notes a restart request for :func:`exit_status`. ``cls`` itself outside a job."""
    job_id = os.environ.get("SLURM_JOB_ID", "")
    if not job_id:
        return cls
    try:
        values: dict[str, Any] = json.loads(settings)
        idle_timeout = float(values.get("idle_timeout") or 0)
        walltime_warning = float(values.get("walltime_warning") or 0)
    except (ValueError, TypeError, AttributeError) as exc:
        log.error("ignoring bad Slurm job settings %r: %s", settings, exc)
        idle_timeout = walltime_warning = 0.0
    watched = idle_timeout > 0 or walltime_warning > 0

    class SlurmJobKernel(cls):  # type: ignore[valid-type,misc]
        __doc__ = cls.__doc__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._slurm_watch = (
                JobWatch(job_id, idle_timeout, walltime_warning)
                if watched and _rank() == 0
                else None
            )

        async def do_execute(self, code: str, ctx: ExecuteContext) -> Any:
            watch = self._slurm_watch
            if watch is None:
                return await super().do_execute(code, ctx)
            notice = watch.cell_started()
            if notice is not None:
                ctx.stream("stderr", notice)
            try:
                return await super().do_execute(code, ctx)
            finally:
                watch.cell_ended()

        async def do_shutdown(self, restart: bool) -> None:
            global _restart_asked
            _restart_asked = restart
            await super().do_shutdown(restart)

    SlurmJobKernel.__name__ = cls.__name__
    SlurmJobKernel.__qualname__ = cls.__qualname__
    return SlurmJobKernel
