"""The Slurm kernel provisioner: a jupyter_client provisioner that runs a kernelspec's kernel
as a Slurm batch job, from a Jupyter server on a login node.

A kernelspec written by ``python -m kernelsdk install KERNEL --slurm ...`` names it (entry
point ``kernelsdk-slurm`` in ``jupyter_client.kernel_provisioners``) with its settings in
``metadata.kernel_provisioner.config``. Starting the kernel:

1. binds a registrar (:mod:`._registrar`, JEP 66) on this host and generates the kernel's
   CurveZMQ key pair;
2. submits the job with ``sbatch`` (:mod:`._sbatch`): the kernelspec's argv in the batch script,
   the registration file in sbatch's environment only; a job sbatch refuses fails the start
   with sbatch's own message;
3. waits for the kernel to register, up to :attr:`SlurmProvisioner.start_timeout` seconds,
   logging the job's state and pending reason as they change. A job still pending then is
   cancelled, and the start fails saying the job id, the reason and how to wait longer;
4. connects to the kernel's address (where its registration came from) with CurveZMQ.

While the kernel runs, :meth:`~SlurmProvisioner.poll` notices at once when its process ends (a
connection to the kernel's heartbeat port drops: ``scancel``, a crash, the walltime) and asks
squeue every :attr:`~SlurmProvisioner.status_interval` seconds otherwise (a node that died
silently). Shutdown sends ``shutdown_request``; a job still there after the grace period is
cancelled, and :meth:`~SlurmProvisioner.cleanup` cancels whatever is left.

A restart (``shutdown_request`` with ``restart: true``) keeps the job and its allocation: the
kernel ends with :data:`~._sbatch.RESTART_STATUS`, the job script starts a fresh kernel (with an
MPI variant, the whole ``mpiexec``/``srun`` command: every rank), and the next
:meth:`~SlurmProvisioner.launch_kernel` waits for its registration with the same registrar
(kept open for the job's life) instead of calling sbatch: new ports, same job id. If the job
ended with its kernel instead, or the fresh kernel does not register within
:attr:`~SlurmProvisioner.start_timeout`, a log line says so and a new job is submitted. A
forced restart (``restart_kernel(now=True)``) cancels the job and submits a new one.

A job that was cancelled, reached its time limit or ended itself for being idle is not
resubmitted by jupyter_client's automatic restarter (the kernel is reported dead, and a
restart by the user submits a new job); one whose kernel crashed is.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Final, cast

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from jupyter_client.session import Session as JupyterSession
from traitlets import Float, List, Unicode
from zmq.utils.monitor import recv_monitor_message

from .._connection import PORT_NAMES, ConnectionInfo
from .._exceptions import ConfigError
from .._session import Session
from ._registrar import Registrar
from ._sbatch import (
    CONNECTION_VAR,
    IDLE_COMMENT,
    SETTINGS_VAR,
    JobStatus,
    SlurmError,
    batch_script,
    has_option,
    job_status,
    sbatch,
    scancel,
)

#: How often squeue is asked about a job that has not started yet (seconds).
PENDING_POLL_INTERVAL: Final = 2.0
#: How long poll() waits for squeue to show the final state of a job whose kernel just ended.
FINAL_STATE_WAIT: Final = 5.0
#: End states that were someone's decision: the automatic restarter does not resubmit them.
_DELIBERATE: Final = frozenset({"CANCELLED", "TIMEOUT", "DEADLINE", "PREEMPTED"})


class SlurmProvisioner(KernelProvisionerBase):
    """Run the kernel as a Slurm job (see the module docstring)."""

    sbatch_args = List(
        Unicode(),
        config=True,
        help="sbatch options for the kernel's job (--partition, --time, --ntasks...).",
    )
    start_timeout = Float(
        300.0,
        config=True,
        help="Seconds to wait for the job to start and its kernel to report its ports; a job "
        "still pending then is cancelled and the start fails with its pending reason.",
    )
    idle_timeout = Float(
        0.0,
        config=True,
        help="Seconds without a running cell after which the job cancels itself, freeing its "
        "nodes (0: never).",
    )
    walltime_warning = Float(
        300.0,
        config=True,
        help="Seconds before the job's time limit from which the next cell warns (0: never).",
    )
    status_interval = Float(
        30.0,
        config=True,
        help="Seconds between two squeue queries about a running job (a kernel whose process "
        "ends is noticed at once without them; these find a node that died silently).",
    )
    connect_host = Unicode(
        "",
        config=True,
        help="The address of this host that compute nodes can reach (default: its hostname).",
    )
    registrar_ip = Unicode(
        "*", config=True, help="Where the registrar binds on this host (default: everywhere)."
    )
    kernel_ip = Unicode(
        "0.0.0.0",
        config=True,
        help="Where the kernel binds on its node (default: every interface; CurveZMQ guards "
        "its sockets).",
    )
    log_dir = Unicode(
        "",
        config=True,
        help="Directory for the jobs' output (<dir>/kernel-<job id>.log), on a filesystem the "
        "compute nodes share (default: kernelsdk-slurm in Jupyter's data directory); unused when "
        "sbatch_args has --output.",
    )

    job_id: str | None = None
    # The job's end: its squeue line (None if gone from squeue) and poll()'s exit status.
    _exit: int | None = None
    _end: JobStatus | None = None
    # Whether the next launch is the restarter's after a deliberate end: it stays dead.
    _stay_dead = False
    _shutdown_asked = False
    # A restart was asked while the job ran: its kernel is expected to end and the job to
    # start a fresh one.
    _restart_in_job = False
    # The kernel ended for a restart and its job runs on: the next launch waits for the fresh
    # kernel's registration.
    _relaunch = False
    # The job's registrar (open while the job may register again) and the kernel's CurveZMQ
    # key pair (empty without CurveZMQ).
    _registrar: Registrar | None = None
    _public = b""
    _secret = b""
    _last_status = 0.0
    _context: zmq.Context[Any] | None = None
    _watch: zmq.Socket[Any] | None = None
    _monitor: zmq.Socket[Any] | None = None
    _connected = False

    @property
    def has_process(self) -> bool:
        """Whether a job was submitted for the kernel (until cleanup)."""
        return self.job_id is not None

    # -- launch ------------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """The kernel's command: the kernelspec's argv, ``{connection_file}`` left for the
        job to fill in."""
        km = self.parent
        transport = getattr(km, "transport", "tcp")
        if transport != "tcp":
            raise ConfigError(
                f"a kernel in a Slurm job needs the tcp transport, not {transport!r}: ipc "
                "sockets cannot be reached from another node"
            )
        extra = list(kwargs.pop("extra_arguments", None) or [])
        kwargs.pop("transport_encryption", None)  # always CurveZMQ here, when pyzmq has it
        spec = self.kernel_spec
        substitutions = {"{resource_dir}": spec.resource_dir or "", "{prefix}": sys.prefix}
        cmd = []
        for arg in [*spec.argv, *extra]:
            for placeholder, value in substitutions.items():
                arg = arg.replace(placeholder, value)
            cmd.append(arg)
        return await super().pre_launch(cmd=cmd, **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Submit the job and wait until its kernel has registered; return its connection
        info.

        Raises:
            SlurmError: sbatch refused the job (its message), the job ended before its kernel
                started, or it did not start within :attr:`start_timeout` (then it is
                cancelled; the message names the job, its pending reason and the setting).
        """
        if self._stay_dead and self.job_id is not None:
            self.log.warning(
                "Slurm job %s %s: not submitting another (restart the kernel to do so)",
                self.job_id,
                self._end_description(),
            )
            return self.connection_info
        if self._relaunch and self.job_id is not None and self._registrar is not None:
            info = await self._launch_in_job(self.job_id, self._registrar)
            if info is not None:
                return info
        self._reset()
        km = self.parent
        if km is None:
            raise ConfigError("the Slurm provisioner runs under a jupyter_client KernelManager")
        jsession = cast(JupyterSession, km.session)
        key = bytes(jsession.key)
        scheme = str(jsession.signature_scheme)
        curve = zmq.has("curve")
        public, secret = zmq.curve_keypair() if curve else (b"", b"")
        if not curve:
            self.log.warning("pyzmq has no CurveZMQ: the kernel's traffic is not encrypted")
        registrar = Registrar(
            Session(key, scheme),
            curve_secretkey=secret if curve else None,
            bind_ip=self.registrar_ip,
            log=self.log,
        )
        try:
            registration_info = ConnectionInfo(
                transport="tcp",
                ip=self.kernel_ip,
                key=key.decode(),
                signature_scheme=scheme,
                kernel_name=self._kernel_name(),
                kernel_id=str(self.kernel_id),
                registration_ip=self.connect_host or socket.gethostname(),
                registration_port=registrar.port,
                curve_publickey=public.decode(),
                curve_secretkey=secret.decode(),
            )
            env = dict(kwargs.get("env") or os.environ)
            env[CONNECTION_VAR] = json.dumps(registration_info.to_dict())
            env[SETTINGS_VAR] = json.dumps(
                {"idle_timeout": self.idle_timeout, "walltime_warning": self.walltime_warning}
            )
            args = self._sbatch_argv()
            try:
                job_id = await sbatch(args, batch_script(cmd), env, cwd=kwargs.get("cwd"))
            except SlurmError as exc:
                raise SlurmError(
                    f"Slurm refused the job for kernel {self._display_name()!r}: {exc}"
                ) from None
            self.job_id = job_id
            self.log.info(
                "Submitted Slurm job %s for kernel %s (%s)",
                job_id,
                self.kernel_id,
                self._display_name(),
            )
            try:
                registration, address = await self._wait_for_kernel(registrar, job_id)
            except BaseException:
                await self._cancel_quietly(job_id)
                self.job_id = None
                raise
        except BaseException:
            registrar.close()
            raise
        # Open while the job runs: a restart in the job registers here again.
        self._registrar = registrar
        self._public, self._secret = public, secret
        return await self._connect(job_id, registration, address)

    async def _launch_in_job(
        self, job_id: str, registrar: Registrar
    ) -> KernelConnectionInfo | None:
        """Wait for the fresh kernel of a restart in the job; its connection info, or None
        (logged) when the job ended or the kernel did not register in time (then the job is
        cancelled): a new job is to be submitted."""
        self._unwatch()
        self._relaunch = self._restart_in_job = self._shutdown_asked = False
        self._exit = self._end = None
        self._last_status = 0.0
        try:
            registration, address = await self._wait_for_kernel(registrar, job_id)
            # A registration may have come just before the job was cancelled.
            status = await job_status(job_id)
            if status is None or status.state != "RUNNING":
                raise SlurmError(
                    f"Slurm job {job_id} "
                    + ("is gone" if status is None else f"ended: {status.describe()}")
                )
        except SlurmError as exc:
            self.log.warning(
                "Kernel %s did not restart in its Slurm job, submitting a new job: %s",
                self.kernel_id,
                exc,
            )
            await self._cancel_quietly(job_id)
            return None
        except BaseException:
            await self._cancel_quietly(job_id)
            self._reset()
            raise
        self.log.info("Kernel %s restarted in Slurm job %s", self.kernel_id, job_id)
        return await self._connect(job_id, registration, address)

    async def _connect(self, job_id: str, registration: Any, address: str) -> KernelConnectionInfo:
        """The connection info of the kernel that registered; watch its heartbeat port."""
        km = self.parent
        if km is None:
            raise ConfigError("the Slurm provisioner runs under a jupyter_client KernelManager")
        jsession = cast(JupyterSession, km.session)
        ip = address or await self._job_host(job_id)
        ports = registration.ports
        connection: dict[str, Any] = {
            "transport": "tcp",
            "ip": ip,
            **{name: ports[name] for name in PORT_NAMES},
            # Bytes, as the manager holds it (it compares them when it writes its file).
            "key": bytes(jsession.key),
            "signature_scheme": str(jsession.signature_scheme),
            "kernel_name": self._kernel_name(),
        }
        if self._secret:
            connection["curve_publickey"] = self._public.decode()
            connection["curve_secretkey"] = self._secret.decode()
        self.connection_info = cast(KernelConnectionInfo, connection)
        self._watch_kernel(ip, ports["hb_port"], self._public, self._secret)
        self.log.info("Kernel %s runs in Slurm job %s at %s", self.kernel_id, job_id, ip)
        return self.connection_info

    async def _wait_for_kernel(self, registrar: Registrar, job_id: str) -> tuple[Any, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        described = ""
        while True:
            remaining = deadline - loop.time()
            found = await registrar.wait(
                str(self.kernel_id), max(0.0, min(PENDING_POLL_INTERVAL, remaining))
            )
            if found is not None:
                return found
            try:
                status = await job_status(job_id)
            except SlurmError as exc:
                self.log.warning("squeue failed about job %s: %s", job_id, exc)
                status = JobStatus("UNKNOWN")
            if status is None or not status.active:
                # One last look: the registration may have come as the job ended.
                found = await registrar.wait(str(self.kernel_id), 0)
                if found is not None:
                    return found
                what = "is gone from squeue" if status is None else f"ended: {status.describe()}"
                raise SlurmError(
                    f"Slurm job {job_id} for kernel {self._display_name()!r} {what} before "
                    f"its kernel started.{self._log_tail(job_id)}"
                )
            if status.describe() != described:
                described = status.describe()
                where = f" on {status.nodes}" if status.nodes and status.state != "PENDING" else ""
                self.log.info("Slurm job %s: %s%s", job_id, described, where)
            if loop.time() >= deadline:
                raise SlurmError(self._timeout_message(job_id, status))

    def _timeout_message(self, job_id: str, status: JobStatus) -> str:
        how = (
            "To wait longer, raise the start timeout: reinstall the kernelspec with "
            "python -m kernelsdk install ... --slurm --start-timeout SECONDS, or set "
            f'"start_timeout" in metadata.kernel_provisioner.config of '
            f"{Path(self.kernel_spec.resource_dir or '.') / 'kernel.json'}."
        )
        if status.state == "PENDING":
            return (
                f"Slurm job {job_id} for kernel {self._display_name()!r} did not start within "
                f"{self.start_timeout:g} s: it was still pending (reason: {status.reason}), "
                f"and has been cancelled. {how}"
            )
        return (
            f"the kernel in Slurm job {job_id} ({status.describe()}"
            + (f" on {status.nodes}" if status.nodes else "")
            + f") did not report its ports within {self.start_timeout:g} s; the job has been "
            f"cancelled.{self._log_tail(job_id)} {how}"
        )

    def _sbatch_argv(self) -> list[str]:
        args = list(self.sbatch_args)
        ours = ["--export=ALL"]
        if not has_option(args, "--job-name", "-J"):
            ours.append(f"--job-name=jupyter-{self._kernel_name() or 'kernel'}")
        if not has_option(args, "--output", "-o"):
            ours.append(f"--output={self._log_path('%j')}")
        return [*ours, *args]

    def _log_dir(self) -> Path:
        if self.log_dir:
            return Path(self.log_dir).expanduser()
        from jupyter_core.paths import jupyter_data_dir

        return Path(jupyter_data_dir()) / "kernelsdk-slurm"

    def _log_path(self, job_id: str) -> Path:
        directory = self._log_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory / f"kernel-{job_id}.log"

    def _log_tail(self, job_id: str, lines: int = 20) -> str:
        if has_option(self.sbatch_args, "--output", "-o"):
            return ""
        path = self._log_dir() / f"kernel-{job_id}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return f" (its output, if any: {path})"
        tail = "\n".join(text.rstrip().splitlines()[-lines:])
        return f" Its output ({path}):\n{tail}" if tail else f" (no output in {path})"

    async def _job_host(self, job_id: str) -> str:
        """The first node of the job (when the registration's address is unknown)."""
        status = await job_status(job_id)
        nodes = status.nodes if status is not None else ""
        host = nodes.split(",")[0].split("[")[0]
        if not host:
            raise SlurmError(f"cannot tell where Slurm job {job_id} runs")
        return host

    # -- watching the kernel -----------------------------------------------------------------

    def _watch_kernel(self, ip: str, hb_port: int, public: bytes, secret: bytes) -> None:
        """Hold a connection to the kernel's heartbeat port: it drops when the process ends."""
        self._context = zmq.Context()
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        if secret:
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_serverkey = public
        self._monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        sock.connect(f"tcp://{ip}:{hb_port}")
        self._watch = sock
        self._connected = False

    def _dropped(self) -> bool:
        """Whether the connection to the kernel dropped since it was made."""
        monitor = self._monitor
        dropped = False
        while monitor is not None and monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                self._connected = True
            elif event == zmq.EVENT_DISCONNECTED and self._connected:
                dropped = True
        return dropped

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.disable_monitor()
            self._watch.close(linger=0)
        if self._monitor is not None:
            self._monitor.close(linger=0)
        if self._context is not None:
            self._context.term()
        self._watch = self._monitor = self._context = None

    async def poll(self) -> int | None:
        """None while the kernel runs; once it has ended, 0 if its job completed, else 1."""
        return await self._poll(self.status_interval)

    async def _poll(self, status_interval: float) -> int | None:
        if self.job_id is None:
            return 0
        if self._exit is not None:
            return self._exit
        loop = asyncio.get_running_loop()
        dropped = self._dropped()
        if not dropped and loop.time() - self._last_status < status_interval:
            return None
        self._last_status = loop.time()
        try:
            status = await job_status(self.job_id)
        except SlurmError as exc:
            self.log.warning("squeue failed about job %s: %s", self.job_id, exc)
            if not dropped:
                return None
            status = JobStatus("UNKNOWN")
        if dropped and self._restart_in_job:
            if status is not None and status.state == "RUNNING":
                # The kernel ended for a restart; the job starts a fresh one.
                self._relaunch = True
                self._exit = 0
                return self._exit
            self.log.info(
                "Slurm job %s ended with its kernel (%s): the restart submits a new job",
                self.job_id,
                "gone" if status is None else status.describe(),
            )
        if dropped:
            # The kernel's process has ended; wait a little for the job's final state, which
            # says why.
            deadline = loop.time() + FINAL_STATE_WAIT
            while status is not None and status.active and loop.time() < deadline:
                await asyncio.sleep(0.25)
                status = await _status_or_unknown(self.job_id)
        elif status is not None and status.active:
            return None
        self._end = status
        self._exit = 0 if status is None or status.state == "COMPLETED" else 1
        if not self._shutdown_asked:
            self.log.warning(
                "Kernel %s: Slurm job %s %s",
                self.kernel_id,
                self.job_id,
                self._end_description(),
            )
        return self._exit

    def _deliberate_end(self) -> bool:
        end = self._end
        return end is not None and (end.state in _DELIBERATE or IDLE_COMMENT in end.comment)

    def _end_description(self) -> str:
        end = self._end
        if end is None:
            return "has ended"
        if IDLE_COMMENT in end.comment:
            return f"ended itself: {end.comment} without a cell, freeing its nodes"
        if end.state == "TIMEOUT":
            return "reached its time limit"
        return f"ended: {end.describe()}"

    async def wait(self) -> int | None:
        """Wait until the kernel has ended (squeue asked every second meanwhile)."""
        while (status := await self._poll(1.0)) is None:
            await asyncio.sleep(0.1)
        return status

    # -- signals, shutdown -------------------------------------------------------------------

    async def send_signal(self, signum: int) -> None:
        """SIGINT becomes an ``interrupt_request`` (srun and MPI launchers handle signals
        badly); SIGTERM and SIGKILL cancel the job; any other signal goes to its processes."""
        if self.job_id is None or self._exit is not None:
            return
        if signum == signal.SIGINT:
            self._send_interrupt_request()
        elif signum in (signal.SIGTERM, signal.SIGKILL):
            await self._cancel_quietly(self.job_id)
        else:
            await scancel(self.job_id, signal=str(int(signum)))

    def _send_interrupt_request(self) -> None:
        info = self.connection_info
        if self._context is None or not info:
            return
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 1000
        try:
            public = info.get("curve_publickey")
            if public:
                secret = str(info.get("curve_secretkey", ""))
                sock.curve_serverkey = str(public).encode()
                sock.curve_publickey = str(public).encode()
                sock.curve_secretkey = secret.encode()
            sock.connect(f"tcp://{info['ip']}:{info['control_port']}")
            session = JupyterSession(
                key=cast(bytes, info["key"]), signature_scheme=str(info["signature_scheme"])
            )
            session.send(sock, "interrupt_request", content={})
        finally:
            sock.close()

    async def kill(self, restart: bool = False) -> None:
        """Cancel the job. (jupyter_client's restarter kills a dead kernel before it restarts
        it: after a deliberate end that restart keeps the kernel dead, see the module
        docstring.)"""
        if self._exit is not None and self._deliberate_end() and not self._shutdown_asked:
            self._stay_dead = True
        if self.job_id is not None and self._exit is None:
            self._restart_in_job = False
            await self._cancel_quietly(self.job_id)

    async def terminate(self, restart: bool = False) -> None:
        """Cancel the job (it has not ended within half the grace period)."""
        if self.job_id is not None and self._exit is None:
            self.log.info("Cancelling Slurm job %s: its kernel did not exit", self.job_id)
            self._restart_in_job = False
            await self._cancel_quietly(self.job_id)

    async def shutdown_requested(self, restart: bool = False) -> None:
        """A shutdown (or a user's restart) was asked for: the kernel is expected to end (and,
        for a restart, its job to start a fresh one)."""
        await super().shutdown_requested(restart=restart)
        self._shutdown_asked = True
        self._stay_dead = False
        self._restart_in_job = restart and self.job_id is not None and self._exit is None

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        """At least 10 s: an MPI kernel's ranks finish and the job's step ends."""
        return max(recommended, 10.0)

    async def cleanup(self, restart: bool = False) -> None:
        """Cancel the job if it is still there; forget it (unless it stays dead, or runs on
        for a restart in the job)."""
        self._unwatch()
        job_id = self.job_id
        if job_id is None:
            return
        if restart and self._relaunch:
            return
        if self._exit is None or self._relaunch:
            self._relaunch = False
            await self._cancel_quietly(job_id)
        elif (
            self._shutdown_asked
            and self._exit == 0
            and not has_option(self.sbatch_args, "--output", "-o")
        ):
            # A clean end: its output has nothing to keep.
            (self._log_dir() / f"kernel-{job_id}.log").unlink(missing_ok=True)
        self._close_registrar()
        if not (restart and self._stay_dead):
            self.job_id = None

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await scancel(job_id)
        except SlurmError as exc:
            self.log.error("scancel %s failed: %s", job_id, exc)

    def _close_registrar(self) -> None:
        if self._registrar is not None:
            self._registrar.close()
            self._registrar = None

    def _reset(self) -> None:
        self._unwatch()
        self._close_registrar()
        self.job_id = None
        self._exit = None
        self._end = None
        self._stay_dead = False
        self._shutdown_asked = False
        self._restart_in_job = False
        self._relaunch = False
        self._last_status = 0.0

    def _kernel_name(self) -> str:
        """The kernelspec's name (the manager knows it; the spec object may not)."""
        name = getattr(self.parent, "kernel_name", "") or getattr(self.kernel_spec, "name", "")
        return str(name or "")

    def _display_name(self) -> str:
        return str(getattr(self.kernel_spec, "display_name", "") or "kernel")

    # -- persistence -------------------------------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        """What a manager persists to find the kernel again: its connection and its job."""
        info = await super().get_provisioner_info()
        info["connection_info"] = {
            k: v.decode() if isinstance(v, bytes) else v for k, v in self.connection_info.items()
        }
        info["job_id"] = self.job_id
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        """Take over the job of :meth:`get_provisioner_info` (watched through squeue)."""
        await super().load_provisioner_info(provisioner_info)
        job_id = provisioner_info.get("job_id")
        self.job_id = str(job_id) if job_id else None


async def _status_or_unknown(job_id: str) -> JobStatus | None:
    try:
        return await job_status(job_id)
    except SlurmError:
        return JobStatus("UNKNOWN")
