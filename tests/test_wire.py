"""The wire layer (kernelsdk.protocol.Session): frames <-> messages, HMAC signing, replay checks,
and interoperability with jupyter_client's Session."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import attrs
import msgpack
import pytest
import strategies as sst
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client.session import Session as JupyterSession

from kernelsdk import ConfigError, RemoteProtocolError
from kernelsdk.protocol import (
    DELIMITER,
    JSON,
    MSGPACK,
    PROTOCOL_VERSION,
    Channel,
    Header,
    InputReply,
    InvalidMessage,
    KernelProtocol,
    Message,
    Packer,
    Request,
    Session,
    Subscription,
)

KEY = b"0123abcd-key-for-tests"
SCHEMES = ["hmac-sha256", "hmac-sha512", "hmac-md5", "hmac-sha3_256", "hmac-blake2b"]
PACKERS = [JSON, MSGPACK]
ISO_WITH_TZ = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$")
settings_fast = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def make_message(
    msg_type: str = "execute_request",
    content: dict[str, Any] | None = None,
    *,
    msg_id: str = "m-1",
    parent: Header | None = None,
    metadata: dict[str, Any] | None = None,
    buffers: tuple[bytes, ...] = (),
    identities: tuple[bytes, ...] = (b"client-1",),
) -> Message:
    header = Header(
        msg_id=msg_id,
        msg_type=msg_type,
        session="sess-1",
        username="tester",
        date="2024-05-06T07:08:09.123456Z",
    )
    return Message(
        header=header,
        content=content if content is not None else {"code": "1 + 1"},
        parent_header=parent,
        metadata=metadata if metadata is not None else {},
        buffers=buffers,
        identities=identities,
    )


def signed_frames(
    parts: list[bytes],
    key: bytes = KEY,
    scheme: str = "hmac-sha256",
    identities: tuple[bytes, ...] = (),
) -> list[bytes]:
    """Frames with a correct signature over arbitrary (possibly garbage) dict frames."""
    h = hmac.new(key, digestmod=scheme.partition("-")[2])
    for p in parts:
        h.update(p)
    return [*identities, DELIMITER, h.hexdigest().encode(), *parts]


def json_parts(
    header: object, parent: object = None, metadata: object = None, content: object = None
) -> list[bytes]:
    return [
        json.dumps(x if x is not None else {}).encode() for x in (header, parent, metadata, content)
    ]


GOOD_HEADER = {
    "msg_id": "a",
    "msg_type": "kernel_info_request",
    "session": "s",
    "username": "u",
    "date": "2024-01-01T00:00:00Z",
    "version": "5.5",
}


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("packer", PACKERS, ids=lambda p: p.name)
def test_pack_frames_is_serialize_without_a_message(packer: Packer) -> None:
    """The kernel's hot path packs a header dict directly; parents are packed once and
    reused while the same parent header object comes back (one request's messages)."""
    session = Session(KEY, packer=packer)
    first, second = make_message(msg_id="p-1").header, make_message(msg_id="p-2").header
    for parent in (first, first, second, first, None):
        msg = make_message("stream", {"text": "x"}, parent=parent, metadata={"m": 1})
        assert session.pack_frames(
            msg.header.to_dict(),
            msg.content,
            parent,
            msg.metadata,
            identities=msg.identities,
            buffers=(b"buf",),
        ) == Session(KEY, packer=packer).serialize(attrs.evolve(msg, buffers=(b"buf",)))
    frames = session.pack_frames(GOOD_HEADER, {})  # no parent, no metadata: empty dicts
    assert [packer.unpack(f) for f in frames[3:5]] == [{}, {}]


@pytest.mark.parametrize("packer", PACKERS, ids=lambda p: p.name)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("key", [KEY, b""], ids=["keyed", "unkeyed"])
def test_round_trip_schemes(packer: Packer, scheme: str, key: bytes) -> None:
    parent = Header("p-1", "execute_request", "client", "u", "2024-01-01T00:00:00Z")
    msg = make_message(
        content={"code": "print('é ☃ 😀')", "n": [1, 2.5, None, True], "d": {"x": {"y": []}}},
        parent=parent,
        metadata={"cellId": "abc"},
        buffers=(b"\x00\x01", b""),
        identities=(b"id-a", b"id-b"),
    )
    sender = Session(key, scheme, packer)
    frames = sender.serialize(msg)
    assert frames[2] == DELIMITER
    if key:
        digest = hmac.new(key, digestmod=scheme[5:])
        for part in frames[4:8]:
            digest.update(part)
        assert frames[3] == digest.hexdigest().encode("ascii")
        assert frames[3] == frames[3].lower()
    else:
        assert frames[3] == b""
    assert frames[8:] == [b"\x00\x01", b""]
    got = Session(key, scheme, packer).deserialize(frames)
    assert got == msg


@pytest.mark.parametrize("packer", PACKERS, ids=lambda p: p.name)
@given(
    header=sst.headers(),
    parent=st.none() | sst.headers(),
    metadata=sst.content_dicts,
    content=sst.content_dicts,
    buffers=sst.buffers,
    identities=st.lists(st.binary(max_size=10).filter(lambda b: b != b"<IDS|MSG>"), max_size=3),
    keyed=st.booleans(),
)
@settings_fast
def test_round_trip_property(
    packer: Packer,
    header: Header,
    parent: Header | None,
    metadata: dict[str, Any],
    content: dict[str, Any],
    buffers: list[bytes],
    identities: list[bytes],
    keyed: bool,
) -> None:
    key = KEY if keyed else b""
    msg = Message(header, content, parent, metadata, tuple(buffers), tuple(identities))
    frames = Session(key, packer=packer).serialize(msg)
    got = Session(key, packer=packer).deserialize(frames)
    assert got == msg
    # Re-serializing what was received gives the same bytes (nothing is lost on the way).
    assert Session(key, packer=packer).serialize(got) == frames


def test_session_properties_and_bad_schemes() -> None:
    assert Session(KEY).signs
    assert not Session(b"").signs
    assert Session(b"").sign([b"a", b"b"]) == b""
    for bad in ["sha256", "hmac-", "hmac-nosuchhash", "HMAC-sha256", "md5-hmac", ""]:
        with pytest.raises(ConfigError):
            Session(KEY, bad)


# -- buffers are not signed -------------------------------------------------------------------


@given(buffers=st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=3), data=st.data())
@settings_fast
def test_changing_a_buffer_still_verifies(buffers: list[bytes], data: st.DataObject) -> None:
    frames = Session(KEY).serialize(make_message(buffers=tuple(buffers)))
    i = data.draw(st.integers(0, len(buffers) - 1), label="buffer")
    new = data.draw(st.binary(max_size=20).filter(lambda b: b != buffers[i]), label="new buffer")
    start = frames.index(DELIMITER) + 6
    frames[start + i] = new
    got = Session(KEY).deserialize(frames)
    assert got.buffers[i] == new
    # Appending or dropping buffers does not invalidate the signature either.
    assert Session(KEY).deserialize([*frames, b"extra"]).buffers[-1] == b"extra"
    assert Session(KEY).deserialize(frames[:start]).buffers == ()


# -- tampering, keys, schemes -------------------------------------------------------------------


@pytest.mark.parametrize("packer", PACKERS, ids=lambda p: p.name)
@given(
    content=sst.content_dicts,
    frame=st.sampled_from(["signature", "header", "parent", "metadata", "content"]),
    data=st.data(),
)
@settings_fast
def test_any_single_byte_tamper_is_rejected(
    packer: Packer, content: dict[str, Any], frame: str, data: st.DataObject
) -> None:
    parent = Header("p", "execute_request", "c", "u", "2024-01-01T00:00:00Z")
    msg = make_message(content=content, parent=parent, metadata={"k": "v"})
    frames = Session(KEY, packer=packer).serialize(msg)
    index = (
        frames.index(DELIMITER)
        + 1
        + [
            "signature",
            "header",
            "parent",
            "metadata",
            "content",
        ].index(frame)
    )
    original = frames[index]
    pos = data.draw(st.integers(0, len(original) - 1), label="byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(original)
    tampered[pos] ^= flip
    frames[index] = bytes(tampered)
    receiver = Session(KEY, packer=packer)
    with pytest.raises(RemoteProtocolError):
        receiver.deserialize(frames)
    # A rejected message is not remembered: the genuine one is still accepted afterwards.
    frames[index] = original
    assert receiver.deserialize(frames) == msg


def test_unsigned_message_rejected_when_keyed() -> None:
    frames = Session(b"").serialize(make_message())
    assert frames[frames.index(DELIMITER) + 1] == b""
    with pytest.raises(RemoteProtocolError, match="unsigned"):
        Session(KEY).deserialize(frames)


def test_unkeyed_session_does_not_verify() -> None:
    frames = Session(b"another key").serialize(make_message())
    assert Session(b"").deserialize(frames) == make_message()
    frames[frames.index(DELIMITER) + 1] = b"not even hex"
    assert Session(b"").deserialize(frames) == make_message()


def test_wrong_key_rejected() -> None:
    frames = Session(b"key-one").serialize(make_message())
    with pytest.raises(RemoteProtocolError, match="signature"):
        Session(b"key-two").deserialize(frames)


@pytest.mark.parametrize("scheme", SCHEMES[1:])
def test_wrong_scheme_rejected(scheme: str) -> None:
    frames = Session(KEY, "hmac-sha256").serialize(make_message())
    with pytest.raises(RemoteProtocolError):
        Session(KEY, scheme).deserialize(frames)


def test_key_is_used_as_utf8_bytes_not_hex_decoded() -> None:
    key = "a0436f6c-1916-498b-8eb9-e81ab9368e84"
    frames = Session(key.encode()).serialize(make_message())
    parts = frames[frames.index(DELIMITER) + 2 :][:4]
    expected = hmac.new(key.encode("utf-8"), b"".join(parts), hashlib.sha256).hexdigest()
    assert frames[frames.index(DELIMITER) + 1] == expected.encode()


# -- replay ------------------------------------------------------------------------------------


def test_replay_rejected() -> None:
    frames = Session(KEY).serialize(make_message())
    receiver = Session(KEY)
    receiver.deserialize(frames)
    with pytest.raises(RemoteProtocolError, match="replay"):
        receiver.deserialize(frames)
    # Different routing identities do not make the same signed bytes new.
    with pytest.raises(RemoteProtocolError, match="replay"):
        receiver.deserialize([b"other-peer", *frames[frames.index(DELIMITER) :]])


def test_replay_history_is_bounded() -> None:
    sender = Session(KEY)
    messages = [sender.serialize(make_message(msg_id=f"m{i}")) for i in range(6)]
    receiver = Session(KEY, replay_history=3)
    receiver.deserialize(messages[0])
    receiver.deserialize(messages[1])
    receiver.deserialize(messages[2])
    with pytest.raises(RemoteProtocolError):  # still remembered after 2 others
        receiver.deserialize(messages[0])
    receiver.deserialize(messages[3])
    receiver.deserialize(messages[4])
    # After 4 other messages, the first has fallen out of the 3-entry history.
    assert receiver.deserialize(messages[0]).msg_id == "m0"
    with pytest.raises(RemoteProtocolError):  # and it is remembered again
        receiver.deserialize(messages[0])
    with pytest.raises(RemoteProtocolError):  # the most recent ones are still remembered
        receiver.deserialize(messages[4])


def test_replay_history_zero_disables_the_check() -> None:
    frames = Session(KEY).serialize(make_message())
    receiver = Session(KEY, replay_history=0)
    for _ in range(3):
        assert receiver.deserialize(frames).msg_id == "m-1"


def test_unkeyed_session_has_no_replay_check() -> None:
    frames = Session(b"").serialize(make_message())
    receiver = Session(b"")
    receiver.deserialize(frames)
    assert receiver.deserialize(frames).msg_id == "m-1"


# -- malformed frames ---------------------------------------------------------------------------


def test_too_few_frames() -> None:
    frames = Session(KEY).serialize(make_message())
    start = frames.index(DELIMITER) + 1
    assert len(frames) == start + 5
    for after_delimiter in range(5):
        with pytest.raises(RemoteProtocolError, match="at least 5"):
            Session(KEY).deserialize(frames[: start + after_delimiter])
    assert Session(KEY).deserialize(frames).msg_id == "m-1"


def test_no_delimiter() -> None:
    frames = Session(KEY).serialize(make_message())
    without = [f for f in frames if f != DELIMITER]
    with pytest.raises(RemoteProtocolError, match="delimiter"):
        Session(KEY).deserialize(without)
    with pytest.raises(RemoteProtocolError):
        Session(KEY).deserialize([])
    with pytest.raises(RemoteProtocolError):  # close, but not the exact delimiter bytes
        Session(KEY).deserialize([b"<IDS|MSG> ", *frames[frames.index(DELIMITER) + 1 :]])


@pytest.mark.parametrize("frame", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "garbage", [b"{not json", b"\xff\xfe\x00", b"", b'{"a": 1} trailing'], ids=repr
)
def test_undecodable_json_rejected(frame: int, garbage: bytes) -> None:
    parts = json_parts(GOOD_HEADER)
    parts[frame] = garbage
    with pytest.raises(RemoteProtocolError):
        Session(KEY).deserialize(signed_frames(parts))


def test_undecodable_msgpack_rejected() -> None:
    parts = [msgpack.packb(GOOD_HEADER), msgpack.packb({}), msgpack.packb({}), b"\xc1"]
    with pytest.raises(RemoteProtocolError):
        Session(KEY, packer=MSGPACK).deserialize(signed_frames(parts))
    # JSON frames are not msgpack, and the other way around.
    with pytest.raises(RemoteProtocolError):
        Session(KEY, packer=MSGPACK).deserialize(signed_frames(json_parts(GOOD_HEADER)))


@pytest.mark.parametrize("position", ["parent", "metadata", "content"])
@pytest.mark.parametrize("value", [[], [1, 2], "text", 3, None, True], ids=repr)
def test_non_dict_frames_rejected(position: str, value: object) -> None:
    values: dict[str, object] = {"parent": {}, "metadata": {}, "content": {}}
    values[position] = value
    parts = [json.dumps(GOOD_HEADER).encode()] + [
        json.dumps(values[k]).encode() for k in ("parent", "metadata", "content")
    ]
    with pytest.raises(RemoteProtocolError, match=position):
        Session(KEY).deserialize(signed_frames(parts))


@pytest.mark.parametrize(
    "header",
    [
        [],
        "header",
        None,
        {k: v for k, v in GOOD_HEADER.items() if k != "msg_id"},
        {k: v for k, v in GOOD_HEADER.items() if k != "msg_type"},
        {**GOOD_HEADER, "msg_id": ""},
        {**GOOD_HEADER, "msg_type": ""},
        {**GOOD_HEADER, "msg_id": 1},
        {**GOOD_HEADER, "msg_type": ["execute_request"]},
        {**GOOD_HEADER, "session": None},
        {**GOOD_HEADER, "username": 5},
        {**GOOD_HEADER, "date": 1700000000},
        {**GOOD_HEADER, "version": 5.5},
        {**GOOD_HEADER, "subshell_id": 3},
    ],
    ids=repr,
)
@pytest.mark.parametrize("where", ["header", "parent"])
def test_bad_header_types_rejected(header: object, where: str) -> None:
    if where == "header":
        parts = json_parts(header)
    else:
        parts = [json.dumps(p).encode() for p in (GOOD_HEADER, header, {}, {})]
    with pytest.raises(RemoteProtocolError):
        Session(KEY).deserialize(signed_frames(parts))


def test_lenient_header_fields() -> None:
    minimal = {"msg_id": "a", "msg_type": "kernel_info_request"}
    msg = Session(KEY).deserialize(signed_frames(json_parts(minimal)))
    assert (msg.header.session, msg.header.username, msg.header.date, msg.header.version) == (
        "",
        "",
        "",
        "",
    )
    assert msg.parent_header is None
    extra = {**GOOD_HEADER, "subshell_id": None, "x-custom": {"a": [1]}}
    msg = Session(KEY).deserialize(signed_frames(json_parts(GOOD_HEADER, extra)))
    assert msg.parent_header is not None
    assert msg.parent_header.extra == {"x-custom": {"a": [1]}}
    assert msg.parent_header.to_dict() == {k: v for k, v in extra.items() if k != "subshell_id"}


@pytest.mark.parametrize("where", ["header-extra", "username", "content"])
def test_accepted_message_can_be_serialized_again(where: str) -> None:
    header: dict[str, Any] = dict(GOOD_HEADER)
    content: dict[str, Any] = {}
    if where == "header-extra":
        header["x"] = "\ud800"
    elif where == "username":
        header["username"] = "\udfff"
    else:
        content["code"] = "a\ud83d"
    parts = [json.dumps(p).encode("ascii") for p in (header, {}, {}, content)]
    try:
        msg = Session(KEY).deserialize(signed_frames(parts))
    except RemoteProtocolError:
        return  # rejecting it is fine too
    # What was accepted must survive being echoed back (as a parent header or execute_input).
    reply = Message(
        Header("r", "kernel_info_reply", "k"), dict(msg.content), parent_header=msg.header
    )
    frames = Session(KEY).serialize(reply)
    Session(KEY).deserialize(frames)


# -- garbage never escapes as anything but RemoteProtocolError ---------------------------------


@st.composite
def signed_garbage(draw: st.DrawFn, packer: Packer) -> list[bytes]:
    """Correctly signed frames whose four dict frames hold arbitrary (mostly wrong) values."""
    pack = (lambda v: json.dumps(v).encode()) if packer is JSON else msgpack.packb
    header_like = st.dictionaries(
        st.sampled_from(
            ["msg_id", "msg_type", "session", "username", "date", "version", "subshell_id", "x"]
        ),
        sst.json_values,
    )
    value = st.one_of(sst.json_values, header_like, sst.header_dicts(), st.just({}))
    part = st.one_of(value.map(pack), st.binary(max_size=30))
    parts = draw(st.lists(part, min_size=4, max_size=4))
    buffers = draw(st.lists(st.binary(max_size=8), max_size=2))
    return signed_frames(parts) + buffers


def _deserialize_or_reject(session: Session, frames: list[bytes]) -> Message | None:
    try:
        return session.deserialize(frames)
    except RemoteProtocolError:
        return None


@pytest.mark.parametrize("packer", PACKERS, ids=lambda p: p.name)
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_garbage_only_raises_remote_protocol_error(packer: Packer, data: st.DataObject) -> None:
    frames = data.draw(
        st.one_of(sst.frame_lists, sst.delimited_frame_lists(), signed_garbage(packer))
    )
    for key in (KEY, b""):
        msg = _deserialize_or_reject(Session(key, packer=packer), frames)
        if msg is not None:
            assert isinstance(msg.header, Header)
            assert isinstance(msg.content, dict)
            assert isinstance(msg.metadata, dict)
            assert msg.parent_header is None or isinstance(msg.parent_header, Header)


@pytest.mark.parametrize("packer", PACKERS, ids=lambda p: p.name)
@given(data=st.data(), channel=st.sampled_from(list(Channel)))
@settings(max_examples=150, deadline=None)
def test_protocol_receive_never_raises(
    packer: Packer, data: st.DataObject, channel: Channel
) -> None:
    frames = data.draw(
        st.one_of(sst.frame_lists, sst.delimited_frame_lists(), signed_garbage(packer))
    )
    protocol = KernelProtocol(
        Session(KEY, packer=packer), session_id="k", clock=lambda: "2024-01-01T00:00:00Z"
    )
    event = protocol.receive(channel, frames)
    assert isinstance(event, Request | InputReply | Subscription | InvalidMessage)
    if isinstance(event, InvalidMessage):
        assert event.channel is channel
        assert event.reason
        assert event.frames == tuple(frames)


# -- interoperability with jupyter_client ------------------------------------------------------


def jupyter_session(packer: str, scheme: str = "hmac-sha256", key: bytes = KEY) -> JupyterSession:
    return JupyterSession(key=key, signature_scheme=scheme, packer=packer, username="jc")


@pytest.mark.parametrize(
    ("jc_packer", "packer"), [("json", JSON), ("msgpack", MSGPACK)], ids=["json", "msgpack"]
)
@pytest.mark.parametrize("scheme", ["hmac-sha256", "hmac-sha512", "hmac-md5"])
def test_jupyter_client_frames_accepted(jc_packer: str, packer: Packer, scheme: str) -> None:
    jc = jupyter_session(jc_packer, scheme)
    parent = jc.msg("kernel_info_request", {})
    msg = jc.msg(
        "execute_request",
        {"code": "x = 'é☃'", "silent": False, "user_expressions": {"a": "1"}, "n": 2.5},
        parent=parent,
        metadata={"cellId": "cell-1"},
    )
    frames = jc.serialize(msg, ident=[b"jc-ident"])
    frames.extend([b"buf-1", b"\x00buf2"])
    got = Session(KEY, scheme, packer).deserialize(frames)
    assert got.identities == (b"jc-ident",)
    assert got.msg_type == "execute_request"
    assert got.msg_id == msg["header"]["msg_id"]
    assert got.header.session == jc.session
    assert got.header.username == "jc"
    assert got.header.version  # jupyter_client says "5.4"
    assert ISO_WITH_TZ.match(got.header.date), got.header.date
    assert got.content == msg["content"]
    assert got.metadata == {"cellId": "cell-1"}
    assert got.parent_header is not None
    assert got.parent_header.msg_id == parent["header"]["msg_id"]
    assert got.buffers == (b"buf-1", b"\x00buf2")


@pytest.mark.parametrize(
    ("jc_packer", "packer"), [("json", JSON), ("msgpack", MSGPACK)], ids=["json", "msgpack"]
)
@pytest.mark.parametrize("scheme", ["hmac-sha256", "hmac-sha512", "hmac-md5"])
def test_our_frames_accepted_by_jupyter_client(jc_packer: str, packer: Packer, scheme: str) -> None:
    parent = Header("req-1", "execute_request", "client", "jc", "2024-01-01T00:00:00.5+02:00")
    msg = Message(
        Header("reply-1", "execute_reply", "kernel-sess", "kernel", "2024-05-06T07:08:09.123456Z"),
        {"status": "ok", "execution_count": 3, "user_expressions": {}, "text": "é☃😀"},
        parent_header=parent,
        metadata={"started": "x"},
        buffers=(b"raw",),
        identities=(b"jc-ident",),
    )
    frames = Session(KEY, scheme, packer).serialize(msg)
    jc = jupyter_session(jc_packer, scheme)
    idents, rest = jc.feed_identities(frames)
    assert idents == [b"jc-ident"]
    d = jc.deserialize(rest)
    assert d["msg_type"] == "execute_reply"
    assert d["msg_id"] == "reply-1"
    assert d["header"]["version"] == PROTOCOL_VERSION
    assert d["header"]["date"] == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert d["parent_header"]["msg_id"] == "req-1"
    assert d["parent_header"]["date"] == datetime(
        2024, 1, 1, 0, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2))
    )
    assert d["content"] == msg.content
    assert d["metadata"] == {"started": "x"}
    assert [bytes(b) for b in d["buffers"]] == [b"raw"]


@pytest.mark.parametrize(
    ("jc_packer", "packer"), [("json", JSON), ("msgpack", MSGPACK)], ids=["json", "msgpack"]
)
def test_jupyter_client_rejects_our_tampered_or_wrongly_keyed_frames(
    jc_packer: str, packer: Packer
) -> None:
    frames = Session(b"other key", packer=packer).serialize(make_message())
    jc = jupyter_session(jc_packer)
    _, rest = jc.feed_identities(frames)
    with pytest.raises(ValueError):
        jc.deserialize(rest)


@pytest.mark.parametrize(
    ("jc_packer", "packer"), [("json", JSON), ("msgpack", MSGPACK)], ids=["json", "msgpack"]
)
@given(content=sst.content_dicts, metadata=sst.content_dicts)
@settings(max_examples=25, deadline=None)
def test_jupyter_client_round_trip_property(
    jc_packer: str, packer: Packer, content: dict[str, Any], metadata: dict[str, Any]
) -> None:
    jc = jupyter_session(jc_packer)
    # theirs -> ours
    msg = jc.msg("comm_msg", content, metadata=metadata)
    got = Session(KEY, packer=packer).deserialize(jc.serialize(msg))
    assert got.content == content
    assert got.metadata == metadata
    # ours -> theirs
    ours = Message(
        Header("m", "comm_msg", "k", date="2024-01-01T00:00:00Z"), content, None, metadata
    )
    _, rest = jc.feed_identities(Session(KEY, packer=packer).serialize(ours))
    d = jc.deserialize(rest)
    assert d["content"] == content  # jupyter_client parses dates in headers only
    assert d["metadata"] == metadata
    assert d["parent_header"] == {}


def test_outgoing_header_dates_have_a_timezone() -> None:
    from kernelsdk._clock import UtcClock

    clock = UtcClock()
    before = datetime.now(UTC).replace(microsecond=0)
    stamps = [clock() for _ in range(3)]
    time.sleep(1.01)  # the cached second must roll over
    stamps.append(clock())
    after = datetime.now(UTC)
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
        assert before <= datetime.fromisoformat(stamp) <= after
    assert stamps == sorted(stamps)
    assert stamps[-1][:19] != stamps[0][:19]
    protocol = KernelProtocol(Session(KEY), session_id="k", clock=clock)
    out = protocol.status("idle", None)
    jc = JupyterSession(key=KEY)
    d = jc.deserialize(jc.feed_identities(list(out.frames))[1])
    assert isinstance(d["header"]["date"], datetime)
    assert d["header"]["date"].tzinfo is not None


# -- packing of values JSON has no type for, compared with jupyter_client ------------------------

SPECIAL_VALUES = [
    {"nan": math.nan},
    {"inf": [math.inf, -math.inf, 1.5]},
    {"nested": {"x": [math.nan, {"y": -math.inf}]}},
    {"bytes": b"\x00\x01\xfe\xff"},
    {"utc": datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)},
    {"plus2": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))},
    {"date": date(2024, 2, 29)},
    {"tuple": (1, "a", None)},
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("value", SPECIAL_VALUES, ids=lambda v: next(iter(v)))
def test_json_packing_matches_jupyter_client(value: dict[str, Any]) -> None:
    from jupyter_client.session import json_packer

    ours = JSON.pack(value)
    theirs = json_packer(value)
    assert json.loads(ours) == json.loads(theirs)
    json.loads(ours.decode("utf-8"), parse_constant=_no_constants)  # strict JSON: no NaN tokens


def _no_constants(name: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {name} in packed output")


@pytest.mark.parametrize("value", SPECIAL_VALUES, ids=lambda v: next(iter(v)))
def test_msgpack_packing_matches_jupyter_client(value: dict[str, Any]) -> None:
    from jupyter_client.session import msgpack_packer

    ours = msgpack.unpackb(MSGPACK.pack(value))
    theirs = msgpack.unpackb(msgpack_packer(value))
    assert _nan_safe(ours) == _nan_safe(theirs)


def _nan_safe(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return "NaN!"
    if isinstance(obj, dict):
        return {k: _nan_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_safe(v) for v in obj]
    return obj
