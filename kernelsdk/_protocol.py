"""The kernel side of the Jupyter messaging protocol, sans-IO: frames in, events out.

Theory of operation
-------------------
:class:`KernelProtocol` is fed the frames a driver read from a socket
(:meth:`~KernelProtocol.receive`) and returns one event. It builds every message the kernel
sends (:meth:`~KernelProtocol.reply`, :meth:`~KernelProtocol.publish`, ...) as
:class:`~kernelsdk.Outgoing` frames for the driver to write. It owns the rules a kernel author
must never have to re-learn; the tables and methods below are the one place they live:

* which request types each channel accepts, and which reply answers each request;
* busy/idle ``status`` with the request as parent (the runtime brackets *every* request);
* the execution counter: only ``store_history`` executions advance it; ``silent`` forces
  ``store_history`` off and suppresses ``execute_input`` and results;
* ``stop_on_error``: when an execution fails, the execute requests that had *already arrived*
  are aborted, and nothing that arrives later is;
* ``iopub_welcome`` on every IOPub subscription (JEP 65), with no parent header.

It performs no I/O, reads no clock (the driver passes ``clock``) and draws no random numbers
(the driver passes ``session_id``), so the Trio runtime, the in-memory test transport and an
MPI relay all drive the same object.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from ._events import Channel, Event, InputReply, InvalidMessage, Outgoing, Request, Subscription
from ._exceptions import ExecutionError, RemoteProtocolError
from ._message import Message
from ._session import Session
from ._version import PROTOCOL_VERSION

#: Requests accepted on shell, and the reply type each gets.
SHELL_REQUESTS: Final[Mapping[str, str]] = {
    "execute_request": "execute_reply",
    "inspect_request": "inspect_reply",
    "complete_request": "complete_reply",
    "history_request": "history_reply",
    "is_complete_request": "is_complete_reply",
    "kernel_info_request": "kernel_info_reply",
    "comm_info_request": "comm_info_reply",
    "connect_request": "connect_reply",
    # Deprecated on shell since 5.4, but clients still send it there.
    "shutdown_request": "shutdown_reply",
}
#: Comm messages are symmetric and get no reply.
COMM_MESSAGES: Final = frozenset({"comm_open", "comm_msg", "comm_close"})
#: Control accepts every shell request too, so a client can reach a busy kernel.
CONTROL_REQUESTS: Final[Mapping[str, str]] = {
    **SHELL_REQUESTS,
    "interrupt_request": "interrupt_reply",
}
_ACCEPTED: Final[Mapping[Channel, frozenset[str]]] = {
    Channel.SHELL: frozenset(SHELL_REQUESTS) | COMM_MESSAGES,
    Channel.CONTROL: frozenset(CONTROL_REQUESTS) | COMM_MESSAGES,
    Channel.STDIN: frozenset({"input_reply"}),
}
#: Requests this kernel deliberately does not answer (spec: log, no reply). They get a
#: clearer log line than a truly unknown type.
UNSUPPORTED: Final = frozenset(
    {"debug_request", "create_subshell_request", "delete_subshell_request", "list_subshell_request"}
)


def error_content(exc: BaseException) -> dict[str, Any]:
    """The ``ename``/``evalue``/``traceback`` of an ``error`` output or error reply for ``exc``.

    An :class:`~kernelsdk.ExecutionError` gives exactly its fields (the user's language's
    error); any other exception its Python type, message and traceback.
    """
    if isinstance(exc, ExecutionError):
        return {"ename": exc.ename, "evalue": exc.evalue, "traceback": list(exc.traceback)}
    return {
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": traceback.format_exception(exc),
    }


def interrupt_error() -> dict[str, Any]:
    """The error content of an interrupted execution (a new dict each call).

    ipykernel's shape, which frontends recognise: ``raise ExecutionError(**interrupt_error())``
    reports an interrupt from a kernel's own code the same way.
    """
    return {
        "ename": "KeyboardInterrupt",
        "evalue": "interrupted by the user",
        "traceback": ["KeyboardInterrupt: interrupted by the user"],
    }


@attrs.frozen
class ExecutePlan:
    """What the protocol rules say about one ``execute_request``."""

    code: str
    silent: bool
    store_history: bool
    stop_on_error: bool
    allow_stdin: bool
    user_expressions: dict[str, str]
    execution_count: int


class KernelProtocol:
    """The protocol state of one kernel process.

    Args:
        session: signs and verifies frames.
        session_id: this kernel's session id, new for every kernel process (clients spot a
            restart by its change).
        clock: returns the current time as an ISO 8601 string with a timezone.
        username: the header's ``username``.
    """

    def __init__(
        self,
        session: Session,
        *,
        session_id: str,
        clock: Callable[[], str],
        username: str = "kernel",
    ) -> None:
        self.session = session
        self.session_id = session_id
        self.username = username
        self._clock = clock
        self._counter = 0
        self._seq = 0
        self._abort_through_seq = -1
        self.execution_count = 0

    # -- receiving ------------------------------------------------------------------------

    def receive(self, channel: Channel, frames: Sequence[bytes]) -> Event:
        """Turn the frames of one multipart message into one event. Never raises."""
        if channel is Channel.IOPUB:
            return self._subscription(frames)
        try:
            msg = self.session.deserialize(frames)
        except RemoteProtocolError as exc:
            return InvalidMessage(channel, str(exc), tuple(frames))
        msg_type = msg.header.msg_type
        if msg_type not in _ACCEPTED[channel]:
            why = "not supported by this kernel" if msg_type in UNSUPPORTED else "unknown"
            return InvalidMessage(channel, f"{msg_type!r} on {channel}: {why}", tuple(frames))
        if channel is Channel.STDIN:
            return InputReply(msg)
        self._seq += 1
        return Request(channel, msg, self._seq)

    def _subscription(self, frames: Sequence[bytes]) -> Event:
        if len(frames) != 1 or not frames[0] or frames[0][0] not in (0, 1):
            return InvalidMessage(Channel.IOPUB, "not an XPUB (un)subscription", tuple(frames))
        topic = frames[0][1:]
        try:
            topic.decode("utf-8")
        except UnicodeDecodeError:
            return InvalidMessage(Channel.IOPUB, "subscription topic is not UTF-8", tuple(frames))
        return Subscription(topic=topic, subscribed=frames[0][0] == 1)

    # -- the execute rules ----------------------------------------------------------------

    def begin_execute(self, request: Request) -> ExecutePlan:
        """Apply the execute rules to a request: silent, store_history, the counter.

        Raises:
            RemoteProtocolError: the content has the wrong types (the runtime turns this into
                an error reply rather than running anything).
        """
        c = request.message.content
        code = c.get("code")
        if not isinstance(code, str):
            raise RemoteProtocolError("execute_request.code must be a string")
        silent = bool(c.get("silent", False))
        store_history = False if silent else bool(c.get("store_history", True))
        user_expressions = c.get("user_expressions") or {}
        if not isinstance(user_expressions, dict) or not all(
            isinstance(v, str) for v in user_expressions.values()
        ):
            raise RemoteProtocolError("execute_request.user_expressions must map names to code")
        if store_history:
            self.execution_count += 1
        return ExecutePlan(
            code=code,
            silent=silent,
            store_history=store_history,
            stop_on_error=bool(c.get("stop_on_error", True)),
            allow_stdin=bool(c.get("allow_stdin", False)),
            user_expressions=user_expressions,
            execution_count=self.execution_count,
        )

    def execute_failed(self, plan: ExecutePlan) -> None:
        """Record a failed execution: abort the executes already received, if the rules say so.

        The driver should first read every message already waiting on its sockets, so that
        "already received" means "already sent by the client".
        """
        if plan.stop_on_error and not plan.silent:
            self._abort_through_seq = self._seq

    @staticmethod
    def expects_reply(request: Request) -> bool:
        """Whether ``request`` gets a reply (comm messages do not)."""
        return request.msg_type in CONTROL_REQUESTS

    def should_abort(self, request: Request) -> bool:
        """Whether this request is an execute that a failed execution aborted."""
        return request.msg_type == "execute_request" and request.seq <= self._abort_through_seq

    # -- building messages ----------------------------------------------------------------

    def _message(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None,
        identities: tuple[bytes, ...] = (),
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> tuple[bytes, ...]:
        self._counter += 1
        header = {
            "msg_id": self._last_msg_id(),
            "msg_type": msg_type,
            "session": self.session_id,
            "username": self.username,
            "date": self._clock(),
            "version": PROTOCOL_VERSION,
        }
        return tuple(
            self.session.pack_frames(
                header,
                content,
                parent.header if parent is not None else None,
                metadata,
                identities=identities,
                buffers=buffers,
            )
        )

    def _last_msg_id(self) -> str:
        """The id of the message built last (ids count up within this kernel's session)."""
        return f"{self.session_id}_{self._counter}"

    def reply(
        self, request: Request, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> Outgoing:
        """The reply to ``request``, routed back to the client that sent it."""
        reply_type = CONTROL_REQUESTS[request.msg_type]
        msg = request.message
        return Outgoing(
            request.channel,
            self._message(reply_type, content, msg, msg.identities, metadata),
        )

    def abort_reply(self, request: Request) -> Outgoing:
        """The reply to an execute request that ``stop_on_error`` aborted."""
        return self.reply(
            request,
            {"status": "aborted", "execution_count": self.execution_count},
            {"status": "aborted"},
        )

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None,
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Outgoing:
        """An IOPub message (status, outputs, comm traffic) with ``parent`` as its parent."""
        topic = f"kernel.{self.session_id}.{msg_type}".encode()
        return Outgoing(
            Channel.IOPUB, self._message(msg_type, content, parent, (topic,), metadata, buffers)
        )

    def status(self, state: str, parent: Message | None) -> Outgoing:
        """``status`` with ``execution_state`` busy, idle or starting."""
        return self.publish("status", {"execution_state": state}, parent)

    def welcome(self, subscription: Subscription) -> Outgoing:
        """``iopub_welcome`` for a new subscriber: no parent, topic frame = its subscription."""
        identities = (subscription.topic,) if subscription.topic else ()
        return Outgoing(
            Channel.IOPUB,
            self._message(
                "iopub_welcome", {"subscription": subscription.topic.decode()}, None, identities
            ),
        )

    def input_request(self, parent: Message, prompt: str, password: bool) -> Outgoing:
        """``input_request`` on stdin, routed with the *shell* request's identities; its
        ``msg_id`` is set, to match the ``input_reply``."""
        frames = self._message(
            "input_request",
            {"prompt": prompt, "password": password},
            parent,
            parent.identities,
        )
        return Outgoing(Channel.STDIN, frames, msg_id=self._last_msg_id())
