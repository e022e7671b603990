"""A real single-node Slurm cluster for tests and benchmarks: munged with a generated key,
slurmctld and slurmd with a generated slurm.conf, everything in one temporary directory, no
systemd. The node is this host with its real CPU count.

Needs Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them) and root (slurmd
launches jobs as their owner). :func:`missing` says why a cluster cannot start here.

Partitions: ``debug`` (the default, up) and ``held`` (down: a job sent there stays pending
with the reason ``PartitionDown``).

Usage::

    with SlurmCluster() as cluster:   # sets SLURM_CONF for this process while it runs
        subprocess.run(["sbatch", ...])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def missing() -> str | None:
    """Why no cluster can be started here, or None."""
    absent = [b for b in BINARIES if shutil.which(b, path=_path()) is None]
    if absent:
        return (
            f"Slurm and munge are not installed (no {', '.join(absent)}): apt-get install "
            "slurm-wlm munge"
        )
    if os.geteuid() != 0:
        return "the test Slurm cluster's slurmd must run as root"
    return None


def _path() -> str:
    return os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmCluster:
    """Start on enter, stop on exit (every job cancelled, every daemon gone)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="kernelsdk-slurm-"))
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.conf = self.dir / "slurm.conf"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._saved_conf: str | None = None
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=_path())

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        reason = missing()
        if reason is not None:
            raise RuntimeError(reason)
        d = self.dir
        for sub in ("munge", "state", "spool", "log"):
            (d / sub).mkdir(mode=0o700, exist_ok=True)
        key = d / "munge" / "munge.key"
        subprocess.run(["mungekey", "-c", "-f", "-k", str(key)], check=True, env=self.env)
        key.chmod(0o400)
        self.munge_socket = d / "munge" / "munge.socket"
        self._spawn(
            [
                "munged",
                "-F",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={d / 'munge' / 'munged.pid'}",
                f"--seed-file={d / 'munge' / 'munged.seed'}",
                f"--log-file={d / 'log' / 'munged.log'}",
            ],
            d / "log" / "munged.out",
        )
        self._wait_for(self.munge_socket.exists, "munged's socket", d / "log" / "munged.log")
        self.conf.write_text(self._slurm_conf(), encoding="utf-8")
        self._saved_conf = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(self.conf)
        self._spawn(["slurmctld", "-D", "-c", "-i"], d / "log" / "slurmctld.out")
        self._spawn(["slurmd", "-D", "-N", self.node], d / "log" / "slurmd.out")
        self._wait_for(self._node_idle, f"node {self.node} idle", d / "log" / "slurmd.log")

    def stop(self) -> None:
        """Cancel every job, wait for them to leave, then stop the daemons."""
        if any(p.poll() is None for p in self._procs):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["scancel", "--full", "--user", str(os.getuid())],
                    env=self.env,
                    capture_output=True,
                    timeout=30,
                )
                self._wait_for(lambda: not self.jobs(), "every job to end", None, timeout=60)
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._saved_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self._saved_conf
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- queries -----------------------------------------------------------------------------

    def squeue(self, *args: str) -> str:
        return subprocess.run(
            ["squeue", "-h", *args], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def jobs(self) -> list[str]:
        """The ids of the jobs squeue shows (pending, running, completing)."""
        return self.squeue("-o", "%i").split()

    def log(self, name: str) -> str:
        path = self.dir / "log" / name
        return path.read_text(errors="replace") if path.exists() else ""

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self, argv: list[str], out: Path) -> None:
        with open(out, "wb") as f:
            self._procs.append(
                subprocess.Popen(
                    argv, env=self.env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    def _node_idle(self) -> bool:
        result = subprocess.run(
            ["sinfo", "-h", "-n", self.node, "-o", "%T"],
            env=self.env,
            capture_output=True,
            text=True,
        )
        return result.returncode == 0 and "idle" in result.stdout

    def _wait_for(self, ready: object, what: str, log: Path | None, timeout: float = 60) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args for p in self._procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise RuntimeError(
                    f"the test Slurm cluster did not get {what}"
                    + (f" ({dead} exited)" if dead else "")
                    + (f"; {log}:\n{text}" if text else "")
                )
            time.sleep(0.2)

    def _slurm_conf(self) -> str:
        d = self.dir
        return f"""\
# A single-node test cluster written by tests/slurm_cluster.py.
ClusterName=kernelsdk-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "slurmctld.pid"}
SlurmdPidFile={d / "slurmd.pid"}
SlurmctldLogFile={d / "log" / "slurmctld.log"}
SlurmdLogFile={d / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container: processes are tracked by their parent pid.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Quick turnover: ended jobs leave squeue at once, the scheduler runs often.
MinJobAge=2
KillWait=5
SchedulerParameters=sched_interval=2
MessageTimeout=20
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=held Nodes={self.node} MaxTime=INFINITE State=DOWN
"""
