"""The Slurm side of the provisioner: the batch script, and sbatch, squeue, scancel run
without blocking the Jupyter server's event loop.

What a job receives and how:

* the kernel's command (the kernelspec's argv) is in the batch script, given to sbatch on its
  standard input, never on a command line;
* the secrets (the HMAC key and the kernel's CurveZMQ key pair, in a registration file) are in
  the environment of sbatch only (:data:`CONNECTION_VAR`), which Slurm passes to the job. The
  script writes them to a file of mode 0600 in a directory of mode 0700 on the node, removes
  the variable before the kernel starts and deletes the file when the job ends. Slurm keeps a
  job's environment and script in slurmctld's state directory while the job exists: the job's
  owner, root and the SlurmUser can read them (``scontrol show job -d``, ``scontrol write
  batch_script``), nobody else;
* the non-secret job settings (idle limit, walltime warning) are in :data:`SETTINGS_VAR`.

The script runs the kernel in a loop: a kernel asked to restart (``shutdown_request`` with
``restart: true``) ends with :data:`RESTART_STATUS`, and the script starts a fresh kernel from
the same registration file, which registers again with the provisioner's registrar (new ports,
same job, same allocation). With an MPI variant the whole ``mpiexec``/``srun`` command is the
kernel: every rank ends and all start again. Any other end of the kernel ends the job with the
kernel's status.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Final, final

import attrs

from .._exceptions import KernelSDKError

#: The registration file's contents, in sbatch's environment (see the module docstring).
CONNECTION_VAR: Final = "KERNELSDK_SLURM_CONNECTION"
#: The job-side settings (JSON: idle_timeout, walltime_warning) for ``python -m kernelsdk run``.
SETTINGS_VAR: Final = "KERNELSDK_SLURM"
#: The exit status of a kernel in a job that was asked to restart (every rank's, so that
#: ``mpiexec`` and ``srun`` end with it too): the job script starts a fresh kernel.
RESTART_STATUS: Final = 75
#: What the job sets as its comment before it ends itself for being idle.
IDLE_COMMENT: Final = "kernelsdk: idle limit"

#: States in which a job still holds (or waits for) resources.
ACTIVE_STATES: Final = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)

_PLACEHOLDER: Final = "{connection_file}"

# Where the job writes the registration file: private to the job, removed when it ends. Each
# kernel starts from a copy (a kernel that has registered writes its ports over its file).
_SCRIPT_HEAD: Final = f"""\
#!/bin/bash
# Written by kernelsdk's Slurm kernel provisioner: one Jupyter kernel in this job, started
# again in the job when it ends with status {RESTART_STATUS} (a restart).
umask 077
kernel_dir=$(mktemp -d "${{TMPDIR:-/tmp}}/kernelsdk-slurm-$SLURM_JOB_ID-XXXXXX") || exit 1
trap 'rm -rf "$kernel_dir"' EXIT
# printf is a shell builtin: the key never appears on a command line.
printf '%s' "${CONNECTION_VAR}" > "$kernel_dir/registration.json"
unset {CONNECTION_VAR} JPY_PARENT_PID
while :; do
    cp "$kernel_dir/registration.json" "$kernel_dir/connection.json" || exit 1
"""

_SCRIPT_TAIL: Final = f"""\
    status=$?
    [ "$status" -eq {RESTART_STATUS} ] || exit "$status"
    echo "kernelsdk: the kernel restarts in Slurm job $SLURM_JOB_ID" >&2
done
"""


def batch_script(argv: Sequence[str]) -> str:
    """The job script that runs ``argv`` with ``{connection_file}`` replaced by the file it
    writes from :data:`CONNECTION_VAR`, again each time it ends with :data:`RESTART_STATUS`."""
    words = []
    for arg in argv:
        pieces = arg.split(_PLACEHOLDER)
        words.append(
            '"$kernel_dir/connection.json"'.join(shlex.quote(p) if p else "" for p in pieces)
            or "''"
        )
    # Not exec: the loop restarts the kernel, and the trap removes the directory at the end.
    return _SCRIPT_HEAD + "    " + " ".join(words) + "\n" + _SCRIPT_TAIL


def has_option(args: Sequence[str], *names: str) -> bool:
    """Whether sbatch ``args`` set any of the options ``names`` (``--time``, ``-t``...)."""
    for arg in args:
        for name in names:
            if arg == name or (name.startswith("--") and arg.startswith(name + "=")):
                return True
            if not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
                return True
    return False


class SlurmError(KernelSDKError):
    """A Slurm command failed, or a job did not start; the message says why (a command's
    failure in its own words)."""


async def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
    cwd: str | os.PathLike[str] | None = None,
) -> tuple[int, str, str]:
    """Run a Slurm command without blocking the event loop: (status, stdout, stderr).

    Raises:
        SlurmError: the command is not installed or did not finish within ``timeout``.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    except FileNotFoundError:
        raise SlurmError(
            f"{argv[0]} not found: the Slurm client commands must be on the PATH of the "
            "Jupyter server"
        ) from None
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(None if stdin is None else stdin.encode()), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SlurmError(f"{argv[0]} did not answer within {timeout:g} s") from None
    status = proc.returncode
    assert status is not None
    return status, out.decode(errors="replace"), err.decode(errors="replace")


async def sbatch(
    args: Sequence[str],
    script: str,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
) -> str:
    """Submit ``script`` with sbatch ``args`` from ``cwd`` (the job's working directory);
    return the job id.

    Raises:
        SlurmError: sbatch refused the job; the message is sbatch's own.
    """
    status, out, err = await run_command(
        ["sbatch", "--parsable", *args], env=env, stdin=script, cwd=cwd
    )
    if status != 0:
        raise SlurmError(err.strip() or f"sbatch failed with status {status}")
    # --parsable: "jobid" or "jobid;cluster".
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id: {out.strip()!r} {err.strip()}")
    return job_id


@final
@attrs.frozen
class JobStatus:
    """One line of squeue about a job."""

    state: str
    reason: str = ""
    comment: str = ""
    nodes: str = ""
    time_left: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def describe(self) -> str:
        reason = "" if self.reason in ("", "None", "(null)") else f" ({self.reason})"
        return f"{self.state}{reason}"


#: squeue's fields for :class:`JobStatus`, separated by a character no field holds.
_FORMAT: Final = "%T\x1f%r\x1f%k\x1f%N\x1f%L"


async def job_status(job_id: str) -> JobStatus | None:
    """The job as squeue sees it (finished jobs too, while slurmctld remembers them), or None
    once it is gone from squeue.

    Raises:
        SlurmError: squeue failed for another reason than an unknown job.
    """
    status, out, err = await run_command(["squeue", "-h", "-t", "all", "-j", job_id, "-o", _FORMAT])
    if status != 0:
        if "Invalid job id" in err:
            return None
        raise SlurmError(err.strip() or f"squeue failed with status {status}")
    line = out.strip("\n").split("\n")[0] if out.strip() else ""
    if not line:
        return None
    fields = [*line.split("\x1f"), "", "", "", ""]
    return JobStatus(*(f.strip() for f in fields[:5]))


async def scancel(job_id: str, *, signal: str | None = None) -> None:
    """Cancel (or signal) a job; an already finished job is no error."""
    argv = ["scancel", "--quiet"]
    if signal is not None:
        argv += ["--full", f"--signal={signal}"]
    await run_command([*argv, job_id], timeout=30)


_TIME_LEFT = re.compile(r"^(?:(?P<d>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")


def parse_time_left(text: str) -> float | None:
    """Seconds in squeue's ``%L`` (``[days-][hours:]minutes:seconds``), None for
    ``UNLIMITED``, ``NOT_SET`` or anything else."""
    match = _TIME_LEFT.match(text.strip())
    if match is None:
        return None
    d, h, m, s = (int(match.group(g) or 0) for g in "dhms")
    return float(((d * 24 + h) * 60 + m) * 60 + s)
