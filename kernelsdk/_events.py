"""Events: what the protocol core makes of incoming frames, and what it asks the driver to send.

Events are nouns, frozen and final: match on their class, never subclass them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, final

import attrs

from ._message import Message


class Channel(enum.StrEnum):
    """The four message channels (the heartbeat carries raw bytes, not messages)."""

    SHELL = "shell"
    CONTROL = "control"
    STDIN = "stdin"
    IOPUB = "iopub"


@final
@attrs.frozen
class Request:
    """A valid, verified request on shell or control, to be handled.

    ``seq`` numbers shell and control requests in arrival order; ``stop_on_error`` uses it to
    abort exactly the execute requests that had arrived when an execution failed.
    """

    channel: Channel
    message: Message
    seq: int

    @property
    def msg_type(self) -> str:
        return self.message.header.msg_type


@final
@attrs.frozen
class InputReply:
    """An ``input_reply`` on stdin, answering this kernel's ``input_request``."""

    message: Message


@final
@attrs.frozen
class Subscription:
    """A client (un)subscribed to IOPub (XPUB reports ``\\x01topic`` / ``\\x00topic``)."""

    topic: bytes
    subscribed: bool


@final
@attrs.frozen
class InvalidMessage:
    """Something a peer sent that must not be acted on: logged and dropped, never executed."""

    channel: Channel
    reason: str
    frames: tuple[bytes, ...] = attrs.field(repr=False, default=())


Event = Request | InputReply | Subscription | InvalidMessage


@final
@attrs.frozen
class Outgoing:
    """Frames the driver must send on ``channel``.

    ``msg_id`` is the message's id where the driver needs it (an ``input_request``: replies
    are matched to it), else empty.
    """

    channel: Channel
    frames: tuple[bytes, ...]
    msg_id: str = ""


@final
class Output(NamedTuple):
    """An IOPub message waiting in the runtime's output queue, built only when it is sent.

    Built late, so that adjacent ``stream`` outputs can still be merged into one message
    (:mod:`kernelsdk._stream_merge`). ``parent`` is the request it belongs to (None for
    ``starting`` and for comm traffic outside any request).

    A :class:`~typing.NamedTuple`, not an attrs class like the events: five are made for
    every execute request, and a frozen attrs instance takes half as long again to build
    (0.8 against 0.5 µs), which showed in the echo kernel's CPU per request. It is immutable
    all the same, and internal (the runtime's queue item, never given to kernel code).
    """

    msg_type: str
    content: dict[str, Any]
    parent: Message | None
    metadata: dict[str, Any] | None = None
    buffers: Sequence[bytes] = ()


#: Publishes one IOPub message for the request at hand: (msg_type, content, metadata,
#: buffers). What an :class:`~kernelsdk.ExecuteContext` and a comm manager are given to send
#: output with; the runtime supplies the parent.
Publisher = Callable[[str, dict[str, Any], dict[str, Any] | None, Sequence[bytes]], None]
