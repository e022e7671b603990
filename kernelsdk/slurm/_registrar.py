"""The registrar of the startup handshake (JEP 66) for a kernel in a Slurm job.

The provisioner binds a ROUTER before it submits the job; the kernel binds ports of its own
choosing on its node and reports them here, so no port is chosen on one host and bound on
another (the race of jupyter_client #487) and no file is shared. The ROUTER is a CurveZMQ
server with the kernel's own key pair, as the kernel's DEALER expects
(:meth:`kernelsdk._zmq_transport.ZmqTransport.register`): what travels between the nodes is
encrypted, and a registration must also carry the session's HMAC signature.

The kernel's address is where its registration came from (ZeroMQ's ``Peer-Address``): the
interface of the compute node that reaches the Jupyter server, with no name lookup.
"""

from __future__ import annotations

import asyncio
from typing import Any, final

import zmq

from .._exceptions import RemoteProtocolError
from .._registration import Registration
from .._session import Session

#: How often the registrar looks for a registration while it waits (seconds).
POLL_INTERVAL = 0.05


@final
class Registrar:
    """A ROUTER bound on ``bind_ip`` (all interfaces by default) at a random port."""

    def __init__(
        self,
        session: Session,
        *,
        curve_secretkey: bytes | None,
        bind_ip: str = "*",
        log: Any = None,
    ) -> None:
        self._session = session
        self._log = log
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.linger = 0
        if curve_secretkey is not None:
            self._socket.curve_secretkey = curve_secretkey
            self._socket.curve_server = True
        self.port = self._socket.bind_to_random_port(f"tcp://{bind_ip}")

    async def wait(self, kernel_id: str, timeout: float) -> tuple[Registration, str] | None:
        """The first valid registration of ``kernel_id`` and the address it came from, once
        acknowledged; None if none came within ``timeout`` seconds. Anything else that arrives
        (garbage, a bad signature, another kernel id) is logged and ignored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._socket.poll(0):
                frames = self._socket.recv_multipart(copy=False)
                found = self._accept(kernel_id, frames)
                if found is not None:
                    return found
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))

    def _accept(self, kernel_id: str, frames: list[zmq.Frame]) -> tuple[Registration, str] | None:
        try:
            registration, identities = Registration.from_frames(
                self._session, [f.bytes for f in frames]
            )
        except RemoteProtocolError as exc:
            if self._log is not None:
                self._log.warning("Ignoring a bad registration: %s", exc)
            return None
        if registration.kernel_id != kernel_id:
            if self._log is not None:
                self._log.warning(
                    "Ignoring the registration of another kernel (%s)", registration.kernel_id
                )
            return None
        address = frames[-1].get("Peer-Address")
        self._socket.send_multipart(Registration.ack_frames(self._session, identities))
        return registration, str(address)

    def close(self) -> None:
        # A second for the acknowledgement to leave, if it has not yet.
        self._socket.close(linger=1000)
        self._context.term()
