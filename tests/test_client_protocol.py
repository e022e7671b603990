"""ClientProtocol, the client role of the sans-IO core, driven against KernelProtocol.

Like h11's ``ConnectionPair``: a :class:`ProtocolPair` holds a kernel and a client protocol
and hands each one's frames to the other in memory, so every test is a real, signed exchange
with no socket in between.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import content_dicts

import kernelsdk._client_protocol as client_protocol_module
from kernelsdk import LocalProtocolError
from kernelsdk._client_protocol import (
    CLIENT_REQUESTS,
    ClientEvent,
    ClientProtocol,
    InputRequest,
    Published,
    Reply,
    SentRequest,
)
from kernelsdk._events import Event
from kernelsdk.protocol import (
    JSON,
    MSGPACK,
    PROTOCOL_VERSION,
    Channel,
    InputReply,
    InvalidMessage,
    KernelProtocol,
    Outgoing,
    Packer,
    Request,
    Session,
    Subscription,
)

KEY = b"client-protocol-key"
CLOCK = "2026-12-01T10:00:00.000001Z"
PEER = (b"peer-1",)


class ProtocolPair:
    """A kernel and a client protocol passing frames to each other in memory."""

    def __init__(
        self,
        *,
        packer: Packer = JSON,
        kernel_key: bytes = KEY,
        client_key: bytes = KEY,
    ) -> None:
        self.kernel = KernelProtocol(
            Session(kernel_key, packer=packer), session_id="kernel", clock=lambda: CLOCK
        )
        self.client = ClientProtocol(
            Session(client_key, packer=packer),
            session_id="client",
            clock=lambda: CLOCK,
            username="alice",
            identities=PEER,
        )

    def to_kernel(self, out: Outgoing) -> Event:
        return self.kernel.receive(out.channel, out.frames)

    def to_client(self, out: Outgoing) -> ClientEvent:
        return self.client.receive(out.channel, out.frames)

    def busy(self, request: Request) -> Outgoing:
        """The kernel begins ``request`` (its replies are allowed from then on)."""
        return self.kernel.publish_output(self.kernel.begin(request))

    def idle(self, request: Request) -> Outgoing:
        return self.kernel.publish_output(self.kernel.end(request))

    def reply(self, request: Request, content: dict[str, Any] | None = None) -> Outgoing:
        """The kernel's reply to ``request``: its busy, then the reply."""
        self.busy(request)
        return self.kernel.reply(request, content or {"status": "ok"})

    def send(
        self, channel: Channel, msg_type: str, content: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[Outgoing, Request]:
        """A request from the client, as the kernel received it."""
        out = self.client.request(channel, msg_type, content, **kw)
        event = self.to_kernel(out)
        assert isinstance(event, Request), event
        return out, event


@pytest.fixture
def pair() -> ProtocolPair:
    return ProtocolPair()


# -- requests ------------------------------------------------------------------------------------

KERNEL_ANSWERED = [
    (channel, msg_type) for channel, table in CLIENT_REQUESTS.items() for msg_type in sorted(table)
]


@pytest.mark.parametrize(("channel", "msg_type"), KERNEL_ANSWERED, ids=str)
def test_every_request_reaches_the_kernel_as_sent(
    pair: ProtocolPair, channel: Channel, msg_type: str
) -> None:
    out, req = pair.send(
        channel, msg_type, {"code": "1"}, metadata={"m": [1]}, buffers=[b"\x00raw"]
    )
    assert out.channel is channel
    assert out.frames[: len(PEER)] == PEER
    msg = req.message
    assert (req.channel, msg.msg_id, msg.msg_type) == (channel, out.msg_id, msg_type)
    header = msg.header
    assert (header.session, header.username, header.date) == ("client", "alice", CLOCK)
    assert header.version == PROTOCOL_VERSION
    assert header.subshell_id is None
    assert msg.parent_header is None
    assert (msg.content, msg.metadata, msg.buffers) == ({"code": "1"}, {"m": [1]}, (b"\x00raw",))
    assert msg.identities == PEER


def test_debug_request_is_a_control_request(pair: ProtocolPair) -> None:
    """debug_request is tracked until its debug_reply; a kernel accepts it on control only."""
    out = pair.client.request(Channel.CONTROL, "debug_request")
    assert pair.client.progress(out.msg_id) is not None
    assert isinstance(pair.to_kernel(out), Request)
    assert "debug_request" not in CLIENT_REQUESTS[Channel.SHELL]


def test_subshell_id_goes_into_the_header(pair: ProtocolPair) -> None:
    _, req = pair.send(Channel.SHELL, "execute_request", {"code": ""}, subshell_id="sub-1")
    assert req.message.header.subshell_id == "sub-1"
    # ...and comes back in the reply's parent header.
    reply = pair.to_client(pair.reply(req))
    assert isinstance(reply, Reply)
    assert reply.message.parent_header is not None
    assert reply.message.parent_header.subshell_id == "sub-1"


def test_subshell_requests_round_trip(pair: ProtocolPair) -> None:
    """create/list/delete_subshell_request: control only, tracked until reply and idle."""
    pair.kernel.subshells = True
    replies = []
    for msg_type, content in (
        ("create_subshell_request", {}),
        ("list_subshell_request", {}),
        ("delete_subshell_request", {"subshell_id": "s1"}),
    ):
        _, req = pair.send(Channel.CONTROL, msg_type, content)
        pair.busy(req)
        if msg_type == "create_subshell_request":
            out = pair.kernel.create_subshell(req, "s1")
        elif msg_type == "list_subshell_request":
            out = pair.kernel.list_subshells(req)
        else:
            out, _deleted = pair.kernel.delete_subshell(req)
        reply = pair.to_client(out)
        assert isinstance(reply, Reply)
        assert reply.request is not None
        assert reply.msg_type == reply.request.reply_type == msg_type.replace("request", "reply")
        assert not reply.finished  # its idle is still to come
        idle = pair.to_client(pair.idle(req))
        assert idle.finished  # type: ignore[union-attr]
        replies.append(reply.message.content)
    assert replies == [
        {"status": "ok", "subshell_id": "s1"},
        {"status": "ok", "subshell_id": ["s1"]},
        {"status": "ok"},
    ]
    for msg_type in ("create_subshell_request", "list_subshell_request"):
        with pytest.raises(LocalProtocolError):
            pair.client.request(Channel.SHELL, msg_type)


@pytest.mark.parametrize(
    ("channel", "msg_type"),
    [
        (Channel.SHELL, "interrupt_request"),  # control only
        (Channel.SHELL, "create_subshell_request"),  # control only
        (Channel.SHELL, "debug_request"),
        (Channel.SHELL, "input_reply"),
        (Channel.CONTROL, "input_reply"),
        (Channel.STDIN, "input_reply"),  # built by input_reply()
        (Channel.STDIN, "execute_request"),
        (Channel.IOPUB, "execute_request"),
        (Channel.SHELL, "execute_reply"),
        (Channel.SHELL, "status"),
        (Channel.SHELL, "frobnicate_request"),
    ],
    ids=str,
)
def test_illegal_requests_raise_locally(
    pair: ProtocolPair, channel: Channel, msg_type: str
) -> None:
    with pytest.raises(LocalProtocolError, match=msg_type):
        pair.client.request(channel, msg_type)
    assert pair.client.pending == []


def test_unchecked_messages_are_signed_but_not_tracked(pair: ProtocolPair) -> None:
    """The escape hatch for tests and conformance suites: any type, any channel."""
    header = attrs.evolve(pair.client.header("frobnicate_request"), extra={"x-test": 1})
    out = pair.client.unchecked_message(Channel.SHELL, header, {}, identities=(b"a", b"b"))
    assert out.msg_id == header.msg_id
    assert out.frames[:2] == (b"a", b"b")
    assert pair.client.pending == []
    event = pair.to_kernel(out)
    assert isinstance(event, InvalidMessage)
    assert "unknown" in event.reason


def test_message_ids_count_up_within_the_session(pair: ProtocolPair) -> None:
    ids = [pair.client.request(Channel.SHELL, "kernel_info_request").msg_id for _ in range(3)]
    ids.append(pair.client.input_reply("x", parent=None).msg_id)
    ids.append(pair.client.header("comm_msg").msg_id)
    assert ids == [f"client_{n}" for n in range(1, 6)]


# -- the tracker ---------------------------------------------------------------------------------


def test_execute_lifecycle(pair: ProtocolPair) -> None:
    out, req = pair.send(Channel.SHELL, "execute_request", {"code": "x"})
    progress = pair.client.progress(out.msg_id)
    assert progress is not None and not progress.finished
    assert pair.client.pending == [
        SentRequest(out.msg_id, "execute_request", Channel.SHELL, "execute_reply")
    ]
    parent = req.message

    busy = pair.to_client(pair.busy(req))
    assert isinstance(busy, Published)
    assert (busy.execution_state, busy.finished) == ("busy", False)
    assert busy.request is not None and busy.request.msg_id == out.msg_id
    assert progress.busy and not progress.idle

    for msg_type, content in [
        ("execute_input", {"code": "x", "execution_count": 1}),
        ("stream", {"name": "stdout", "text": "hi"}),
    ]:
        event = pair.to_client(pair.kernel.publish(msg_type, content, parent))
        assert isinstance(event, Published)
        assert (event.msg_type, event.execution_state, event.finished) == (msg_type, None, False)
        assert event.message.content == content
        assert event.request == busy.request

    reply = pair.to_client(pair.kernel.reply(req, {"status": "ok", "execution_count": 1}))
    assert isinstance(reply, Reply)
    assert (reply.channel, reply.msg_type, reply.finished) == (
        Channel.SHELL,
        "execute_reply",
        False,
    )
    assert reply.message.identities == PEER  # routed back with the request's identities
    assert progress.reply == reply.message

    idle = pair.to_client(pair.idle(req))
    assert isinstance(idle, Published)
    assert idle.finished
    assert pair.client.progress(out.msg_id) is None
    assert pair.client.pending == []


@settings(max_examples=50)
@given(outputs=st.integers(0, 3), reply_at=st.data())
def test_exactly_the_last_awaited_message_finishes_the_request(
    outputs: int, reply_at: st.DataObject
) -> None:
    """The reply may come before busy, between outputs or after idle (two sockets, no
    order between them): whichever of reply and idle comes last finishes the request."""
    pair = ProtocolPair()
    out, req = pair.send(Channel.SHELL, "execute_request", {"code": "x"})
    kernel = pair.kernel
    busy = pair.busy(req)
    outputs_sent = [
        kernel.publish("stream", {"name": "stdout", "text": str(i)}, req.message)
        for i in range(outputs)
    ]
    reply = kernel.reply(req, {"status": "ok"})
    iopub = [busy, *outputs_sent, pair.idle(req)]
    position = reply_at.draw(st.integers(0, len(iopub)))
    sequence = [*iopub[:position], reply, *iopub[position:]]
    events = [pair.to_client(o) for o in sequence]
    assert all(isinstance(e, Reply | Published) for e in events)
    finished = [e for e in events if isinstance(e, Reply | Published) and e.finished]
    assert finished == [events[-1]]
    assert pair.client.progress(out.msg_id) is None


def test_comm_messages_finish_on_idle(pair: ProtocolPair) -> None:
    _, req = pair.send(Channel.SHELL, "comm_msg", {"comm_id": "c", "data": {}})
    assert pair.client.pending[0].reply_type is None
    busy = pair.to_client(pair.busy(req))
    idle = pair.to_client(pair.idle(req))
    assert isinstance(busy, Published) and not busy.finished
    assert isinstance(idle, Published) and idle.finished
    assert pair.client.pending == []


def test_messages_of_other_requests_are_not_ours(pair: ProtocolPair) -> None:
    other = ProtocolPair()
    _, foreign = other.send(Channel.SHELL, "kernel_info_request")
    reply = pair.to_client(pair.reply(foreign))
    assert isinstance(reply, Reply)
    assert (reply.request, reply.finished) == (None, False)
    status = pair.to_client(pair.kernel.status("idle", foreign.message))
    assert isinstance(status, Published)
    assert status.request is None
    orphan = pair.to_client(pair.kernel.publish("stream", {"name": "stdout", "text": ""}, None))
    assert isinstance(orphan, Published)
    assert orphan.request is None and orphan.message.parent_header is None


def test_untracked_requests_are_checked_but_not_remembered(pair: ProtocolPair) -> None:
    """For a driver that matches replies itself (the benchmark client)."""
    out, req = pair.send(Channel.CONTROL, "kernel_info_request", track=False)
    assert pair.client.pending == []
    reply = pair.to_client(pair.reply(req))
    assert isinstance(reply, Reply) and reply.request is None
    assert reply.message.parent_header is not None
    assert reply.message.parent_header.msg_id == out.msg_id
    with pytest.raises(LocalProtocolError):
        pair.client.request(Channel.SHELL, "interrupt_request", track=False)


def test_forgotten_and_overflowing_requests(
    pair: ProtocolPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_protocol_module, "MAX_PENDING", 3)
    ids = [pair.client.request(Channel.SHELL, "kernel_info_request").msg_id for _ in range(5)]
    assert [r.msg_id for r in pair.client.pending] == ids[2:]  # the oldest forgotten first
    pair.client.forget(ids[3])
    pair.client.forget("never-sent")
    assert [r.msg_id for r in pair.client.pending] == [ids[2], ids[4]]


# -- what the kernel must not send ---------------------------------------------------------------


def _retyped(req: Request, msg_type: str) -> Request:
    """``req`` as if it had been a ``msg_type``: the kernel then replies with that type."""
    header = attrs.evolve(req.message.header, msg_type=msg_type)
    return attrs.evolve(req, message=attrs.evolve(req.message, header=header))


def test_reply_of_the_wrong_type_is_invalid(pair: ProtocolPair) -> None:
    out, req = pair.send(Channel.SHELL, "kernel_info_request")
    event = pair.to_client(pair.reply(_retyped(req, "execute_request")))
    assert isinstance(event, InvalidMessage)
    assert "execute_reply" in event.reason and "kernel_info_request" in event.reason
    progress = pair.client.progress(out.msg_id)
    assert progress is not None and progress.reply is None  # invalid events change nothing


def test_reply_to_a_comm_message_is_invalid(pair: ProtocolPair) -> None:
    _, req = pair.send(Channel.SHELL, "comm_close", {"comm_id": "c", "data": {}})
    out = pair.reply(_retyped(req, "kernel_info_request"))
    event = pair.to_client(out)
    assert isinstance(event, InvalidMessage)
    assert "comm_close" in event.reason


def test_reply_on_the_wrong_channel_is_invalid(pair: ProtocolPair) -> None:
    _, req = pair.send(Channel.SHELL, "kernel_info_request")
    moved = attrs.evolve(req, channel=Channel.CONTROL)
    event = pair.to_client(pair.reply(moved))
    assert isinstance(event, InvalidMessage)
    assert event.channel is Channel.CONTROL


@pytest.mark.parametrize(
    ("channel", "msg_type"),
    [
        (Channel.SHELL, "status"),
        (Channel.SHELL, "stream"),
        (Channel.CONTROL, "execute_request"),
        (Channel.STDIN, "execute_reply"),
        (Channel.STDIN, "input_reply"),
    ],
    ids=str,
)
def test_kernel_messages_out_of_place_are_invalid(
    pair: ProtocolPair, channel: Channel, msg_type: str
) -> None:
    _, req = pair.send(Channel.SHELL, "execute_request", {"code": ""})
    out = pair.kernel.publish(msg_type, {}, req.message)
    event = pair.client.receive(channel, out.frames)
    assert isinstance(event, InvalidMessage)
    assert msg_type in event.reason


def test_bad_signatures_and_replays_are_invalid() -> None:
    pair = ProtocolPair()
    impostor = ProtocolPair(kernel_key=b"not-the-key")
    out, req = pair.send(Channel.SHELL, "kernel_info_request")
    forged = pair.client.receive(Channel.SHELL, impostor.reply(req).frames)
    assert isinstance(forged, InvalidMessage)
    assert "invalid signature" in forged.reason
    unsigned = ProtocolPair(kernel_key=b"")
    event = pair.client.receive(Channel.IOPUB, unsigned.kernel.status("idle", req.message).frames)
    assert isinstance(event, InvalidMessage)
    assert "unsigned" in event.reason
    progress = pair.client.progress(out.msg_id)
    assert progress is not None and progress.reply is None and not progress.idle

    reply = pair.reply(req)
    assert isinstance(pair.to_client(reply), Reply)
    replayed = pair.to_client(reply)
    assert isinstance(replayed, InvalidMessage)
    assert "replayed" in replayed.reason


@settings(max_examples=200)
@given(
    channel=st.sampled_from(list(Channel)),
    frames=st.lists(st.binary(max_size=40), max_size=8)
    | st.lists(st.binary(max_size=40), max_size=6).map(lambda f: [b"<IDS|MSG>", *f]),
)
def test_garbage_never_raises(channel: Channel, frames: list[bytes]) -> None:
    client = ProtocolPair().client
    event = client.receive(channel, frames)
    assert isinstance(event, InvalidMessage)
    assert event.channel is channel and event.reason


# -- stdin and IOPub ------------------------------------------------------------------------------


def test_input_round_trip(pair: ProtocolPair) -> None:
    out, req = pair.send(Channel.SHELL, "execute_request", {"code": "x", "allow_stdin": True})
    asked = pair.to_client(pair.kernel.input_request(req.message, "Name: ", True))
    assert isinstance(asked, InputRequest)
    assert (asked.prompt, asked.password) == ("Name: ", True)
    assert asked.request is not None and asked.request.msg_id == out.msg_id

    answer = pair.client.input_reply("ada", parent=asked.message.header)
    assert answer.channel is Channel.STDIN
    event = pair.to_kernel(answer)
    assert isinstance(event, InputReply)
    assert event.message.content == {"value": "ada"}
    assert event.message.parent_header == asked.message.header

    bare = pair.to_kernel(pair.client.input_reply("", parent=None))  # as jupyter_client does
    assert isinstance(bare, InputReply) and bare.message.parent_header is None


@pytest.mark.parametrize("topic", [b"", b"kernel."])
def test_subscription_and_welcome(pair: ProtocolPair, topic: bytes) -> None:
    subscription = pair.to_kernel(pair.client.subscribe(topic))
    assert subscription == Subscription(topic, True)
    welcome = pair.to_client(pair.kernel.welcome(subscription))
    assert isinstance(welcome, Published)
    assert welcome.msg_type == "iopub_welcome"
    assert welcome.message.content == {"subscription": topic.decode()}
    assert welcome.request is None


# -- both packers, any content --------------------------------------------------------------------


@settings(max_examples=60)
@given(
    packer=st.sampled_from([JSON, MSGPACK]),
    content=content_dicts,
    metadata=content_dicts,
    buffers=st.lists(st.binary(max_size=16), max_size=3),
)
def test_any_content_round_trips(
    packer: Packer, content: dict[str, Any], metadata: dict[str, Any], buffers: list[bytes]
) -> None:
    pair = ProtocolPair(packer=packer)
    out, req = pair.send(Channel.SHELL, "comm_msg", content, metadata=metadata, buffers=buffers)
    assert (req.message.content, req.message.metadata) == (content, metadata)
    assert req.message.buffers == tuple(buffers)
    echoed = pair.to_client(
        pair.kernel.publish("comm_msg", content, req.message, metadata=metadata, buffers=buffers)
    )
    assert isinstance(echoed, Published)
    assert (echoed.message.content, echoed.message.metadata) == (content, metadata)
    assert echoed.message.buffers == tuple(buffers)
    assert echoed.request is not None and echoed.request.msg_id == out.msg_id


def test_msgpack_exchange() -> None:
    pair = ProtocolPair(packer=MSGPACK)
    out, req = pair.send(Channel.CONTROL, "kernel_info_request")
    assert out.frames[len(PEER) + 2][:1] != b"{"  # packed by msgpack, not JSON
    reply = pair.to_client(pair.reply(req, {"status": "ok", "protocol_version": PROTOCOL_VERSION}))
    idle = pair.to_client(pair.idle(req))
    assert isinstance(reply, Reply) and reply.channel is Channel.CONTROL
    assert isinstance(idle, Published) and idle.finished
    json_client = ProtocolPair().client
    mismatch = json_client.receive(Channel.IOPUB, pair.kernel.status("idle", None).frames)
    assert isinstance(mismatch, InvalidMessage)


# -- sans-IO ---------------------------------------------------------------------------------


def test_the_client_role_imports_no_io() -> None:
    source = Path(client_protocol_module.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.add(node.module or "")
    assert imported <= {"__future__", "collections", "collections.abc", "typing", "attrs"}, imported
