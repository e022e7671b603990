"""The ZeroMQ transport: the five sockets of a kernel, bound as the connection file says."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import trio
import zmq

from ._connection import ConnectionInfo
from ._events import Channel
from ._exceptions import TransportError
from ._heartbeat import Heartbeat
from ._trio_zmq import TrioSocket

_SOCKETS = {
    Channel.SHELL: ("shell_port", zmq.ROUTER),
    Channel.CONTROL: ("control_port", zmq.ROUTER),
    Channel.STDIN: ("stdin_port", zmq.ROUTER),
    Channel.IOPUB: ("iopub_port", zmq.XPUB),
}


def _endpoint(info: ConnectionInfo, port_name: str, taken: set[int]) -> str:
    """The endpoint to bind; port 0 means "any free port" (tcp) or "a free suffix" (ipc)."""
    port: int = getattr(info, port_name)
    if info.transport == "tcp":
        return f"tcp://{info.ip}:{port or '*'}"
    if port == 0:
        port = 1
        while port in taken or os.path.exists(f"{info.ip}-{port}"):
            port += 1
    return f"ipc://{info.ip}-{port}"


def _check_curve(info: ConnectionInfo) -> None:
    """Refuse keys this pyzmq cannot use, rather than serve in plain text or fail obscurely."""
    if not zmq.has("curve"):
        raise TransportError(
            "the connection file asks for CurveZMQ encryption (curve_secretkey), but this "
            f"pyzmq's libzmq {zmq.zmq_version()} was built without CURVE (libsodium): "
            "install a pyzmq wheel from PyPI, or rebuild libzmq with libsodium"
        )
    derived = zmq.curve_public(info.curve_secretkey.encode("ascii")).decode("ascii")
    if derived != info.curve_publickey:
        # libzmq would accept the pair, and every client given the file's public key would
        # then fail its handshake in silence.
        raise TransportError(
            "the connection file's curve_publickey is not the public key of its curve_secretkey"
        )


def _make_curve_server(sock: zmq.Socket[Any], info: ConnectionInfo) -> None:
    # A server needs only its secret key; clients authenticate it by the public key. Set
    # before bind: the mechanism applies to the connections the bind accepts.
    sock.curve_secretkey = info.curve_secretkey.encode("ascii")
    sock.curve_server = True


def _port_of(endpoint: str, transport: str) -> int:
    return int(endpoint.rsplit(":" if transport == "tcp" else "-", 1)[1])


class ZmqTransport:
    """Shell, control and stdin ROUTERs, an IOPub XPUB and the heartbeat thread.

    Use :meth:`bind`; the resulting :attr:`info` holds the ports actually bound. When the
    connection file holds CurveZMQ keys (JEP 145), all five sockets are CURVE servers: a peer
    that does not know the kernel's public key completes no handshake and gets nothing.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        sockets: dict[Channel, TrioSocket],
        heartbeat: Heartbeat,
        info: ConnectionInfo,
        *,
        owns_context: bool = False,
    ) -> None:
        self._context = context
        self._owns_context = owns_context
        self._sockets = sockets
        self._heartbeat = heartbeat
        self.info = info

    @classmethod
    def bind(cls, info: ConnectionInfo, context: zmq.Context[Any] | None = None) -> ZmqTransport:
        """Create and bind every socket.

        Raises:
            TransportError: a port is taken or an address cannot be bound, or the connection
                file has CurveZMQ keys that this pyzmq cannot use.
        """
        if info.encrypted:
            _check_curve(info)
        owns_context = context is None
        context = context or zmq.Context()
        sockets: dict[Channel, TrioSocket] = {}
        ports: dict[str, int] = {}
        try:
            for channel, (port_name, kind) in _SOCKETS.items():
                sock = context.socket(kind)
                sock.linger = 1000
                # Never drop a reply or an output because a client reads slowly: at the
                # default high-water mark ROUTER and XPUB silently discard messages. The queue
                # is bounded by what that client asked for.
                sock.setsockopt(zmq.SNDHWM, 0)
                if kind == zmq.ROUTER:
                    # A client that reconnects with the same identity takes over its route.
                    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
                else:
                    # Report every subscription, even repeated "" ones, so each new client
                    # gets its iopub_welcome.
                    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
                if info.encrypted:
                    _make_curve_server(sock, info)
                sockets[channel] = TrioSocket(sock)
                endpoint = _endpoint(info, port_name, set(ports.values()))
                try:
                    sock.bind(endpoint)
                except zmq.ZMQError as exc:
                    raise TransportError(f"cannot bind {port_name} to {endpoint}: {exc}") from exc
                bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
                ports[port_name] = _port_of(bound, info.transport)
            heartbeat = Heartbeat(
                _endpoint(info, "hb_port", set(ports.values())),
                curve_secretkey=info.curve_secretkey,
            )
            ports["hb_port"] = _port_of(heartbeat.start(), info.transport)
        except BaseException:
            for s in sockets.values():
                s.close(linger=0)
            if owns_context:  # a port taken must not leave an I/O thread behind
                context.destroy(linger=0)
            raise
        return cls(context, sockets, heartbeat, info.with_ports(**ports), owns_context=owns_context)

    @property
    def ports(self) -> dict[str, int]:
        return self.info.ports

    async def send(self, channel: Channel, frames: Sequence[bytes]) -> None:
        await self._sockets[channel].send_multipart(frames)

    def send_batch_nowait(self, messages: Sequence[tuple[Channel, Sequence[bytes]]]) -> int:
        # Waiters are checked once per socket after the batch, not after every message:
        # each check reads ZMQ_EVENTS, a system call when no command is pending.
        used: set[TrioSocket] = set()
        sent = 0
        try:
            for channel, frames in messages:
                sock = self._sockets[channel]
                used.add(sock)
                sock.send_multipart_nowait(frames, wake=False)
                sent += 1
        except trio.WouldBlock:
            pass
        finally:
            for sock in used:
                sock.wake_waiters()
        return sent

    async def receive(self, channel: Channel) -> list[bytes]:
        return await self._sockets[channel].recv_multipart()

    async def wait_readable(self, channel: Channel) -> None:
        await self._sockets[channel].wait_readable()

    def receive_nowait(self, channel: Channel) -> list[bytes]:
        return self._sockets[channel].recv_multipart_nowait()

    async def register(self, frames: Sequence[bytes], timeout: float) -> list[bytes] | None:
        """Send a registration (JEP 66) from a DEALER to the connection file's registrar and
        return its answer, or None if none came within ``timeout`` seconds.

        With CurveZMQ keys the DEALER is a CURVE client of a registrar that serves with the
        kernel's own key pair, as jupyter_client's sockets are clients of the kernel: it uses
        the pair from the file both to authenticate the registrar and as its own."""
        raw = self._context.socket(zmq.DEALER)
        raw.linger = 0
        if self.info.encrypted:
            raw.curve_secretkey = self.info.curve_secretkey.encode("ascii")
            raw.curve_publickey = self.info.curve_publickey.encode("ascii")
            raw.curve_serverkey = self.info.curve_publickey.encode("ascii")
        sock = TrioSocket(raw)
        try:
            try:
                raw.connect(self.info.registration_endpoint)
            except zmq.ZMQError as exc:
                raise TransportError(
                    f"cannot connect to the registrar at {self.info.registration_endpoint}: {exc}"
                ) from exc
            with trio.move_on_after(timeout):
                await sock.send_multipart(frames)
                return await sock.recv_multipart()
            return None
        finally:
            sock.close(linger=0)

    def close(self, linger: int = 1000) -> None:
        """Close every socket; queued messages get ``linger`` ms to leave.

        A context the transport created is terminated too (which waits for them to leave):
        a process that embeds kernels one after another would otherwise keep a context and
        its I/O thread per kernel it ever served.
        """
        for sock in self._sockets.values():
            sock.close(linger=linger)
        self._heartbeat.stop()
        if self._owns_context:
            self._context.term()
        if self.info.transport == "ipc":
            for port in self.info.ports.values():
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.info.ip}-{port}")
