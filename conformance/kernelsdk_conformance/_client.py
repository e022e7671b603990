"""A raw ZeroMQ client for one kernel, launched from its kernelspec.

jupyter_client is used only to find the kernelspec and to start, signal and restart the
process (``KernelManager``). Every message goes over this module's own sockets. Headers and
signed frames come from kernelsdk's client role (``ClientProtocol``), unchecked, since checks
send unknown types and requests on any channel on purpose; what no well-behaved client would
send (unsigned, wrong-key, tampered, replayed or malformed frames) is forged from those frames
or, for frames too broken to build any other way, written raw here.

Every message received from the kernel is decoded leniently into a :class:`Msg` (raw dicts,
whatever their shape) and appended to :attr:`KernelClient.log`, where the schema check finds
them all at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import zmq
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

from kernelsdk import RemoteProtocolError
from kernelsdk.protocol import DELIMITER, Channel, ClientProtocol, Header, Session

DELIM = DELIMITER
CHANNELS = ("shell", "control", "stdin")


class KernelDied(Exception):
    """The kernel process is gone (or stopped answering) when a check needed it."""


class KernelExitedAtStartup(KernelDied):
    """The kernel process exited before it answered its first kernel_info."""


class NoReply(Exception):
    """An awaited message did not arrive within the timeout."""


class NoStatus(Exception):
    """The kernel is known (from its start) not to publish the busy/idle status a wait needs.

    Raised at once instead of waiting out a timeout: the ``kernel_info`` check reports the
    fault, every check that needs the idle of such a request is skipped with this reason.
    """


class OverBudget(Exception):
    """The running check used up its time budget; the message says what it was waiting for."""


#: how long a starting kernel may take to publish the status of its first kernel_info once
#: its shell answered (the IOPub subscription settles in milliseconds)
STATUS_WAIT = 10.0


class Budget:
    """The time the running check may take, shared by every client the check uses.

    Every wait of a :class:`KernelClient` is cut short at the deadline and then raises
    :class:`OverBudget`; kernel start-up does not count (it has its own timeout).
    """

    def __init__(self) -> None:
        self.seconds: float | None = None
        self.deadline: float | None = None
        self._paused = 0

    def start(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def stop(self) -> None:
        self.start(None)

    def limit(self, timeout: float) -> float:
        """``timeout``, cut to what is left of the budget (never negative)."""
        if self.deadline is None or self._paused:
            return max(0.0, timeout)
        return max(0.0, min(timeout, self.deadline - time.monotonic()))

    def check(self, what: str) -> None:
        """Raise :class:`OverBudget` (waiting for ``what``) if the budget is used up."""
        if self.deadline is not None and not self._paused and time.monotonic() >= self.deadline:
            raise OverBudget(what)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside does not count (kernel start-up)."""
        started = time.monotonic()
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            if self.deadline is not None and not self._paused:
                self.deadline += time.monotonic() - started


@dataclass
class Msg:
    """One message received from the kernel (fields as decoded, unvalidated)."""

    channel: str
    header: Any
    parent_header: Any
    metadata: Any
    content: Any
    buffers: list[bytes] = field(default_factory=list)
    signature_ok: bool = True
    topic: bytes | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", "")) if isinstance(self.header, dict) else ""

    @property
    def parent_id(self) -> str | None:
        if isinstance(self.parent_header, dict):
            value = self.parent_header.get("msg_id")
            return value if isinstance(value, str) else None
        return None

    def describe(self) -> str:
        state = ""
        if self.msg_type == "status" and isinstance(self.content, dict):
            state = f"({self.content.get('execution_state')})"
        return f"{self.channel}:{self.msg_type}{state}"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KernelClient:
    """One kernel process and raw DEALER (shell, control, stdin), SUB (iopub) sockets."""

    def __init__(
        self,
        kernel_name: str,
        *,
        timeout: float = 10.0,
        startup_timeout: float = 60.0,
        spec_manager: KernelSpecManager | None = None,
        kernel_output: bool = False,
        budget: Budget | None = None,
        no_status: dict[str, str] | None = None,
        transport_encryption: str = "disabled",
    ) -> None:
        self.kernel_output = kernel_output
        self.budget = budget or Budget()
        #: request msg_type ("*": every type) -> why its busy/idle never comes; found at start,
        #: or given (known from an earlier launch of the same kernel: not probed again)
        self.no_status: dict[str, str] = dict(no_status or {})
        self._status_known = bool(no_status)
        self.kernel_name = kernel_name
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        ksm = spec_manager or KernelSpecManager()
        self.spec: KernelSpec = ksm.get_kernel_spec(kernel_name)
        self.km = KernelManager(
            kernel_name=kernel_name,
            kernel_spec_manager=ksm,
            transport_encryption=transport_encryption,
        )
        self.km.shutdown_wait_time = 3.0
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.socks: dict[str, zmq.Socket[Any]] = {}
        self.iopub: zmq.Socket[Any] | None = None
        self.session_id = uuid.uuid4().hex
        self.log: list[Msg] = []
        self.sent_ids: set[str] = set()
        #: the header of every message this client framed (valid or forged), by msg_id
        self.sent_headers: dict[str, dict[str, Any]] = {}
        self.welcomes: list[Msg] = []
        self._iopub_backlog: list[Msg] = []
        self._reply_backlog: dict[str, list[Msg]] = {c: [] for c in CHANNELS}
        self.protocol = ClientProtocol(
            Session(), session_id=self.session_id, clock=now_iso, username="conformance"
        )

    @property
    def session(self) -> Session:
        """Signs what this client sends and checks what it receives (unsigned until the
        kernel's connection file is known)."""
        return self.protocol.session

    @session.setter
    def session(self, session: Session) -> None:
        # The same protocol signs with the new key: message ids keep counting, never reused.
        self.protocol.session = session

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with self.budget.paused():
            self._start()

    def _start(self) -> None:
        quiet = (
            {}
            if self.kernel_output
            else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        )
        try:
            self.km.start_kernel(**quiet)
        except Exception as exc:
            raise KernelDied(f"could not launch kernel {self.kernel_name!r}: {exc}") from exc
        info = self.km.get_connection_info()
        key = info["key"]
        self.key: bytes = key if isinstance(key, bytes) else str(key).encode()
        self.signature_scheme = str(info["signature_scheme"])
        self.session = Session(self.key, self.signature_scheme, replay_history=0)
        self.connect()
        self.wait_ready()

    def secure(self, sock: zmq.Socket[Any]) -> zmq.Socket[Any]:
        """Make ``sock`` a CurveZMQ client of the kernel when it was started with keys (JEP
        145); call before connecting. As jupyter_client does, the connection file's key pair
        authenticates the kernel and serves as the client's own."""
        if self.km.curve_publickey is not None and self.km.curve_secretkey is not None:
            sock.curve_secretkey = self.km.curve_secretkey
            sock.curve_publickey = self.km.curve_publickey
            sock.curve_serverkey = self.km.curve_publickey
        return sock

    def connect(self) -> None:
        self.close_sockets()
        identity = uuid.uuid4().hex.encode()
        self._monitors: dict[str, zmq.Socket[Any]] = {}
        for channel in CHANNELS:
            sock = self.ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.identity = identity
            # A DEALER blocks a send until some connection completes its handshake, which
            # never happens with a kernel that refuses it (CURVE against plain text).
            sock.sndtimeo = int(self.timeout * 1000)
            self._monitors[channel] = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self.secure(sock).connect(self.km._make_url(channel))
            self.socks[channel] = sock
        self.iopub = self.new_iopub()

    def wait_connected(self, timeout: float) -> None:
        """Wait until every DEALER finished its handshake: a ROUTER drops messages to a peer
        it has not met, so an input_request sent before stdin connects would be lost."""
        deadline = time.monotonic() + timeout
        for channel, mon in self._monitors.items():
            if not mon.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                raise KernelDied(f"the {channel} socket never connected to the kernel")
            mon.recv_multipart()
            self.socks[channel].disable_monitor()
            mon.close(linger=0)
        self._monitors.clear()

    def new_iopub(self) -> zmq.Socket[Any]:
        sub = self.ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.secure(sub).connect(self.km._make_url("iopub"))
        result: zmq.Socket[Any] = sub
        return result

    def close_sockets(self) -> None:
        for mon in getattr(self, "_monitors", {}).values():
            mon.close(linger=0)
        for sock in self.socks.values():
            sock.close(linger=0)
        self.socks.clear()
        if self.iopub is not None:
            self.iopub.close(linger=0)
            self.iopub = None

    def wait_ready(self) -> None:
        """kernel_info on shell until answered, then until IOPub shows its busy/idle."""
        with self.budget.paused():
            self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self.alive():
                raise KernelExitedAtStartup(f"kernel {self.kernel_name!r} exited during startup")
            try:
                msg_id = self.send("shell", "kernel_info_request", {})
                self.reply("shell", msg_id, timeout=1.0)
                break
            except NoReply:
                if time.monotonic() > deadline:
                    raise KernelDied(
                        f"kernel {self.kernel_name!r} did not answer kernel_info in "
                        f"{self.startup_timeout:g}s"
                    ) from None
        self.wait_connected(max(1.0, deadline - time.monotonic()))
        self._settle_iopub(min(deadline, time.monotonic() + STATUS_WAIT), deadline)

    def _settle_iopub(self, deadline: float, connect_deadline: float) -> None:
        """Wait until the IOPub subscription delivers the busy/idle of a kernel_info_request.

        A kernel that never publishes them is not waited for again and again: what is missing
        goes into :attr:`no_status`, and a later wait for such a status raises
        :class:`NoStatus` at once. ``deadline`` bounds the wait once IOPub is seen to be
        connected (a welcome or any message came); until then it is ``connect_deadline`` (the
        start-up timeout), since a subscription that is slow to connect on a loaded machine
        is no fault of the kernel's.
        """
        ids: list[str] = []
        mine: list[Msg] = []
        while True:
            msg_id = self.send("shell", "kernel_info_request", {})
            ids.append(msg_id)
            self.reply("shell", msg_id)
            # A SUB drops what is published before it is connected: ask again each second.
            connected = bool(self.welcomes or self._iopub_backlog or mine)
            limit = deadline if connected else connect_deadline
            until = min(limit, time.monotonic() + 1.0)
            while (remaining := until - time.monotonic()) > 0:
                assert self.iopub is not None
                msg = self._recv(self.iopub, "iopub", remaining)
                if msg is None:
                    break
                if msg.msg_type == "iopub_welcome":
                    self.welcomes.append(msg)
                if msg.parent_id not in ids:
                    self._iopub_backlog.append(msg)
                    continue
                mine.append(msg)
                if is_status(msg, "idle"):
                    return
            connected = bool(self.welcomes or self._iopub_backlog or mine)
            limit = deadline if connected else connect_deadline
            if self._status_known or time.monotonic() >= limit:
                break
        if self._status_known:
            return  # the same kernel launched again: what it lacks is known already
        waited = f"within {STATUS_WAIT:g} s"
        if any(is_status(m, "busy") for m in mine):
            missing = f"its reply and status busy, but no status idle {waited}"
        elif self.welcomes or self._iopub_backlog:
            missing = f"its reply but no busy/idle status {waited} (IOPub is connected: " + (
                "iopub_welcome received)" if self.welcomes else "other messages arrived)"
            )
        else:
            missing = f"its reply but no busy/idle status, nor any other IOPub message, {waited}"
        self.no_status["kernel_info_request"] = f"kernel_info_request got {missing}"
        # Executes are what most checks need: do they get their idle?
        probe = self.execute("", silent=True, store_history=False, stop_on_error=False)
        try:
            self.reply("shell", probe)
            self.collect(probe, timeout=min(self.timeout, STATUS_WAIT))
        except NoReply:
            self.no_status["kernel_info_request"] += (
                "; an execute_request (of empty code) got no status idle either"
            )
            self.no_status["*"] = "no status idle for any request"
        self._status_known = True

    def missing_status(self, parent_id: str) -> str | None:
        """Why the busy/idle of the request ``parent_id`` will not come (None: it should)."""
        if not self.no_status:
            return None
        msg_type = str(self.sent_headers.get(parent_id, {}).get("msg_type", ""))
        return self.no_status.get(msg_type) or self.no_status.get("*")

    def alive(self) -> bool:
        return bool(self.km.is_alive())

    def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            self.budget.check("the kernel process to exit")
            time.sleep(0.05)
        return not self.alive()

    def pid(self) -> int | None:
        proc = getattr(self.km.provisioner, "process", None)
        pid = getattr(proc, "pid", None)
        return pid if isinstance(pid, int) else None

    def sigint(self) -> None:
        """SIGINT to the kernel's process group, as jupyter_client's signal interrupt does."""
        pid = self.pid()
        if pid is None:
            raise KernelDied("no kernel process")
        try:
            os.killpg(os.getpgid(pid), signal.SIGINT)
        except ProcessLookupError:
            raise KernelDied("kernel process is gone") from None

    def close(self) -> None:
        self.close_sockets()
        try:
            if self.km.has_kernel:
                if self.alive():
                    self.km.shutdown_kernel(now=True)
                else:
                    self.km.cleanup_resources()
        finally:
            self.ctx.destroy(linger=0)

    def __enter__(self) -> KernelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------------

    def header(self, msg_type: str, **overrides: Any) -> dict[str, Any]:
        """A new header (the client role's next msg_id, the time, the protocol version), with
        ``overrides``."""
        return {**self.protocol.header(msg_type).to_dict(), **overrides}

    def frames(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        session: Session | None = None,
        header: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
    ) -> tuple[str, list[bytes]]:
        """(msg_id, frames) of a message signed by ``session`` (default: the right key).

        ``parent`` is a header as the kernel sent it; one that is not a valid header (a faulty
        kernel's) is echoed as it is, on the raw path.
        """
        header = header or self.header(msg_type)
        msg_id = str(header["msg_id"])
        self.sent_headers[msg_id] = header
        try:
            parent_header = Header.from_dict(parent) if parent else None
            built = self.protocol.unchecked_message(
                Channel.SHELL,  # the same frames on any channel
                Header.from_dict(header),
                content,
                parent=parent_header,
                metadata=metadata,
            )
            parts = list(built.frames[2:6])
            if session is None:
                return msg_id, list(built.frames)
        except RemoteProtocolError:
            parts = [
                json.dumps(header).encode(),
                json.dumps(parent or {}).encode(),
                json.dumps(metadata or {}).encode(),
                json.dumps(content).encode(),
            ]
        signer = session or self.session
        return msg_id, [DELIM, signer.sign(parts), *parts]

    def send_frames(self, channel: str, frames: Sequence[bytes]) -> None:
        try:
            self.socks[channel].send_multipart(list(frames))
        except zmq.Again:
            raise NoReply(
                f"could not send on {channel} within {self.timeout:g}s: no connection to the "
                "kernel completed (a CurveZMQ handshake that fails never does)"
            ) from None

    def send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        subshell_id: str | None = None,
    ) -> str:
        """Send a request; ``subshell_id`` goes into its header (kernel subshells, JEP 91)."""
        header = None if subshell_id is None else self.header(msg_type, subshell_id=subshell_id)
        msg_id, frames = self.frames(
            msg_type, content, header=header, metadata=metadata, parent=parent
        )
        self.sent_ids.add(msg_id)
        self.send_frames(channel, frames)
        return msg_id

    def execute(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
        allow_stdin: bool = False,
        stop_on_error: bool = True,
        channel: str = "shell",
        subshell_id: str | None = None,
    ) -> str:
        return self.send(
            channel,
            "execute_request",
            {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": user_expressions or {},
                "allow_stdin": allow_stdin,
                "stop_on_error": stop_on_error,
            },
            subshell_id=subshell_id,
        )

    # -- receiving -----------------------------------------------------------------------------

    def decode(self, channel: str, frames: list[bytes], *, log: bool = True) -> Msg:
        problems: list[str] = []
        try:
            split = frames.index(DELIM)
        except ValueError:
            split = -1
            problems.append("no <IDS|MSG> delimiter")
        topic = frames[0] if split == 1 else None
        body = frames[split + 1 :]
        while len(body) < 5:
            body.append(b"{}")
            problems.append("fewer than 5 frames after the delimiter")
        signature, parts, buffers = body[0], body[1:5], body[5:]
        ok = True
        if self.session.signs:
            ok = signature == self.session.sign(parts)
            if not ok:
                problems.append("bad or missing signature on a kernel message")
        decoded: list[Any] = []
        for name, part in zip(
            ("header", "parent_header", "metadata", "content"), parts, strict=True
        ):
            try:
                decoded.append(json.loads(part))
            except ValueError as exc:
                problems.append(f"{name} is not JSON: {exc}")
                decoded.append(None)
        header, parent, metadata, content = decoded
        msg = Msg(
            channel,
            header,
            parent,
            metadata,
            content,
            buffers=list(buffers),
            signature_ok=ok,
            topic=topic,
        )
        msg.problems = problems
        if log:
            self.log.append(msg)
        return msg

    def _recv(
        self,
        sock: zmq.Socket[Any],
        channel: str,
        timeout: float,
        *,
        log: bool = True,
        what: str = "",
    ) -> Msg | None:
        """The next message on ``sock``; None after ``timeout``; OverBudget if the check's
        budget ends first."""
        wait = self.budget.limit(timeout)
        if not sock.poll(int(wait * 1000)):
            if wait < timeout:
                self.budget.check(what or f"a message on {channel}")
            return None
        return self.decode(channel, sock.recv_multipart(), log=log)

    def recv_iopub(self, timeout: float) -> Msg | None:
        """The next IOPub message (backlog first), or None after ``timeout``."""
        if self._iopub_backlog:
            return self._iopub_backlog.pop(0)
        assert self.iopub is not None
        msg = self._recv(self.iopub, "iopub", timeout)
        if msg is not None and msg.msg_type == "iopub_welcome":
            self.welcomes.append(msg)
        return msg

    def iopub_messages(self, timeout: float = 0.2) -> Iterator[Msg]:
        """Everything IOPub delivers until it is quiet for ``timeout``."""
        while (msg := self.recv_iopub(timeout)) is not None:
            yield msg

    def collect(self, parent_id: str, *, timeout: float | None = None) -> list[Msg]:
        """IOPub messages of ``parent_id`` up to and including its ``idle`` status.

        Messages of other parents stay in the backlog for their own collect().

        Raises:
            NoStatus: the kernel is known not to publish that idle (found at start).
        """
        if self.missing_status(parent_id) is not None:
            which = "any request" if "*" in self.no_status else self._type_of(parent_id)
            raise NoStatus(f"the kernel publishes no status idle for {which}")
        what = f"the idle status of {self._type_of(parent_id)} on IOPub"
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        kept: list[Msg] = []
        out: list[Msg] = []
        backlog, self._iopub_backlog = self._iopub_backlog, []
        try:
            pending = list(backlog)
            while True:
                if pending:
                    msg: Msg | None = pending.pop(0)
                else:
                    assert self.iopub is not None
                    msg = self._recv(self.iopub, "iopub", deadline - time.monotonic(), what=what)
                    if msg is not None and msg.msg_type == "iopub_welcome":
                        self.welcomes.append(msg)
                if msg is None:
                    raise NoReply(
                        f"no idle status for {parent_id} on IOPub; got "
                        f"{[m.describe() for m in out] or 'nothing'}"
                    )
                if msg.parent_id != parent_id:
                    kept.append(msg)
                    continue
                out.append(msg)
                if is_status(msg, "idle"):
                    kept.extend(pending)
                    return out
        finally:
            self._iopub_backlog = kept + self._iopub_backlog

    def reply(self, channel: str, parent_id: str, *, timeout: float | None = None) -> Msg:
        """The reply to ``parent_id`` on ``channel`` (other replies are kept for later)."""
        backlog = self._reply_backlog[channel]
        for i, old in enumerate(backlog):
            if old.parent_id == parent_id:
                return backlog.pop(i)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        what = f"the reply to {self._type_of(parent_id)} on {channel}"
        while True:
            msg = self._recv(self.socks[channel], channel, deadline - time.monotonic(), what=what)
            if msg is None:
                state = "" if self.alive() else " (the kernel process has exited)"
                raise NoReply(f"no reply to {parent_id} on {channel}{state}")
            if msg.parent_id == parent_id:
                return msg
            backlog.append(msg)

    def replies_until(
        self, channel: str, parent_id: str, timeout: float | None = None
    ) -> list[Msg]:
        """Every message on ``channel`` up to and including the reply to ``parent_id``."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        out = list(self._reply_backlog[channel])
        self._reply_backlog[channel].clear()
        for i, old in enumerate(out):
            if old.parent_id == parent_id:
                self._reply_backlog[channel] = out[i + 1 :]
                return out[: i + 1]
        what = f"the reply to {self._type_of(parent_id)} on {channel}"
        while True:
            msg = self._recv(self.socks[channel], channel, deadline - time.monotonic(), what=what)
            if msg is None:
                raise NoReply(f"no reply to {parent_id} on {channel}")
            out.append(msg)
            if msg.parent_id == parent_id:
                return out

    def recv_raw(self, channel: str, timeout: float) -> Msg | None:
        return self._recv(self.socks[channel], channel, timeout)

    def request(
        self, channel: str, msg_type: str, content: dict[str, Any], *, timeout: float | None = None
    ) -> tuple[Msg, list[Msg]]:
        """Send a request; return (reply, its IOPub messages up to idle).

        For a request type the kernel is known to publish no busy/idle for, the IOPub part
        is empty: the caller wants the reply (the kernel_info check reports the fault).
        """
        msg_id = self.send(channel, msg_type, content)
        reply = self.reply(channel, msg_id, timeout=timeout)
        if self.missing_status(msg_id) is not None:
            return reply, []
        return reply, self.collect(msg_id, timeout=timeout)

    def run(self, code: str, *, timeout: float | None = None, **kw: Any) -> tuple[Msg, list[Msg]]:
        msg_id = self.execute(code, **kw)
        reply = self.reply("shell", msg_id, timeout=timeout)
        return reply, self.collect(msg_id, timeout=timeout)

    def _type_of(self, msg_id: str) -> str:
        return str(self.sent_headers.get(msg_id, {}).get("msg_type") or msg_id)

    def heartbeat(self, timeout: float, payload: bytes = b"ping") -> bool:
        sock = self.ctx.socket(zmq.REQ)
        sock.linger = 0
        self.secure(sock).connect(self.km._make_url("hb"))
        try:
            sock.send(payload)
            wait = self.budget.limit(timeout)
            if not sock.poll(int(wait * 1000)):
                if wait < timeout:
                    self.budget.check("a heartbeat echo")
                return False
            return bool(sock.recv() == payload)
        finally:
            sock.close(linger=0)

    def barrier(self, channel: str = "shell", timeout: float | None = None) -> list[Msg]:
        """A kernel_info_request on ``channel``; every other reply that arrived before its."""
        msg_id = self.send(channel, "kernel_info_request", {})
        msgs = self.replies_until(channel, msg_id, timeout)
        return msgs[:-1]

    def drain_iopub(self, quiet: float = 0.2) -> list[Msg]:
        return list(self.iopub_messages(quiet))


def is_status(msg: Msg, state: str) -> bool:
    return (
        msg.msg_type == "status"
        and isinstance(msg.content, dict)
        and msg.content.get("execution_state") == state
    )


def outputs(msgs: list[Msg]) -> list[Msg]:
    """The messages between busy and idle other than execute_input."""
    return [m for m in msgs if m.msg_type not in ("status", "execute_input")]


def stream_text(msgs: list[Msg], name: str = "stdout") -> str:
    return "".join(
        str(m.content.get("text", ""))
        for m in msgs
        if m.msg_type == "stream" and isinstance(m.content, dict) and m.content.get("name") == name
    )
