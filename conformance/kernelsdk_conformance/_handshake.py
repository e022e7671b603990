"""Launching a kernel with a registration file (JEP 66) and playing the registrar.

jupyter_client never does this (it always writes a classic connection file), so the suite
launches the kernelspec's argv itself: ``{connection_file}`` points at a registration file
naming a ROUTER the suite listens on, and the kernel is expected to report the ports it bound
there, signed, and to wait for the acknowledgement.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from kernelsdk.protocol import Registration, Session

from ._client import Budget, KernelClient


class RegisteringKernel:
    """One kernel process started from a registration file, and the registrar's socket."""

    def __init__(
        self,
        kernel_name: str,
        spec_manager: KernelSpecManager,
        *,
        output: bool,
        budget: Budget | None = None,
    ) -> None:
        self.kernel_name = kernel_name
        self.spec_manager = spec_manager
        self.output = output
        self.budget = budget or Budget()
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        # A kernel that reads the registration file connects here first: the monitor tells a
        # kernel still starting from one that ignores the file.
        self._monitor = self.router.get_monitor_socket(zmq.EVENT_ACCEPTED)
        self.connected = False
        self.registered = False
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.kernel_id = str(uuid.uuid4())
        self.key = str(uuid.uuid4())
        self.session = Session(self.key.encode(), "hmac-sha256")
        self._dir = tempfile.TemporaryDirectory(prefix="ksdk-conformance-")
        self.file = Path(self._dir.name) / f"kernel-{self.kernel_id}.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def cannot_launch(self) -> str | None:
        """Why the kernelspec cannot be given a registration file (None: it can)."""
        argv = self.spec_manager.get_kernel_spec(self.kernel_name).argv
        if not any("{connection_file}" in str(arg) for arg in argv):
            return "the kernelspec's argv has no {connection_file}, so no registration file"
        return None

    def launch(self) -> None:
        self.file.write_text(
            json.dumps(
                {
                    "kernel_id": self.kernel_id,
                    "transport": "tcp",
                    "ip": "127.0.0.1",  # xeus requires it; kernels.rst's example omits it
                    "registration_ip": "127.0.0.1",
                    "registration_port": str(self.port),  # xeus reads a string
                    "signature_scheme": "hmac-sha256",
                    "key": self.key,
                }
            ),
            encoding="utf-8",
        )
        os.chmod(self.file, 0o600)
        # jupyter_client's own substitutions ({connection_file}, {resource_dir}, python).
        km = KernelManager(kernel_name=self.kernel_name, kernel_spec_manager=self.spec_manager)
        km.connection_file = str(self.file)
        argv = km.format_kernel_cmd()
        env = {**os.environ, **(km.kernel_spec.env if km.kernel_spec else {})}
        output = None if self.output else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            argv, env=env, start_new_session=True, stdout=output, stderr=output
        )

    def wait_registration(
        self, timeout: float, connect_within: float | None = None
    ) -> tuple[Registration, list[bytes]] | str:
        """The kernel's registration and its identities, or why none came.

        Args:
            timeout: how long to wait for the registration at most.
            connect_within: a kernel that has not even connected to the registrar after this
                many seconds ignores the file (None: wait the whole ``timeout``).

        Raises:
            RemoteProtocolError: the kernel sent one, malformed or badly signed.
            OverBudget: the check's time budget ended first.
        """
        assert self.proc is not None
        started = time.monotonic()
        deadline = started + timeout
        classic_since: float | None = None
        while time.monotonic() < deadline:
            self.budget.check("the kernel's registration")
            if self.router.poll(50):
                frames = self.router.recv_multipart()
                self.registered = True
                return Registration.from_frames(self.session, frames)
            if not self.connected and self._monitor.poll(0):
                self.connected = True
            if (
                not self.connected
                and connect_within is not None
                and time.monotonic() - started > connect_within
            ):
                return (
                    f"the kernel did not connect to the registrar within {connect_within:.0f} s "
                    "of its launch"
                )
            if self.proc.poll() is not None:
                return f"the kernel exited (status {self.proc.returncode}) without registering"
            if classic_since is None and self._wrote_ports():
                classic_since = time.monotonic()
            # A kernel that writes its ports into the file follows the classic pattern; give
            # it a moment in case it registers after writing, then stop waiting.
            if classic_since is not None and time.monotonic() - classic_since > 2.0:
                return "the kernel wrote its ports into the file and did not register"
        return f"no registration within {timeout:g} s"

    def _wrote_ports(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.file.read_text(encoding="utf-8"))
            return isinstance(data, dict) and bool(data.get("shell_port"))
        return False

    def acknowledge(self, identities: list[bytes]) -> None:
        self.router.send_multipart(Registration.ack_frames(self.session, identities))

    def written_ports(self) -> dict[str, Any] | None:
        """The ports of the connection file the kernel left (None: still the registration)."""
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("shell_port"):
                return data
        return None

    def client(self, registration: Registration, kc: KernelClient) -> None:
        """Point ``kc`` (not started) at the registered ports."""
        info: dict[str, Any] = {
            "transport": "tcp",
            "ip": "127.0.0.1",
            "key": self.key,
            "signature_scheme": "hmac-sha256",
        }
        info.update(registration.ports)
        kc.km.load_connection_info(info)  # type: ignore[arg-type]
        kc.key = self.key.encode()
        kc.signature_scheme = "hmac-sha256"
        kc.session = Session(kc.key, kc.signature_scheme, replay_history=0)
        kc.connect()

    def close(self, grace: float) -> None:
        """Wait ``grace`` seconds for the process to exit, then kill its process group (at
        once if it never registered: nobody asked it to shut down)."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace if self.registered else 0)
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(zmq.ZMQError):
            self.router.disable_monitor()
        self._monitor.close(linger=0)
        self.router.close()
        self.ctx.term()
        self._dir.cleanup()
