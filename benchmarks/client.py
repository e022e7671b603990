"""A lean raw-pyzmq Jupyter client for benchmarks.

Blocking pyzmq sockets, no threads, no traitlets: a BlockingKernelClient adds about 1 ms per
round trip, which would hide the differences this harness is about. Every message received is
verified (HMAC signature and replay check) by :class:`kernelsdk.protocol.Session`; requests
are built and signed by the core's client role (:class:`~kernelsdk.protocol.ClientProtocol`),
untracked: this client matches replies itself.
"""

from __future__ import annotations

import hmac
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from kernelsdk import ConnectionInfo, RemoteProtocolError
from kernelsdk.protocol import DELIMITER, Channel, ClientProtocol, Header, Message, Session

#: Channel names as this harness spells them (a dict lookup is cheaper than ``Channel(name)``).
CHANNELS = {channel.value: channel for channel in Channel}
#: Every request's date: reading the clock for each would be this client's overhead, not the
#: kernel's.
FIXED_DATE = "2026-01-01T00:00:00.000000Z"


def request_builder(session: Session, session_id: str) -> ClientProtocol:
    """The client role that builds this harness's requests."""
    return ClientProtocol(
        session, session_id=session_id, clock=lambda: FIXED_DATE, username="bench"
    )


class KernelDied(RuntimeError):
    """The kernel process exited, or did not answer in time."""


def free_ports(n: int, ip: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free tcp ports (bound and released, as jupyter_client does)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((ip, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_connection_file(path: Path, *, encrypted: bool = False) -> ConnectionInfo:
    """A tcp connection file with fresh ports and a fresh key, readable by its owner only;
    with ``encrypted``, a fresh CurveZMQ key pair for the kernel too (JEP 145)."""
    shell, iopub, stdin, control, hb = free_ports(5)
    public, secret = zmq.curve_keypair() if encrypted else (b"", b"")
    info = ConnectionInfo(
        transport="tcp",
        ip="127.0.0.1",
        shell_port=shell,
        iopub_port=iopub,
        stdin_port=stdin,
        control_port=control,
        hb_port=hb,
        key=str(uuid.uuid4()),
        signature_scheme="hmac-sha256",
        curve_publickey=public.decode(),
        curve_secretkey=secret.decode(),
    )
    info.write(path)
    return info


@dataclass
class Received:
    """One verified message, with the time (``perf_counter``) it was read and verified."""

    t: float
    channel: str
    msg: Message

    @property
    def msg_type(self) -> str:
        return self.msg.header.msg_type

    @property
    def parent_id(self) -> str | None:
        parent = self.msg.parent_header
        return parent.msg_id if parent is not None else None


@dataclass
class Stats:
    """What the client saw: counts of verified messages and of those it refused."""

    verified: int = 0
    rejected: int = 0
    welcomes: int = 0
    #: signed correctly but not to the spec (e.g. a null parent_header)
    lenient: int = 0
    lenient_reasons: set[str] = field(default_factory=set)


class RawClient:
    """Shell, control, IOPub and heartbeat sockets to one kernel; blocking calls only."""

    def __init__(self, info: ConnectionInfo, context: zmq.Context[Any] | None = None) -> None:
        self.info = info
        self.context = context or zmq.Context.instance()
        self.session = Session(info.key.encode(), info.signature_scheme)
        # A CURVE client key pair of its own; the kernel's public key authenticates the kernel.
        self._curve = zmq.curve_keypair() if info.encrypted else None
        self.protocol = request_builder(self.session, uuid.uuid4().hex)
        self.stats = Stats()
        self.shell = self._socket(zmq.DEALER, "shell_port")
        self.control = self._socket(zmq.DEALER, "control_port")
        self.iopub = self._socket(zmq.SUB, "iopub_port")
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.hb = self._socket(zmq.REQ, "hb_port")
        self._sockets = {"shell": self.shell, "control": self.control, "iopub": self.iopub}
        self._names = {s: n for n, s in self._sockets.items()}
        self.poller = zmq.Poller()
        for s in self._sockets.values():
            self.poller.register(s, zmq.POLLIN)
        self._shell_iopub = zmq.Poller()
        self._shell_iopub.register(self.shell, zmq.POLLIN)
        self._shell_iopub.register(self.iopub, zmq.POLLIN)

    def _socket(self, kind: int, port_name: str) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.context.socket(kind)
        sock.linger = 0
        # Retry connecting every 5 ms while the kernel is not listening yet (default 100 ms
        # would quantize startup times), and never drop or block on a full queue.
        sock.setsockopt(zmq.RECONNECT_IVL, 5)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        if kind == zmq.DEALER:
            sock.setsockopt(zmq.IDENTITY, uuid.uuid4().hex.encode())
        if self._curve is not None:
            sock.curve_serverkey = self.info.curve_publickey.encode()
            sock.curve_publickey, sock.curve_secretkey = self._curve
        sock.connect(self.info.endpoint(port_name))
        return sock

    def close(self) -> None:
        for s in (self.shell, self.control, self.iopub, self.hb):
            s.close(linger=0)

    # -- sending ---------------------------------------------------------------------------

    def frames(
        self, msg_type: str, content: dict[str, Any], channel: str = "shell"
    ) -> tuple[str, Sequence[bytes]]:
        """A signed request (msg_id, frames)."""
        out = self.protocol.request(CHANNELS[channel], msg_type, content, track=False)
        return out.msg_id, out.frames

    def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        msg_id, frames = self.frames(msg_type, content, channel)
        self._sockets[channel].send_multipart(frames)
        return msg_id

    def execute(self, code: str, *, silent: bool = False, store_history: bool = True) -> str:
        return self.send(
            "shell",
            "execute_request",
            {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )

    # -- receiving -------------------------------------------------------------------------

    def _decode(self, channel: str, frames: Sequence[bytes], t: float) -> Received | None:
        try:
            msg = self.session.deserialize(frames)  # verifies the signature; raises if bad
        except RemoteProtocolError as exc:
            msg = self._lenient(frames, exc)
        self.stats.verified += 1
        if msg.header.msg_type == "iopub_welcome":
            self.stats.welcomes += 1
            return None
        return Received(t, channel, msg)

    def _lenient(self, frames: Sequence[bytes], exc: RemoteProtocolError) -> Message:
        """A correctly signed message whose fields break the spec (xeus-python sends a
        ``null`` parent_header on its first status): accepted, and counted."""
        split = list(frames).index(DELIMITER)
        signature, parts = frames[split + 1], frames[split + 2 : split + 6]
        if not hmac.compare_digest(signature, self.session.sign(parts)):
            raise exc
        header, parent, metadata, content = (self.session.packer.unpack(p) for p in parts)
        self.stats.lenient += 1
        self.stats.lenient_reasons.add(str(exc))
        return Message(
            header=Header.from_dict(header),
            parent_header=Header.from_dict(parent) if parent else None,
            metadata=metadata or {},
            content=content or {},
            identities=tuple(frames[:split]),
        )

    def recv_from(self, sock: zmq.Socket[bytes], timeout: float) -> Received | None:
        """One message from ``sock`` (None on timeout); welcomes are skipped."""
        deadline = time.monotonic() + timeout
        channel = self._names[sock]
        while True:
            remaining = deadline - time.monotonic()
            if not sock.poll(max(0, int(remaining * 1000)) if remaining > 0 else 0):
                return None
            frames = sock.recv_multipart()
            got = self._decode(channel, frames, time.perf_counter())
            if got is not None:
                return got
            if time.monotonic() > deadline:
                return None

    def recv_any(self, timeout: float, poller: zmq.Poller | None = None) -> list[Received]:
        """Every message readable now on shell/control/iopub, waiting up to ``timeout``."""
        events = (poller or self.poller).poll(int(timeout * 1000))
        out = []
        for sock, _ in events:
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                got = self._decode(self._names[sock], frames, time.perf_counter())
                if got is not None:
                    out.append(got)
        return out

    def request(
        self, channel: str, msg_type: str, content: dict[str, Any], timeout: float
    ) -> Received:
        """Send and wait for the reply with our msg_id (other replies on that channel are
        discarded)."""
        msg_id = self.send(channel, msg_type, content)
        sock = self._sockets[channel]
        deadline = time.monotonic() + timeout
        while True:
            got = self.recv_from(sock, max(0.0, deadline - time.monotonic()))
            if got is None:
                raise KernelDied(f"no {msg_type} reply on {channel} within {timeout} s")
            if got.parent_id == msg_id:
                return got

    def ping(self, timeout: float) -> float | None:
        """Heartbeat round trip in seconds, None on timeout (the REQ socket is then reset)."""
        t0 = time.perf_counter()
        self.hb.send(b"ping")
        if self.hb.poll(int(timeout * 1000)):
            self.hb.recv()
            return time.perf_counter() - t0
        self.hb.close(linger=0)
        self.hb = self._socket(zmq.REQ, "hb_port")
        return None

    def run_cell(self, code: str, timeout: float) -> tuple[float, float, float, list[Received]]:
        """Execute ``code``; seconds to execute_reply, to idle and to the first stream output
        (0 if none), and the cell's IOPub messages."""
        t0 = time.perf_counter()
        msg_id = self.execute(code)
        t_reply = t_idle = t_out = 0.0
        iopub: list[Received] = []
        deadline = time.monotonic() + timeout
        poll = self._shell_iopub.poll
        shell = self.shell
        while not (t_reply and t_idle):
            events = poll(int(max(0.0, deadline - time.monotonic()) * 1000))
            if not events:
                raise KernelDied(f"cell did not finish within {timeout} s: {code[:60]!r}")
            for sock, _ in events:
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    now = time.perf_counter()
                    got = self._decode("shell" if sock is shell else "iopub", frames, now)
                    if got is None or got.parent_id != msg_id:
                        continue
                    if got.channel == "shell":
                        t_reply = now - t0
                        status = got.msg.content.get("status")
                        if status != "ok":
                            raise KernelDied(f"cell failed ({status}): {got.msg.content}")
                    else:
                        iopub.append(got)
                        if not t_out and got.msg_type == "stream":
                            t_out = now - t0
                        if (
                            got.msg_type == "status"
                            and got.msg.content.get("execution_state") == "idle"
                        ):
                            t_idle = now - t0
        return t_reply, t_idle, t_out, iopub

    def drain(self, quiet: float = 0.05) -> int:
        """Read and verify whatever arrives until ``quiet`` seconds pass with nothing."""
        n = 0
        while got := self.recv_any(quiet):
            n += len(got)
        return n

    def wait_ready(self, timeout: float) -> None:
        """kernel_info until IOPub is known to be subscribed (its busy/idle reach us)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = self.send("shell", "kernel_info_request", {})
            until = time.monotonic() + 0.5
            while time.monotonic() < until:
                for got in self.recv_any(0.05):
                    if got.channel == "iopub" and got.parent_id == msg_id:
                        self.drain()
                        return
        raise KernelDied(f"IOPub never delivered within {timeout} s")


@dataclass
class KernelProcess:
    """A kernel launched from its kernelspec argv with a connection file we wrote."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    info: ConnectionInfo | None = None
    log_path: Path | None = None
    connection_file: Path | None = None
    launched_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    encrypted: bool = False

    def launch(self, tag: str) -> ConnectionInfo:
        self.connection_file = self.workdir / f"kernel-{self.name}-{tag}.json"
        self.info = write_connection_file(self.connection_file, encrypted=self.encrypted)
        argv = [a.replace("{connection_file}", str(self.connection_file)) for a in self.argv]
        self.log_path = self.workdir / f"kernel-{self.name}-{tag}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it
        self.launched_at = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self.info

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self, client: RawClient | None, timeout: float = 5.0) -> None:
        """shutdown_request on control, then SIGTERM/SIGKILL of what we started."""
        if self.proc is None:
            return
        if client is not None and self.alive():
            try:
                client.send("control", "shutdown_request", {"restart": False})
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, zmq.ZMQError):
                pass
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if self.connection_file is not None:
            self.connection_file.unlink(missing_ok=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its descendants, all threads (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` plus its descendants, in KiB (from /proc)."""
    totals = {"rss_kib": 0, "hwm_kib": 0, "processes": 0}
    for p in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{p}/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        totals["rss_kib"] += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        totals["hwm_kib"] += int(line.split()[1])
            totals["processes"] += 1
        except OSError:
            continue
    return totals


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out
