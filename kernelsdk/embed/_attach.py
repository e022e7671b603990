"""The attach provisioner: a jupyter_client kernel provisioner that connects to a kernel already
running inside a host program instead of launching one.

A kernelspec written by ``python -m kernelsdk install --attach NAME`` names this provisioner
(entry point ``kernelsdk-attach`` in the ``jupyter_client.kernel_provisioners`` group) with
``config: {"name": NAME}``. Starting that kernelspec finds the newest live embedded kernel called
NAME (:func:`~kernelsdk.embed._files.find_embedded`) and hands its connection info to the
KernelManager. The host owns the kernel, so this provisioner never signals it:

* shutdown, kill and terminate *detach*: the manager stops managing the kernel, and the
  ``shutdown_request`` jupyter_client sends is answered by the embedded kernel, which keeps
  running for the next client;
* an interrupt (the kernelspec's ``interrupt_mode`` is ``signal``, so it comes here as SIGINT) is
  sent as an ``interrupt_request`` on the control channel, except the one jupyter_client sends
  on its way to a shutdown: what a detach does to a running cell is the embedded kernel's
  decision, made when it answers the ``shutdown_request``;
* :meth:`poll` reports the kernel gone when the host process exits or the host stops the kernel
  (its connection file is removed or replaced);
* a restart detaches and attaches again, to the newest live kernel of that name (the same one if
  it still runs, a new run of the host otherwise).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any, cast

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from jupyter_client.session import Session
from traitlets import Unicode

from .._exceptions import ConfigError, KernelNotFoundError
from ._files import EmbeddedRecord, find_embedded, host_alive, read_record, runtime_dir
from ._files import validate_name as _validate_name

#: poll()'s exit status when the host process has exited.
HOST_EXITED = 1
#: poll()'s exit status when the host stopped the kernel but runs on, or after a detach.
KERNEL_STOPPED = 0


class AttachProvisioner(KernelProvisionerBase):
    """Attach to the newest live embedded kernel called :attr:`name` (see the module docstring)."""

    name = Unicode(
        "",
        config=True,
        help="The embedded kernel to attach to: the name its host gave it (kernelspec "
        "metadata.kernel_provisioner.config.name).",
    )

    # The kernel attached to, or None before an attach and after a detach.
    _record: EmbeddedRecord | None = None
    # The connection file's identity when attached: a host that stops its kernel removes the
    # file, one that starts another of the same name replaces it (a new inode).
    _file_id: tuple[int, int] | None = None
    _context: zmq.Context[Any] | None = None
    # The kernel whose host exited, detached by a kill on the way to a restart (see kill).
    _gone: EmbeddedRecord | None = None

    @property
    def has_process(self) -> bool:
        """Whether a kernel is attached (it stays true after the host exits, until a detach,
        so that the manager asks :meth:`poll` and learns that the kernel is gone)."""
        return self._record is not None

    @property
    def record(self) -> EmbeddedRecord | None:
        """The embedded kernel attached to, if any."""
        return self._record

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Check the name early and give the manager a command (which is never run)."""
        self._checked_name()
        # Launch options that only mean something for a process we would start.
        for key in ("extra_arguments", "transport_encryption"):
            kwargs.pop(key, None)
        return await super().pre_launch(cmd=list(self.kernel_spec.argv), **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Attach to the newest live embedded kernel of :attr:`name`; return its connection info.

        Raises:
            KernelNotFoundError: no live embedded kernel of that name (the message names the
                runtime directory searched).
            ConfigError: the kernel serves over ipc, which cannot be attached (jupyter_client
                deletes the socket files of a kernel it shuts down).
        """
        name = self._checked_name()
        found = find_embedded(name)
        gone, self._gone = self._gone, None
        if found:
            record = found[0]
        elif gone is not None:
            # The restarter's restart of a kernel whose host has exited (see kill): the kernel
            # stays reported dead, so the restarter gives up after its retries and reports it
            # dead, instead of failing every few seconds for ever.
            self.log.warning("No embedded kernel named %r is running: it stays dead", name)
            record = gone
        else:
            raise KernelNotFoundError(_none_running(name))
        _check_transport(record)
        self._attach(record)
        self.log.info(
            "Attached to embedded kernel %r of %s (pid %d): %s",
            name,
            record.host or "a host",
            record.pid,
            record.path,
        )
        return self.connection_info

    def _attach(self, record: EmbeddedRecord) -> None:
        self._record = record
        self._file_id = _file_identity(record.path)
        info = record.info
        connection: dict[str, Any] = {
            "transport": info.transport,
            "ip": info.ip,
            "shell_port": info.shell_port,
            "iopub_port": info.iopub_port,
            "stdin_port": info.stdin_port,
            "control_port": info.control_port,
            "hb_port": info.hb_port,
            # Bytes, as the manager holds it: it compares the two when it writes its own copy.
            "key": info.key.encode(),
            "signature_scheme": info.signature_scheme,
        }
        if info.encrypted:
            connection["curve_publickey"] = info.curve_publickey
            connection["curve_secretkey"] = info.curve_secretkey
        # (jupyter_client types the key as str but compares it as bytes.)
        self.connection_info = cast(KernelConnectionInfo, connection)

    def _detach(self) -> None:
        if self._record is not None:
            self.log.info("Detached from embedded kernel %r (pid %d)", self.name, self._record.pid)
        self._record = None
        self._file_id = None

    async def poll(self) -> int | None:
        """``None`` while the attached kernel runs; :data:`HOST_EXITED` once its host process
        has exited; :data:`KERNEL_STOPPED` when the host stopped the kernel, and when nothing
        is attached."""
        record = self._record
        if record is None:
            return KERNEL_STOPPED
        if not host_alive(record.pid, record.started):
            return HOST_EXITED
        if _file_identity(record.path) != self._file_id:
            return KERNEL_STOPPED
        return None

    async def wait(self) -> int | None:
        """Wait until the attached kernel ends (the host exits or stops it), then detach.

        The manager calls this only once :meth:`poll` says the kernel is gone, or after a
        detach (when it returns at once): the host decides when its kernel ends.
        """
        while (status := await self.poll()) is None:
            await asyncio.sleep(0.1)
        self._detach()
        return status

    async def send_signal(self, signum: int) -> None:
        """SIGINT becomes an ``interrupt_request`` on the control channel; nothing is ever
        signalled: the process is the host program, which is not ours to stop."""
        record = self._record
        if record is None:
            return
        if signum != signal.SIGINT:
            self.log.debug("Not sending signal %d to the host process %d", signum, record.pid)
            return
        if getattr(self.parent, "shutting_down", False):
            # jupyter_client interrupts a kernel before it shuts it down. Here the shutdown is a
            # detach, and the embedded kernel decides what it means for a running cell.
            return
        self._send_interrupt_request(record)

    def _send_interrupt_request(self, record: EmbeddedRecord) -> None:
        info = record.info
        if self._context is None:
            self._context = zmq.Context()
        sock = self._context.socket(zmq.DEALER)
        # Closing does not drop the request: the context delivers it in the background (the
        # socket is connected at once, so send never blocks), for up to a second.
        sock.linger = 1000
        try:
            if info.encrypted:
                sock.curve_serverkey = info.curve_publickey.encode()
                sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
            sock.connect(info.endpoint("control_port"))
            session = Session(key=info.key.encode(), signature_scheme=info.signature_scheme)
            session.send(sock, "interrupt_request", content={})
        finally:
            sock.close()

    async def kill(self, restart: bool = False) -> None:
        """Detach (the host is never killed).

        A kill then a restart is what jupyter_client's restarter does to a kernel it found
        dead. If the host has exited and no other runs by the time of the new attach, that
        attach takes the dead kernel again rather than fail: the restarter sees it dead on each
        retry and then reports it dead, as for a kernel process that cannot start. (A restart
        asked for by a user shuts down instead of killing, and fails with a clear error.)
        """
        # (The manager passes restart=False to kill even on its way to a restart: cleanup
        # knows, and forgets the dead kernel unless a restart follows.)
        record = self._record
        if record is not None and not host_alive(record.pid, record.started):
            self._gone = record
        self._detach()

    async def terminate(self, restart: bool = False) -> None:
        """Detach (the host is never terminated)."""
        self._detach()

    async def shutdown_requested(self, restart: bool = False) -> None:
        """The manager has sent ``shutdown_request``: detach now, so that it does not wait for a
        kernel that keeps running (the embedded kernel answers and serves on; a restart is
        refused by it and becomes a new attach here)."""
        await super().shutdown_requested(restart=restart)
        self._detach()

    async def cleanup(self, restart: bool = False) -> None:
        """Detach and close the socket used for interrupts."""
        self._detach()
        if not restart:
            self._gone = None
        if self._context is not None:
            self._context.destroy(linger=100)
            self._context = None

    async def get_provisioner_info(self) -> dict[str, Any]:
        """What a manager persists to attach again: the name and the connection file."""
        info = await super().get_provisioner_info()
        # The key is bytes, which a persisted JSON cannot hold; the connection file has it.
        info["connection_info"] = {
            k: v.decode() if isinstance(v, bytes) else v for k, v in self.connection_info.items()
        }
        info["name"] = self.name
        info["connection_file"] = None if self._record is None else str(self._record.path)
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        """Attach again from :meth:`get_provisioner_info`'s result, if that kernel still runs."""
        await super().load_provisioner_info(provisioner_info)
        self.name = provisioner_info.get("name") or self.name
        path = provisioner_info.get("connection_file")
        if not path:
            return
        try:
            record = read_record(path)
        except ConfigError:
            return
        if host_alive(record.pid, record.started):
            self._attach(record)

    def _checked_name(self) -> str:
        try:
            return _validate_name(self.name)
        except ValueError as exc:
            raise ConfigError(
                f"kernelspec {getattr(self.kernel_spec, 'display_name', '')!r}: "
                f"metadata.kernel_provisioner.config.name: {exc}"
            ) from None


def _none_running(name: str) -> str:
    directory = runtime_dir()
    return (
        f"no embedded kernel named {name!r} is running: no live host has a connection file "
        f"kernelsdk-embed-{name}-<pid>.json in Jupyter's runtime directory {directory} (start "
        "the host program first, with kernelsdk.embed.start_kernel(..., name="
        f"{name!r}), and the same JUPYTER_RUNTIME_DIR as Jupyter's)"
    )


def _check_transport(record: EmbeddedRecord) -> None:
    if record.info.transport == "ipc":
        # jupyter_client deletes a kernel's ipc socket files when its manager shuts the kernel
        # down: after the first detach nobody could connect to the host's kernel again.
        raise ConfigError(
            f"the embedded kernel {record.name!r} (pid {record.pid}) serves over ipc, which "
            "cannot be attached: jupyter_client removes the socket files on detach, cutting "
            "the host's kernel off; start it with transport='tcp' to attach from Jupyter"
        )


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
