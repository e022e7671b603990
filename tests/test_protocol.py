"""KernelProtocol, the sans-IO core: channel rules, execution counts, stop_on_error, and the
messages it builds (replies, IOPub, welcome, input requests)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from kernelsdk import LocalProtocolError, RemoteProtocolError
from kernelsdk._protocol import CONTROL_REQUESTS, SHELL_REQUESTS, SUBSHELL_REQUESTS
from kernelsdk.protocol import (
    DELIMITER,
    PROTOCOL_VERSION,
    Channel,
    ClientProtocol,
    ExecutePlan,
    Header,
    InputReply,
    InvalidMessage,
    KernelProtocol,
    Message,
    Outgoing,
    Request,
    Session,
    Subscription,
)

KEY = b"protocol-test-key"
CLOCK_VALUE = "2024-03-04T05:06:07.000008Z"
IDENT = (b"client-ident",)


class Client:
    """The client role of the core, sending any type (these tests offer every type to every
    channel, to see the kernel refuse most) and decoding what the kernel sends."""

    def __init__(self) -> None:
        self.protocol = ClientProtocol(
            Session(KEY),
            session_id="client-session",
            clock=lambda: "2024-01-01T00:00:00Z",
            username="alice",
        )

    def frames(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        identities: tuple[bytes, ...] = IDENT,
        subshell_id: str | None = None,
    ) -> list[bytes]:
        header = attrs.evolve(
            self.protocol.header(msg_type, subshell_id=subshell_id), extra={"x-client": "kept"}
        )
        # The frames are the same whatever channel they are offered to.
        out = self.protocol.unchecked_message(
            Channel.SHELL, header, content or {}, identities=identities
        )
        return list(out.frames)

    def decode(self, out: Outgoing) -> Message:
        event = self.protocol.receive(out.channel, out.frames)
        assert not isinstance(event, InvalidMessage), event
        return event.message


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def kp() -> KernelProtocol:
    return KernelProtocol(Session(KEY), session_id="kernel-sess", clock=lambda: CLOCK_VALUE)


def request(
    kp: KernelProtocol,
    client: Client,
    msg_type: str = "execute_request",
    content: dict[str, Any] | None = None,
    channel: Channel = Channel.SHELL,
    subshell_id: str | None = None,
) -> Request:
    event = kp.receive(channel, client.frames(msg_type, content, subshell_id=subshell_id))
    assert isinstance(event, Request), event
    return event


def execute(
    kp: KernelProtocol,
    client: Client,
    code: str = "x",
    subshell_id: str | None = None,
    **content: Any,
) -> Request:
    return request(
        kp, client, "execute_request", {"code": code, **content}, subshell_id=subshell_id
    )


# -- which channel accepts what -----------------------------------------------------------------

SHELL_TYPES = sorted(SHELL_REQUESTS)
COMM_TYPES = ["comm_open", "comm_msg", "comm_close"]

ACCEPTANCE = [
    *[(Channel.SHELL, t, Request) for t in [*SHELL_TYPES, *COMM_TYPES]],
    *[
        (Channel.CONTROL, t, Request)
        for t in [*SHELL_TYPES, *COMM_TYPES, "interrupt_request", *sorted(SUBSHELL_REQUESTS)]
    ],
    (Channel.SHELL, "interrupt_request", InvalidMessage),
    (Channel.STDIN, "input_reply", InputReply),
    (Channel.SHELL, "input_reply", InvalidMessage),
    (Channel.CONTROL, "input_reply", InvalidMessage),
    (Channel.STDIN, "execute_request", InvalidMessage),
    (Channel.STDIN, "kernel_info_request", InvalidMessage),
    (Channel.STDIN, "comm_msg", InvalidMessage),
    (Channel.SHELL, "execute_reply", InvalidMessage),
    (Channel.SHELL, "input_request", InvalidMessage),
    (Channel.SHELL, "status", InvalidMessage),
]


@pytest.mark.parametrize(("channel", "msg_type", "kind"), ACCEPTANCE, ids=str)
def test_channel_acceptance(
    kp: KernelProtocol, client: Client, channel: Channel, msg_type: str, kind: type
) -> None:
    frames = client.frames(msg_type, {"code": ""})
    event = kp.receive(channel, frames)
    assert type(event) is kind
    if isinstance(event, Request):
        assert event.channel is channel
        assert event.msg_type == msg_type
        assert event.message.identities == IDENT
    elif isinstance(event, InputReply):
        assert event.message.msg_type == "input_reply"
    else:
        assert isinstance(event, InvalidMessage)
        assert event.channel is channel
        assert msg_type in event.reason
        assert event.frames == tuple(frames)


def test_every_request_has_a_reply_type() -> None:
    for req, rep in CONTROL_REQUESTS.items():
        assert req.endswith("_request")
        assert rep == req[: -len("_request")] + "_reply"
    assert set(SHELL_REQUESTS) < set(CONTROL_REQUESTS)


@pytest.mark.parametrize("channel", [Channel.SHELL, Channel.CONTROL, Channel.STDIN])
def test_unknown_msg_type(kp: KernelProtocol, client: Client, channel: Channel) -> None:
    event = kp.receive(channel, client.frames("frobnicate_request"))
    assert isinstance(event, InvalidMessage)
    assert "frobnicate_request" in event.reason
    assert "unknown" in event.reason


@pytest.mark.parametrize(
    "msg_type",
    [
        "interrupt_request",
        "create_subshell_request",
        "delete_subshell_request",
        "list_subshell_request",
        "debug_request",
    ],
)
def test_control_requests_are_refused_on_shell(
    kp: KernelProtocol, client: Client, msg_type: str
) -> None:
    event = kp.receive(Channel.SHELL, client.frames(msg_type))
    assert isinstance(event, InvalidMessage)
    assert event.reason == f"{msg_type!r} on shell: accepted on control only"
    assert isinstance(kp.receive(Channel.CONTROL, client.frames(msg_type)), Request)


def test_bad_frames_become_invalid_message(kp: KernelProtocol, client: Client) -> None:
    good = client.frames("kernel_info_request")
    bad_sig = Session(b"other-key").serialize(
        Message(Header("m", "kernel_info_request", "s"), identities=IDENT)
    )
    for frames in ([], [b"garbage"], good[:-1], bad_sig):
        event = kp.receive(Channel.SHELL, frames)
        assert isinstance(event, InvalidMessage)
        assert event.reason
    assert isinstance(kp.receive(Channel.SHELL, good), Request)
    replayed = kp.receive(Channel.SHELL, good)
    assert isinstance(replayed, InvalidMessage)
    assert "replay" in replayed.reason


def test_invalid_messages_do_not_consume_sequence_numbers(
    kp: KernelProtocol, client: Client
) -> None:
    first = execute(kp, client)
    kp.receive(Channel.SHELL, [b"garbage"])
    kp.receive(Channel.SHELL, client.frames("debug_request"))
    kp.receive(Channel.STDIN, client.frames("input_reply", {"value": "x"}))
    second = request(kp, client, "kernel_info_request", channel=Channel.CONTROL)
    assert second.seq == first.seq + 1


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([b"\x01"], Subscription(b"", True)),
        ([b"\x01kernel.abc"], Subscription(b"kernel.abc", True)),
        ([b"\x00"], Subscription(b"", False)),
        ([b"\x00stream"], Subscription(b"stream", False)),
    ],
)
def test_iopub_subscriptions(
    kp: KernelProtocol, frames: list[bytes], expected: Subscription
) -> None:
    assert kp.receive(Channel.IOPUB, frames) == expected


@pytest.mark.parametrize(
    "frames",
    [[], [b""], [b"\x02x"], [b"sub"], [b"\x01", b"\x01"], [b"\x01\xff\xfe"]],
    ids=repr,
)
def test_iopub_garbage(kp: KernelProtocol, frames: list[bytes]) -> None:
    event = kp.receive(Channel.IOPUB, frames)
    assert isinstance(event, InvalidMessage)
    assert event.channel is Channel.IOPUB


# -- execution counts ----------------------------------------------------------------------------


def test_execution_count_rules(kp: KernelProtocol, client: Client) -> None:
    assert kp.execution_count == 0
    plan = kp.begin_execute(execute(kp, client, "a"))
    assert isinstance(plan, ExecutePlan)
    assert (plan.execution_count, plan.store_history, plan.silent) == (1, True, False)
    assert plan.stop_on_error is True
    assert plan.allow_stdin is False
    assert plan.user_expressions == {}

    silent = kp.begin_execute(execute(kp, client, "b", silent=True))
    assert silent.silent
    assert not silent.store_history  # silent forces store_history off
    assert silent.execution_count == 1
    assert kp.execution_count == 1

    forced = kp.begin_execute(execute(kp, client, "c", silent=True, store_history=True))
    assert not forced.store_history
    assert kp.execution_count == 1

    unstored = kp.begin_execute(execute(kp, client, "d", store_history=False))
    assert not unstored.silent
    assert not unstored.store_history
    assert unstored.execution_count == 1
    assert kp.execution_count == 1

    plan = kp.begin_execute(
        execute(
            kp, client, "e", stop_on_error=False, allow_stdin=True, user_expressions={"v": "1+1"}
        )
    )
    assert plan.execution_count == 2
    assert plan.stop_on_error is False
    assert plan.allow_stdin is True
    assert plan.user_expressions == {"v": "1+1"}
    assert plan.code == "e"


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"code": None},
        {"code": 5},
        {"code": ["x"]},
        {"code": "x", "user_expressions": ["a"]},
        {"code": "x", "user_expressions": {"a": 1}},
    ],
    ids=repr,
)
def test_bad_execute_content(kp: KernelProtocol, client: Client, content: dict[str, Any]) -> None:
    req = request(kp, client, "execute_request", content)
    with pytest.raises(RemoteProtocolError):
        kp.begin_execute(req)
    assert kp.execution_count == 0  # a rejected request does not advance the count


# -- stop_on_error ---------------------------------------------------------------------------


def test_failure_aborts_only_executes_already_received(kp: KernelProtocol, client: Client) -> None:
    first, second, third = (execute(kp, client, c) for c in "abc")
    info = request(kp, client, "kernel_info_request")
    plan = kp.begin_execute(first)
    assert not any(kp.should_abort(r) for r in (second, third, info))
    kp.execute_failed(plan)
    assert kp.should_abort(second)
    assert kp.should_abort(third)
    assert not kp.should_abort(info)  # only execute requests are aborted
    fourth = execute(kp, client, "d")
    assert not kp.should_abort(fourth)
    control_exec = request(kp, client, "execute_request", {"code": "e"}, Channel.CONTROL)
    assert not kp.should_abort(control_exec)


def test_aborted_requests_stay_aborted_and_new_failures_extend(
    kp: KernelProtocol, client: Client
) -> None:
    a, b = execute(kp, client, "a"), execute(kp, client, "b")
    kp.execute_failed(kp.begin_execute(a))
    c = execute(kp, client, "c")
    d = execute(kp, client, "d")
    assert kp.should_abort(b)
    assert not kp.should_abort(c)
    kp.execute_failed(kp.begin_execute(c))
    assert kp.should_abort(d)
    assert kp.should_abort(b)
    assert not kp.should_abort(execute(kp, client, "e"))


def test_silent_failure_does_not_abort(kp: KernelProtocol, client: Client) -> None:
    failing = execute(kp, client, "a", silent=True)
    queued = execute(kp, client, "b")
    kp.execute_failed(kp.begin_execute(failing))
    assert not kp.should_abort(queued)


def test_stop_on_error_false_does_not_abort(kp: KernelProtocol, client: Client) -> None:
    failing = execute(kp, client, "a", stop_on_error=False)
    queued = execute(kp, client, "b")
    kp.execute_failed(kp.begin_execute(failing))
    assert not kp.should_abort(queued)


def test_abort_reply(kp: KernelProtocol, client: Client) -> None:
    a, b = execute(kp, client, "a"), execute(kp, client, "b")
    kp.execute_failed(kp.begin_execute(a))
    kp.begin(b)
    out = kp.abort_reply(b)
    assert out.channel is Channel.SHELL
    reply = client.decode(out)
    assert reply.msg_type == "execute_reply"
    assert reply.content["status"] == "aborted"
    assert reply.identities == IDENT
    assert reply.parent_header == b.message.header


# -- building messages ---------------------------------------------------------------------------


ROUTABLE = [
    *[(Channel.SHELL, t) for t in sorted(SHELL_REQUESTS)],
    *[(Channel.CONTROL, t) for t in sorted(CONTROL_REQUESTS)],
]


@pytest.mark.parametrize(("channel", "msg_type"), ROUTABLE, ids=str)
def test_reply_routing(kp: KernelProtocol, client: Client, channel: Channel, msg_type: str) -> None:
    frames = client.frames(msg_type, identities=(b"router-a", b"router-b"))
    req = kp.receive(channel, frames)
    assert isinstance(req, Request)
    kp.begin(req)
    out = kp.reply(req, {"status": "ok"}, {"m": 1})
    assert out.channel is channel
    assert out.frames[:3] == (b"router-a", b"router-b", DELIMITER)
    reply = client.decode(out)
    assert reply.msg_type == CONTROL_REQUESTS[msg_type]
    assert reply.msg_type.endswith("_reply")
    assert reply.content == {"status": "ok"}
    assert reply.metadata == {"m": 1}
    assert reply.parent_header == req.message.header
    assert reply.parent_header is not None
    assert reply.parent_header.extra == {"x-client": "kept"}  # echoed unchanged
    assert reply.header.session == "kernel-sess"
    assert reply.header.version == PROTOCOL_VERSION


def test_publish(kp: KernelProtocol, client: Client) -> None:
    req = execute(kp, client)
    out = kp.publish(
        "stream", {"name": "stdout", "text": "hi"}, req.message, buffers=[b"b1"], metadata={"a": 1}
    )
    assert out.channel is Channel.IOPUB
    assert out.frames[0] == b"kernel.kernel-sess.stream"
    assert out.frames[1] == DELIMITER
    msg = client.decode(out)
    assert msg.identities == (b"kernel.kernel-sess.stream",)
    assert msg.msg_type == "stream"
    assert msg.content == {"name": "stdout", "text": "hi"}
    assert msg.metadata == {"a": 1}
    assert msg.buffers == (b"b1",)
    assert msg.parent_header == req.message.header
    orphan = client.decode(kp.publish("status", {"execution_state": "starting"}, None))
    assert orphan.parent_header is None
    raw_parent = list(kp.publish("status", {}, None).frames)[4]
    assert raw_parent == b"{}"  # no parent is an empty dict on the wire


def test_status(kp: KernelProtocol, client: Client) -> None:
    req = execute(kp, client)
    for state in ("busy", "idle", "starting"):
        msg = client.decode(kp.status(state, req.message))
        assert msg.msg_type == "status"
        assert msg.content == {"execution_state": state}
        assert msg.parent_header == req.message.header


@pytest.mark.parametrize("topic", [b"", b"kernel.", b"stream.stdout"])
def test_welcome(kp: KernelProtocol, client: Client, topic: bytes) -> None:
    sub = kp.receive(Channel.IOPUB, [b"\x01" + topic])
    assert isinstance(sub, Subscription)
    out = kp.welcome(sub)
    assert out.channel is Channel.IOPUB
    if topic:
        assert out.frames[0] == topic
        assert out.frames[1] == DELIMITER
    else:
        assert out.frames[0] == DELIMITER  # no topic frame for the "" subscription
    msg = client.decode(out)
    assert msg.msg_type == "iopub_welcome"
    assert msg.content == {"subscription": topic.decode()}
    assert msg.parent_header is None
    assert out.frames[out.frames.index(DELIMITER) + 3] == b"{}"


@pytest.mark.parametrize("password", [False, True])
def test_input_request(kp: KernelProtocol, client: Client, password: bool) -> None:
    req = execute(kp, client, allow_stdin=True)
    out = kp.input_request(req.message, "Name: ", password)
    assert out.channel is Channel.STDIN
    assert out.frames[: len(IDENT)] == IDENT  # routed with the shell request's identities
    msg = client.decode(out)
    assert msg.msg_type == "input_request"
    assert msg.content == {"prompt": "Name: ", "password": password}
    assert msg.parent_header == req.message.header


def test_headers_version_date_and_unique_ids(kp: KernelProtocol, client: Client) -> None:
    req = execute(kp, client)
    sub = kp.receive(Channel.IOPUB, [b"\x01"])
    assert isinstance(sub, Subscription)
    outs: list[Outgoing] = []
    for _ in range(50):
        replied, aborted = execute(kp, client), execute(kp, client)  # one reply each
        kp.begin(replied)
        kp.begin(aborted)
        outs += [
            kp.reply(replied, {"status": "ok"}),
            kp.publish("stream", {"name": "stdout", "text": ""}, req.message),
            kp.status("idle", req.message),
            kp.welcome(sub),
            kp.input_request(req.message, "", False),
            kp.abort_reply(aborted),
        ]
    messages = [client.decode(o) for o in outs]
    ids = [m.msg_id for m in messages]
    assert len(set(ids)) == len(ids)
    for m in messages:
        assert m.header.version == PROTOCOL_VERSION == "5.5"
        assert m.header.date == CLOCK_VALUE
        assert m.header.session == "kernel-sess"
        assert m.header.username == "kernel"
        assert m.header.msg_id.startswith("kernel-sess")


def test_session_ids_distinguish_kernels(client: Client) -> None:
    a = KernelProtocol(Session(KEY), session_id="a", clock=lambda: CLOCK_VALUE)
    b = KernelProtocol(Session(KEY), session_id="b", clock=lambda: CLOCK_VALUE, username="bob")
    ma = client.decode(a.status("idle", None))
    mb = client.decode(b.status("idle", None))
    assert ma.msg_id != mb.msg_id
    assert (ma.header.session, mb.header.session) == ("a", "b")
    assert mb.header.username == "bob"


# -- kernel subshells (JEP 91) ---------------------------------------------------------------


@pytest.fixture
def skp() -> KernelProtocol:
    """A kernel that claims subshells."""
    return KernelProtocol(
        Session(KEY), session_id="kernel-sess", clock=lambda: CLOCK_VALUE, subshells=True
    )


def control(kp: KernelProtocol, client: Client, msg_type: str, **content: Any) -> Request:
    req = request(kp, client, msg_type, content, Channel.CONTROL)
    kp.begin(req)
    return req


def test_subshells_are_created_listed_and_deleted(skp: KernelProtocol, client: Client) -> None:
    create = control(skp, client, "create_subshell_request")
    out = skp.create_subshell(create, "a")
    assert out.channel is Channel.CONTROL
    reply = client.decode(out)
    assert reply.msg_type == "create_subshell_reply"
    assert reply.content == {"status": "ok", "subshell_id": "a"}
    skp.create_subshell(control(skp, client, "create_subshell_request"), "b")
    assert skp.knows_subshell("a") and skp.knows_subshell("b")
    listed = client.decode(skp.list_subshells(control(skp, client, "list_subshell_request")))
    assert listed.msg_type == "list_subshell_reply"
    assert listed.content == {"status": "ok", "subshell_id": ["a", "b"]}  # no main shell
    out, deleted = skp.delete_subshell(
        control(skp, client, "delete_subshell_request", subshell_id="a")
    )
    assert deleted == "a"
    assert client.decode(out).content == {"status": "ok"}
    assert not skp.knows_subshell("a")
    assert skp.subshell_ids == ["b"]
    with pytest.raises(LocalProtocolError, match="exists already"):
        skp.create_subshell(control(skp, client, "create_subshell_request"), "b")


@pytest.mark.parametrize(
    ("content", "ename", "evalue"),
    [
        ({"subshell_id": "gone"}, "UnknownSubshellError", "unknown subshell_id 'gone'"),
        ({}, "ProtocolError", "subshell_id must be a string"),
        ({"subshell_id": 3}, "ProtocolError", "subshell_id must be a string"),
    ],
)
def test_deleting_what_is_no_subshell_is_an_error(
    skp: KernelProtocol, client: Client, content: dict[str, Any], ename: str, evalue: str
) -> None:
    skp.create_subshell(control(skp, client, "create_subshell_request"), "a")
    out, deleted = skp.delete_subshell(control(skp, client, "delete_subshell_request", **content))
    assert deleted is None
    reply = client.decode(out).content
    assert (reply["status"], reply["ename"]) == ("error", ename)
    assert evalue in reply["evalue"]
    assert skp.subshell_ids == ["a"]


def test_a_kernel_without_subshells_refuses_them(kp: KernelProtocol, client: Client) -> None:
    create = kp.create_subshell(control(kp, client, "create_subshell_request"), "a")
    listed = kp.list_subshells(control(kp, client, "list_subshell_request"))
    deleted, gone = kp.delete_subshell(
        control(kp, client, "delete_subshell_request", subshell_id="a")
    )
    for out in (create, listed, deleted):
        reply = client.decode(out).content
        assert reply["status"] == "error"
        assert reply["ename"] == "SubshellsNotSupported"
        assert "does not support kernel subshells" in reply["evalue"]
    assert gone is None
    assert not kp.knows_subshell("a")


def test_subshell_id_is_read_from_the_header_of_shell_requests(
    skp: KernelProtocol, client: Client
) -> None:
    assert skp.subshell_id(execute(skp, client)) is None
    assert skp.subshell_id(execute(skp, client, subshell_id="a")) == "a"  # known or not
    # Control requests act on the whole kernel (JEP 91): no subshell.
    on_control = request(skp, client, "execute_request", {"code": ""}, Channel.CONTROL, "a")
    assert skp.subshell_id(on_control) is None


def test_a_kernel_without_subshells_ignores_subshell_id(kp: KernelProtocol, client: Client) -> None:
    """JEP 91: 'Any use of a subshell_id field in a message will be ignored'."""
    req = execute(kp, client, subshell_id="a")
    assert kp.subshell_id(req) is None
    failing = execute(kp, client, subshell_id="b")
    queued = execute(kp, client, subshell_id="c")
    kp.execute_failed(kp.begin_execute(failing))
    assert kp.should_abort(queued)  # one shell: the failure aborts what is queued behind it


def test_unknown_subshell_reply(skp: KernelProtocol, client: Client) -> None:
    for msg_type, content in (("execute_request", {"code": "1"}), ("kernel_info_request", {})):
        req = request(skp, client, msg_type, content, subshell_id="nope")
        assert not skp.knows_subshell("nope")
        skp.begin(req)
        reply = client.decode(skp.unknown_subshell_reply(req))
        assert reply.msg_type == msg_type.replace("_request", "_reply")
        assert reply.parent_header is not None
        assert reply.parent_header.subshell_id == "nope"
        assert reply.content["status"] == "error"
        assert reply.content["ename"] == "UnknownSubshellError"
        assert reply.content["evalue"] == "unknown subshell_id 'nope'"
        assert ("execution_count" in reply.content) == (msg_type == "execute_request")
    assert skp.execution_count == 0  # nothing ran


def test_stop_on_error_aborts_within_the_failing_subshell_only(
    skp: KernelProtocol, client: Client
) -> None:
    skp.create_subshell(control(skp, client, "create_subshell_request"), "a")
    skp.create_subshell(control(skp, client, "create_subshell_request"), "b")
    failing = execute(skp, client, "fail", subshell_id="a")
    queued_a = execute(skp, client, "1", subshell_id="a")
    queued_b = execute(skp, client, "2", subshell_id="b")
    queued_main = execute(skp, client, "3")
    plan = skp.begin_execute(failing)
    assert plan.subshell_id == "a"
    skp.execute_failed(plan)
    assert skp.should_abort(queued_a)
    assert not skp.should_abort(queued_b)
    assert not skp.should_abort(queued_main)
    assert not skp.should_abort(execute(skp, client, "later", subshell_id="a"))
    # The main shell's failure aborts the main shell's queue, not a subshell's.
    failing_main = execute(skp, client, "fail")
    queued_main = execute(skp, client, "4")
    queued_b = execute(skp, client, "5", subshell_id="b")
    skp.execute_failed(skp.begin_execute(failing_main))
    assert skp.should_abort(queued_main)
    assert not skp.should_abort(queued_b)


def test_each_subshell_has_its_own_execution_count(skp: KernelProtocol, client: Client) -> None:
    """JEP 91: 'Each subshell will store its own execution count and history'."""
    skp.create_subshell(control(skp, client, "create_subshell_request"), "a")
    skp.create_subshell(control(skp, client, "create_subshell_request"), "b")
    counts = [
        skp.begin_execute(execute(skp, client, subshell_id=s)).execution_count
        for s in (None, "a", None, "a", "a", "b")
    ]
    assert counts == [1, 1, 2, 2, 3, 1]
    assert skp.execution_count == skp.execution_count_of(None) == 2
    assert (skp.execution_count_of("a"), skp.execution_count_of("b")) == (3, 1)
    assert skp.execution_count_of("nope") == 0
    # Replies that carry a count without running anything give their subshell's.
    aborted = execute(skp, client, subshell_id="a")
    skp.begin(aborted)
    assert client.decode(skp.abort_reply(aborted)).content["execution_count"] == 3
    bad = request(skp, client, "execute_request", {"code": 1}, subshell_id="b")
    skp.begin(bad)
    reply = client.decode(skp.bad_execute_reply(bad, RemoteProtocolError("code")))
    assert reply.content["execution_count"] == 1


def test_a_deleted_subshells_queue_keeps_its_count(skp: KernelProtocol, client: Client) -> None:
    skp.create_subshell(control(skp, client, "create_subshell_request"), "a")
    assert skp.begin_execute(execute(skp, client, subshell_id="a")).execution_count == 1
    queued = execute(skp, client, subshell_id="a")
    skp.delete_subshell(control(skp, client, "delete_subshell_request", subshell_id="a"))
    assert not skp.knows_subshell("a")
    assert skp.begin_execute(queued).execution_count == 2
    assert skp.execution_count == 0


def test_replies_and_outputs_keep_the_subshell_in_their_parent(
    skp: KernelProtocol, client: Client
) -> None:
    skp.create_subshell(control(skp, client, "create_subshell_request"), "a")
    req = execute(skp, client, "1", subshell_id="a")
    busy = skp.begin(req)
    plan = skp.begin_execute(req)
    stream = skp.output(req, "stream", {"name": "stdout", "text": "1"})
    assert stream is not None
    outgoing = [skp.publish_output(o) for o in (busy, stream)]
    outgoing.append(skp.execute_ok(req, plan, {}))
    for out in outgoing:
        parent = client.decode(out).parent_header
        assert parent is not None
        assert parent.subshell_id == "a"
        assert parent.msg_id == req.message.msg_id


def test_debug_request_gets_a_debug_reply_and_events_outlive_it(
    kp: KernelProtocol, client: Client
) -> None:
    """debug_request (control) is answered by debug_reply; a debug_event is no request's
    output: sent with that request as parent after its idle, it is not refused."""
    content = {"type": "request", "seq": 1, "command": "debugInfo"}
    req = request(kp, client, "debug_request", content, channel=Channel.CONTROL)
    kp.begin(req)
    reply = client.decode(kp.reply(req, {"type": "response", "success": True}))
    assert reply.msg_type == "debug_reply" and reply.parent_header is not None
    kp.end(req)
    event = kp.debug_event({"type": "event", "event": "stopped", "seq": 2}, req.message)
    msg = client.decode(kp.publish_output(event))
    assert msg.msg_type == "debug_event"
    assert msg.parent_header is not None and msg.parent_header.msg_id == req.message.msg_id
    assert msg.content["event"] == "stopped"
