"""The protocol core, sans-IO: the machinery under :class:`~kernelsdk.BaseKernel`.

Like ``trio.lowlevel``, this namespace keeps the protocol-level names away from the everyday
ones in :mod:`kernelsdk`. A kernel author never needs it; a driver for another I/O library, a
client, a proxy or a test of the wire does. Everything here is pure Python over ``attrs`` (and
``msgpack`` for that packer): importing it loads neither Trio nor pyzmq
(``tests/test_exports.py`` proves it).

* the kernel's side: :class:`KernelProtocol` turns frames into one :data:`Event` (a
  :class:`Request`, :class:`InputReply`, :class:`Subscription` or :class:`InvalidMessage`)
  and the driver's answers into :class:`Outgoing` frames;
* the client's side: :class:`ClientProtocol` builds requests and turns what a kernel sends
  into one :data:`ClientEvent` (a :class:`Reply`, :class:`Published`, :class:`InputRequest` or
  :class:`InvalidMessage`);
* the wire: :class:`Session` (framing, signing, replay checks), :class:`Message` and
  :class:`Header`, the :class:`Packer` s :data:`JSON` and :data:`MSGPACK`, and the start-up
  handshake's :class:`Registration`;
* the error shapes every kernel shares: :func:`error_content` and :func:`interrupt_error`.

The objects are defined in private modules; this module only names them.
"""

from ._client_protocol import ClientEvent as ClientEvent
from ._client_protocol import ClientProtocol as ClientProtocol
from ._client_protocol import InputRequest as InputRequest
from ._client_protocol import Published as Published
from ._client_protocol import Reply as Reply
from ._client_protocol import RequestProgress as RequestProgress
from ._client_protocol import SentRequest as SentRequest
from ._events import Channel as Channel
from ._events import Event as Event
from ._events import InputReply as InputReply
from ._events import InvalidMessage as InvalidMessage
from ._events import Outgoing as Outgoing
from ._events import Request as Request
from ._events import Subscription as Subscription
from ._message import Header as Header
from ._message import Message as Message
from ._packers import JSON as JSON
from ._packers import MSGPACK as MSGPACK
from ._packers import Packer as Packer
from ._packers import get_packer as get_packer
from ._protocol import ExecutePlan as ExecutePlan
from ._protocol import KernelProtocol as KernelProtocol
from ._protocol import error_content as error_content
from ._protocol import interrupt_error as interrupt_error
from ._registration import Registration as Registration
from ._session import DELIMITER as DELIMITER
from ._session import Session as Session
from ._version import PROTOCOL_VERSION as PROTOCOL_VERSION

__all__ = [
    "DELIMITER",
    "JSON",
    "MSGPACK",
    "PROTOCOL_VERSION",
    "Channel",
    "ClientEvent",
    "ClientProtocol",
    "Event",
    "ExecutePlan",
    "Header",
    "InputReply",
    "InputRequest",
    "InvalidMessage",
    "KernelProtocol",
    "Message",
    "Outgoing",
    "Packer",
    "Published",
    "Registration",
    "Reply",
    "Request",
    "RequestProgress",
    "SentRequest",
    "Session",
    "Subscription",
    "error_content",
    "get_packer",
    "interrupt_error",
]
