"""The client side of the Jupyter messaging protocol, sans-IO: requests out, events in.

Theory of operation
-------------------
:class:`ClientProtocol` is the mirror image of :class:`~kernelsdk.protocol.KernelProtocol`,
as h11's ``Connection(our_role=CLIENT)`` mirrors its server role. It builds every message a
client sends (:meth:`~ClientProtocol.request`, :meth:`~ClientProtocol.input_reply`,
:meth:`~ClientProtocol.subscribe`) as :class:`~kernelsdk.protocol.Outgoing` frames for the
driver to write, and turns the frames a driver read from a socket into one event
(:meth:`~ClientProtocol.receive`), which never raises:

===========================================  =============================================
event                                        when
===========================================  =============================================
:class:`Reply`                               a verified ``*_reply`` on shell or control
:class:`Published`                           a verified IOPub message (status, outputs,
                                             welcome...)
:class:`InputRequest`                        a verified ``input_request`` on stdin
:class:`~kernelsdk.protocol.InvalidMessage`  anything else: bad framing, signature, replay,
                                             packing, types; a reply of the wrong type for
                                             its request; a message the kernel must not
                                             send on that channel
===========================================  =============================================

Every event names the request it belongs to (its parent), if that request is one this
client sent and is still waiting on: the tracker remembers each request until both its reply
(if its type gets one) and its ``idle`` status have arrived, and marks the event that
completed it ``finished``. The tracker keeps no messages, only those few facts, so a driver
that streams thousands of requests stays flat; it forgets the oldest requests beyond
:data:`MAX_PENDING`.

The channel rules come from the kernel's own tables in :mod:`kernelsdk._protocol`: the
requests each channel carries and the reply each gets, plus the requests the spec defines
that kernelsdk's kernel does not answer (a client may still send them to other kernels).
Sending anything else raises :class:`~kernelsdk.LocalProtocolError`;
:meth:`~ClientProtocol.unchecked_message` exists for tests and conformance suites that send
what a well-behaved client never would.

It performs no I/O, reads no clock (the driver passes ``clock``) and draws no random numbers
(the driver passes ``session_id``; message ids count up within it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, final

import attrs

from ._events import Channel, InvalidMessage, Outgoing
from ._exceptions import LocalProtocolError, RemoteProtocolError
from ._message import Header, Message
from ._protocol import COMM_MESSAGES, CONTROL_REQUESTS, SHELL_REQUESTS
from ._session import Session
from ._version import PROTOCOL_VERSION

#: What a client may send on each channel, and the reply each request gets (None: comm
#: messages, answered by nothing but busy/idle).
CLIENT_REQUESTS: Final[Mapping[Channel, Mapping[str, str | None]]] = {
    Channel.SHELL: {**SHELL_REQUESTS, **dict.fromkeys(COMM_MESSAGES)},
    Channel.CONTROL: {
        **CONTROL_REQUESTS,
        **dict.fromkeys(COMM_MESSAGES),
    },
}
#: Reply types a kernel may send, whatever request they answer.
_REPLY_TYPES: Final = frozenset(
    reply for table in CLIENT_REQUESTS.values() for reply in table.values() if reply
)
#: How many unfinished requests the tracker remembers (the oldest are forgotten first).
MAX_PENDING: Final = 2**16


@final
@attrs.frozen
class SentRequest:
    """A request this client sent: what the tracker matches replies and IOPub against."""

    msg_id: str
    msg_type: str
    channel: Channel
    #: the reply type it gets; None for comm messages, which get only busy/idle
    reply_type: str | None


@final
@attrs.define
class RequestProgress:
    """What has arrived so far for one :class:`SentRequest` (owned by the protocol)."""

    request: SentRequest
    reply: Message | None = None
    busy: bool = False
    idle: bool = False

    @property
    def finished(self) -> bool:
        """Its ``idle`` has arrived, and its reply too if its type gets one."""
        return self.idle and (self.reply is not None or self.request.reply_type is None)


@final
@attrs.frozen
class Reply:
    """A verified reply on shell or control.

    ``request`` is the pending request it answers (None: not one of ours, or forgotten);
    ``finished`` is true when it was the last message that request waited for.
    """

    channel: Channel
    message: Message
    request: SentRequest | None = None
    finished: bool = False

    @property
    def msg_type(self) -> str:
        return self.message.header.msg_type


@final
@attrs.frozen
class Published:
    """A verified IOPub message: ``status``, an output, ``execute_input``, comm traffic,
    ``iopub_welcome``...

    ``request`` is the pending request that is its parent (None for a welcome, another
    client's request, or a message without parent); ``finished`` as for :class:`Reply`.
    """

    message: Message
    request: SentRequest | None = None
    finished: bool = False

    @property
    def msg_type(self) -> str:
        return self.message.header.msg_type

    @property
    def execution_state(self) -> str | None:
        """``busy``, ``idle`` or ``starting`` for a ``status`` message, else None."""
        if self.message.header.msg_type != "status":
            return None
        state = self.message.content.get("execution_state")
        return state if isinstance(state, str) else None


@final
@attrs.frozen
class InputRequest:
    """A verified ``input_request`` on stdin; ``request`` is the pending execute that asked
    (None if it is not one of ours). Answer it with :meth:`ClientProtocol.input_reply`."""

    message: Message
    request: SentRequest | None = None

    @property
    def prompt(self) -> str:
        return str(self.message.content.get("prompt", ""))

    @property
    def password(self) -> bool:
        return bool(self.message.content.get("password", False))


ClientEvent = Reply | Published | InputRequest | InvalidMessage


class ClientProtocol:
    """The protocol state of one client session with one kernel.

    Args:
        session: signs and verifies frames (the connection file's key, scheme and packer).
        session_id: this client's session id; message ids are ``{session_id}_{n}``.
        clock: returns the current time as an ISO 8601 string with a timezone.
        username: the header's ``username``.
        identities: frames to put before ``<IDS|MSG>`` in every message, for drivers that
            stand in for a ROUTER peer (in memory); a DEALER socket adds its own, so leave
            it empty there.
    """

    def __init__(
        self,
        session: Session,
        *,
        session_id: str,
        clock: Callable[[], str],
        username: str = "client",
        identities: Sequence[bytes] = (),
    ) -> None:
        self.session = session
        self.session_id = session_id
        self.username = username
        self.identities = tuple(identities)
        self._clock = clock
        self._counter = 0
        # Oldest first. An OrderedDict: a dict whose first item is deleted again and again
        # scans ever more dead slots to find the next first (50 us a request at 2**16).
        self._pending: OrderedDict[str, RequestProgress] = OrderedDict()

    # -- building messages ----------------------------------------------------------------

    def header(self, msg_type: str, *, subshell_id: str | None = None) -> Header:
        """A new header: the next message id of this session, the time, the version."""
        return Header(**self._header_fields(msg_type, subshell_id))

    def _header_fields(self, msg_type: str, subshell_id: str | None) -> dict[str, Any]:
        # A plain dict, packed as it is: requests skip building a Header (a benchmark
        # client sends tens of thousands).
        self._counter += 1
        fields = {
            "msg_id": f"{self.session_id}_{self._counter}",
            "msg_type": msg_type,
            "session": self.session_id,
            "username": self.username,
            "date": self._clock(),
            "version": PROTOCOL_VERSION,
        }
        if subshell_id is not None:
            fields["subshell_id"] = subshell_id
        return fields

    def request(
        self,
        channel: Channel,
        msg_type: str,
        content: dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
        subshell_id: str | None = None,
        track: bool = True,
    ) -> Outgoing:
        """A signed request on ``channel``, remembered until its reply and ``idle`` arrive.

        Args:
            subshell_id: the subshell to run it in (kernel subshells, JEP 91).
            track: False for a driver that matches replies itself and never passes them to
                :meth:`receive` (a benchmark client): nothing is remembered.

        Returns:
            The frames to send; ``msg_id`` is the request's, to match what comes back.

        Raises:
            LocalProtocolError: ``channel`` does not carry ``msg_type`` (an ``input_reply``
                is built by :meth:`input_reply`; nothing is sent on IOPub).
        """
        table = CLIENT_REQUESTS.get(channel)
        if table is None or msg_type not in table:
            raise LocalProtocolError(_not_a_client_request(channel, msg_type))
        header = self._header_fields(msg_type, subshell_id)
        msg_id: str = header["msg_id"]
        frames = self.session.pack_frames(
            header, content or {}, None, metadata, identities=self.identities, buffers=buffers
        )
        if track:
            self._track(SentRequest(msg_id, msg_type, channel, table[msg_type]))
        return Outgoing(channel, tuple(frames), msg_id=msg_id)

    def input_reply(self, value: str, *, parent: Header | None) -> Outgoing:
        """The ``input_reply`` carrying ``value`` on stdin.

        Args:
            parent: the header of the ``input_request`` it answers, as JupyterLab sends it;
                None sends no parent, as jupyter_client does (the kernel then takes it for
                its oldest pending input request).
        """
        return self.unchecked_message(
            Channel.STDIN, self.header("input_reply"), {"value": value}, parent=parent
        )

    @staticmethod
    def subscribe(topic: bytes = b"") -> Outgoing:
        """The frame an XSUB (or an in-memory driver) sends to subscribe to IOPub ``topic``
        (a SUB socket sends it itself on ``setsockopt(SUBSCRIBE)``)."""
        return Outgoing(Channel.IOPUB, (b"\x01" + topic,))

    def unchecked_message(
        self,
        channel: Channel,
        header: Header,
        content: dict[str, Any],
        *,
        parent: Header | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
        identities: Sequence[bytes] | None = None,
    ) -> Outgoing:
        """Sign and frame any message for ``channel``, with no rule checked and nothing
        tracked: for tests and conformance suites that send what a well-behaved client never
        would (unknown types, replies on shell, a request on stdin...).

        Args:
            header: usually from :meth:`header`, perhaps changed with :func:`attrs.evolve`.
            identities: routing frames; default: the protocol's ``identities``.
        """
        frames = self.session.pack_frames(
            header.to_dict(),
            content,
            parent,
            metadata,
            identities=self.identities if identities is None else identities,
            buffers=buffers,
        )
        return Outgoing(channel, tuple(frames), msg_id=header.msg_id)

    # -- the tracker ----------------------------------------------------------------------

    def _track(self, request: SentRequest) -> None:
        pending = self._pending
        pending[request.msg_id] = RequestProgress(request)
        if len(pending) > MAX_PENDING:
            pending.popitem(last=False)

    def progress(self, msg_id: str) -> RequestProgress | None:
        """What has arrived for the request ``msg_id``, while it is pending (None once it
        finished, was forgotten, or was never sent by this protocol)."""
        return self._pending.get(msg_id)

    @property
    def pending(self) -> list[SentRequest]:
        """The requests still waiting for their reply or ``idle``, oldest first."""
        return [p.request for p in self._pending.values()]

    def forget(self, msg_id: str) -> None:
        """Stop tracking ``msg_id`` (a request the driver gave up on)."""
        self._pending.pop(msg_id, None)

    def _finish_if_done(self, progress: RequestProgress) -> bool:
        if progress.finished:
            del self._pending[progress.request.msg_id]
            return True
        return False

    # -- receiving ------------------------------------------------------------------------

    def receive(self, channel: Channel, frames: Sequence[bytes]) -> ClientEvent:
        """Turn the frames of one multipart message from the kernel into one event.

        Never raises: whatever the kernel sent that a client must not act on is an
        :class:`~kernelsdk.protocol.InvalidMessage`, and the tracker is left unchanged by it.
        """
        try:
            msg = self.session.deserialize(frames)
        except RemoteProtocolError as exc:
            return InvalidMessage(channel, str(exc), tuple(frames))
        parent = msg.parent_header
        progress = self._pending.get(parent.msg_id) if parent is not None else None
        msg_type = msg.header.msg_type
        if channel is Channel.IOPUB:
            return self._published(msg, progress)
        if channel is Channel.STDIN:
            if msg_type != "input_request":
                return InvalidMessage(channel, _not_from_a_kernel(channel, msg_type), tuple(frames))
            return InputRequest(msg, progress.request if progress is not None else None)
        if msg_type not in _REPLY_TYPES:
            return InvalidMessage(channel, _not_from_a_kernel(channel, msg_type), tuple(frames))
        if progress is None:
            return Reply(channel, msg)
        expected = progress.request.reply_type
        if msg_type != expected or channel is not progress.request.channel:
            why = (
                f"{msg_type!r} on {channel} answers {progress.request.msg_type!r} sent on "
                f"{progress.request.channel} (expected {expected!r} there)"
            )
            return InvalidMessage(channel, why, tuple(frames))
        progress.reply = msg
        return Reply(channel, msg, progress.request, self._finish_if_done(progress))

    def _published(self, msg: Message, progress: RequestProgress | None) -> Published:
        if progress is None:
            return Published(msg)
        if msg.header.msg_type == "status":
            state = msg.content.get("execution_state")
            if state == "busy":
                progress.busy = True
            elif state == "idle":
                progress.idle = True
        return Published(msg, progress.request, self._finish_if_done(progress))


def _not_a_client_request(channel: Channel, msg_type: str) -> str:
    if channel is Channel.IOPUB:
        return f"{msg_type!r} on iopub: a client sends only (un)subscriptions there (subscribe())"
    if channel is Channel.STDIN:
        return f"{msg_type!r} on stdin: a client sends only input_reply there (input_reply())"
    return f"{msg_type!r} is not a request the {channel} channel carries"


def _not_from_a_kernel(channel: Channel, msg_type: str) -> str:
    if channel is Channel.STDIN:
        return f"{msg_type!r} on stdin: a kernel sends only input_request there"
    return f"{msg_type!r} on {channel}: a kernel sends only replies there"
