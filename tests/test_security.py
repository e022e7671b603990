"""Forged, tampered, replayed and malformed messages are never acted on.

A raw DEALER sends ``touch PATH`` execute requests to the probe kernel: its messages are built
by the core's client role, then forged where a test needs it (unsigned, another key or
scheme, tampered, replayed, malformed). The file appearing would mean the kernel executed a
message it must have refused. After each attempt a valid ``kernel_info_request`` on the same
channel acts as a barrier: the channel is handled in order, so once its reply is in, anything
sent earlier that was going to run has run. Any other reply seen before the barrier's is a
failure. In the end the kernel must still answer kernel_info and heartbeat, and be alive.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from conftest import JupyterEnv, KernelPair, start_kernel_pair, stop_kernel_pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client.manager import KernelManager

from kernelsdk._clock import UtcClock
from kernelsdk.protocol import (
    DELIMITER,
    Channel,
    ClientProtocol,
    InvalidMessage,
    Message,
    Outgoing,
    Session,
)

REPLY_WAIT = 10.0  # generous: only a hung kernel reaches it


class RawClient:
    """DEALER sockets on shell, control and stdin (same identity) and a SUB on IOPub."""

    def __init__(self, km: KernelManager, tmp: Path) -> None:
        self.km = km
        self.tmp = tmp
        self.key: bytes = km.session.key
        self.session = Session(self.key, km.session.signature_scheme)
        self.protocol = ClientProtocol(
            self.session, session_id=uuid.uuid4().hex, clock=UtcClock(), username="security"
        )
        self.ctx = zmq.Context()
        identity = uuid.uuid4().hex.encode()
        self.socks: dict[str, zmq.Socket[Any]] = {}
        for channel in ("shell", "control", "stdin"):
            sock = self.ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.identity = identity
            sock.connect(km._make_url(channel))
            self.socks[channel] = sock
        self.iopub = self.ctx.socket(zmq.SUB)
        self.iopub.linger = 0
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(km._make_url("iopub"))
        self._paths = itertools.count()
        self.refused_ids: set[str] = set()

    def close(self) -> None:
        self.ctx.destroy(linger=0)

    def new_path(self) -> Path:
        return self.tmp / f"touched-{next(self._paths)}"

    def message(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> Outgoing:
        """A signed request, for ``channel`` (a reply on another would not match it)."""
        return self.protocol.request(Channel(channel), msg_type, content)

    def execute_msg(self, code: str, channel: str = "shell") -> Outgoing:
        return self.message(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": False,
            },
            channel,
        )

    def frames(self, msg: Outgoing, session: Session | None = None) -> list[bytes]:
        """[DELIM, signature, header, parent, metadata, content] as a DEALER sends them; with
        ``session``, signed by that one instead (a forgery: no key, another key or scheme)."""
        frames = list(msg.frames)
        if session is None:
            return frames
        parts = frames[2:6]
        return [DELIMITER, session.sign(parts), *parts]

    def send(self, frames: list[bytes], channel: str = "shell") -> None:
        self.socks[channel].send_multipart(frames)

    def decode(self, channel: str, frames: list[bytes]) -> Message:
        event = self.protocol.receive(Channel(channel), frames)
        assert not isinstance(event, InvalidMessage), f"the kernel sent {event.reason}"
        return event.message

    def recv(self, channel: str, timeout: float) -> Message | None:
        sock = self.socks[channel]
        if not sock.poll(int(timeout * 1000)):
            return None
        return self.decode(channel, sock.recv_multipart())

    def barrier(self, channel: str = "shell") -> list[Message]:
        """Send a valid kernel_info_request; return every other reply that came before its."""
        msg = self.message("kernel_info_request", {}, channel)
        self.send(self.frames(msg), channel)
        others: list[Message] = []
        deadline = time.monotonic() + REPLY_WAIT
        while True:
            reply = self.recv(channel, max(0.0, deadline - time.monotonic()))
            assert reply is not None, f"kernel_info_request on {channel} got no reply"
            if _parent_id(reply) == msg.msg_id:
                assert reply.content["status"] == "ok"
                return others
            others.append(reply)

    def iopub_parents(self) -> set[str]:
        """msg_ids of the requests IOPub has published anything for since the last call."""
        parents = set()
        while self.iopub.poll(0):
            parent = _parent_id(self.decode("iopub", self.iopub.recv_multipart()))
            if parent is not None:
                parents.add(parent)
        return parents

    def heartbeat_ok(self) -> bool:
        sock = self.ctx.socket(zmq.REQ)
        sock.linger = 0
        sock.connect(self.km._make_url("hb"))
        try:
            sock.send(b"still alive?")
            return bool(sock.poll(5000)) and sock.recv() == b"still alive?"
        finally:
            sock.close()


def _parent_id(msg: Message) -> str | None:
    return msg.parent_header.msg_id if msg.parent_header is not None else None


@pytest.fixture(scope="module")
def kernel(jupyter_env: JupyterEnv) -> Iterator[KernelPair]:
    km, kc = start_kernel_pair(jupyter_env, "probe", "tcp")
    yield km, kc
    stop_kernel_pair(km, kc)


@pytest.fixture(scope="module")
def raw(kernel: KernelPair, jupyter_env: JupyterEnv) -> Iterator[RawClient]:
    tmp = jupyter_env.root / f"sec-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    client = RawClient(kernel[0], tmp)
    client.barrier()  # connected; the IOPub subscription settles meanwhile
    time.sleep(0.2)
    client.iopub_parents()
    yield client
    client.close()


def assert_refused(raw: RawClient, frames: list[bytes], path: Path, channel: str = "shell") -> None:
    raw.send(frames, channel)
    others = raw.barrier(channel)
    assert others == [], f"a refused message got a reply: {others}"
    assert not path.exists(), "a refused message was executed"


def _touch(raw: RawClient, channel: str = "shell") -> tuple[Path, Outgoing]:
    path = raw.new_path()
    return path, raw.execute_msg(f"touch {path}", channel)


# -- the valid message works (the control experiment) ---------------------------------------------


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_valid_signed_message_is_executed(raw: RawClient, channel: str) -> None:
    path, msg = _touch(raw, channel)
    raw.send(raw.frames(msg), channel)
    others = raw.barrier(channel)
    assert [r.content["status"] for r in others] == ["ok"]
    assert path.exists()


# -- forged signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_tampered_content_is_refused(raw: RawClient, channel: str) -> None:
    path, msg = _touch(raw)
    frames = raw.frames(msg)
    honest_path, honest = _touch(raw)
    signed = raw.frames(honest)
    # The signature of an innocent message, the content of another: HMAC must not match.
    tampered = [*signed[:5], frames[5]]
    assert_refused(raw, tampered, path, channel)
    # And a single flipped byte inside the signed content.
    flipped = bytearray(signed[5])
    flipped[-2] ^= 0x01
    assert_refused(raw, [*signed[:5], bytes(flipped)], honest_path, channel)


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_unsigned_message_is_refused(raw: RawClient, channel: str) -> None:
    path, msg = _touch(raw)
    frames = raw.frames(msg, Session(b"", "hmac-sha256"))
    assert frames[1] == b""
    assert_refused(raw, frames, path, channel)


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_wrong_key_is_refused(raw: RawClient, channel: str) -> None:
    path, msg = _touch(raw)
    wrong = Session(raw.key + b"x", "hmac-sha256")
    assert_refused(raw, raw.frames(msg, wrong), path, channel)


@pytest.mark.parametrize("scheme", ["hmac-sha512", "hmac-md5", "hmac-sha1"])
def test_wrong_signature_scheme_is_refused(raw: RawClient, scheme: str) -> None:
    path, msg = _touch(raw)
    other = Session(raw.key, scheme)
    assert_refused(raw, raw.frames(msg, other), path)


def test_uppercase_hex_signature_is_refused(raw: RawClient) -> None:
    """The signature is compared as lowercase hex bytes, nothing looser."""
    path, msg = _touch(raw)
    frames = raw.frames(msg)
    assert_refused(raw, [frames[0], frames[1].upper(), *frames[2:]], path)


def test_forged_shutdown_is_refused(raw: RawClient, kernel: KernelPair) -> None:
    msg = raw.message("shutdown_request", {"restart": False}, "control")
    wrong = Session(b"not-the-key", "hmac-sha256")
    raw.send(raw.frames(msg, wrong), "control")
    assert raw.barrier("control") == []
    assert kernel[0].is_alive()


# -- replays ---------------------------------------------------------------------------------


def test_replayed_message_is_refused(raw: RawClient) -> None:
    path, msg = _touch(raw)
    frames = raw.frames(msg)
    raw.send(frames)
    assert [r.content["status"] for r in raw.barrier()] == ["ok"]
    assert path.exists()
    path.unlink()
    raw.iopub_parents()
    assert_refused(raw, frames, path)
    time.sleep(0.1)
    assert msg.msg_id not in raw.iopub_parents()  # not even busy/idle


def test_replay_on_another_channel_is_refused(raw: RawClient) -> None:
    """Control accepts execute_request too: a message seen on shell is refused there."""
    path, msg = _touch(raw)
    frames = raw.frames(msg)
    raw.send(frames, "shell")
    assert [r.content["status"] for r in raw.barrier()] == ["ok"]
    path.unlink()
    assert_refused(raw, frames, path, "control")


def test_replay_with_buffers_changed_is_refused(raw: RawClient) -> None:
    """Buffers are not signed, but the signature of the rest was already used."""
    path, msg = _touch(raw)
    frames = raw.frames(msg)
    raw.send(frames)
    assert [r.content["status"] for r in raw.barrier()] == ["ok"]
    path.unlink()
    assert_refused(raw, [*frames, b"extra buffer"], path)


# -- malformed frame lists (property-based) -----------------------------------------------------


_GARBAGE_KINDS = [
    "random",
    "no_delimiter",
    "too_few",
    "bad_json",
    "content_list",
    "header_not_dict",
    "parent_not_dict",
    "metadata_not_dict",
    "missing_msg_id",
    "unknown_type",
    "bad_utf8",
]


def _resign(raw: RawClient, parts: list[bytes]) -> list[bytes]:
    """Frames with a *valid* signature over arbitrary (possibly broken) dict frames: these
    get past the HMAC check and test the decoder and validation behind it."""
    return [DELIMITER, raw.session.sign(parts), *parts]


@st.composite
def garbage(draw: st.DrawFn, raw: RawClient) -> tuple[list[bytes], Path]:
    path, msg = _touch(raw)
    kind = draw(st.sampled_from(_GARBAGE_KINDS))
    frames = raw.frames(msg)
    parts = list(frames[2:6])  # header, parent, metadata, content (packed)
    header = json.loads(parts[0])
    blob = st.binary(max_size=64)
    if kind == "random":
        out = draw(st.lists(blob, min_size=1, max_size=8))
        # A stray valid delimiter + signature + parts would be a valid message: avoid it.
        return out, path
    if kind == "no_delimiter":
        return [f for f in frames if f != DELIMITER], path
    if kind == "too_few":
        k = draw(st.integers(0, 4))
        return frames[: 1 + k], path
    if kind == "bad_json":
        i = draw(st.integers(0, 3))
        junk = draw(blob.filter(lambda b: not _is_json(b)))
        parts[i] = junk
        return _resign(raw, parts), path
    if kind == "content_list":
        parts[3] = json.dumps([f"touch {path}"]).encode()
        return _resign(raw, parts), path
    if kind in ("header_not_dict", "parent_not_dict", "metadata_not_dict"):
        i = {"header_not_dict": 0, "parent_not_dict": 1, "metadata_not_dict": 2}[kind]
        value = draw(st.sampled_from([[], "x", 1, None, [header]]))
        if value is None and i == 1:
            value = "x"
        parts[i] = json.dumps(value, default=str).encode()
        return _resign(raw, parts), path
    if kind == "missing_msg_id":
        header.pop(draw(st.sampled_from(["msg_id", "msg_type"])))
        parts[0] = json.dumps(header, default=str).encode()
        return _resign(raw, parts), path
    if kind == "unknown_type":
        header["msg_type"] = draw(
            st.sampled_from(["execute", "exec_request", "EXECUTE_REQUEST", "", "input_reply"])
            | st.text(max_size=10).map(lambda t: "x_" + t)
        )
        parts[0] = json.dumps(header, default=str).encode()
        return _resign(raw, parts), path
    assert kind == "bad_utf8"
    parts[3] = parts[3].replace(b"touch", b"t\xffouch")
    return _resign(raw, parts), path


def _is_json(b: bytes) -> bool:
    try:
        json.loads(b)
    except ValueError:
        return False
    return True


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data(), channel=st.sampled_from(["shell", "control"]))
def test_garbage_is_never_executed(raw: RawClient, data: st.DataObject, channel: str) -> None:
    frames, path = data.draw(garbage(raw))
    raw.send(frames, channel)
    others = raw.barrier(channel)
    assert not path.exists(), f"garbage was executed: {frames!r}"
    assert others == [], f"garbage got a reply: {others}"


def test_garbage_on_stdin_and_iopub_is_ignored(raw: RawClient, kernel: KernelPair) -> None:
    km, _ = kernel
    path, msg = _touch(raw)
    # A valid execute on stdin is not an input_reply: dropped.
    raw.send(raw.frames(msg), "stdin")
    raw.send([b"garbage"], "stdin")
    raw.send([DELIMITER, b"", b"{}", b"{}", b"{}", b"{}"], "stdin")
    # XSUB can send anything upstream to the XPUB.
    xsub = raw.ctx.socket(zmq.XSUB)
    xsub.linger = 0
    xsub.connect(km._make_url("iopub"))
    for frames in ([b"\x02junk"], [b""], [b"\x01", b"two frames"], [b"\x01\xff\xfe"], [b"\x00"]):
        xsub.send_multipart(frames)
    time.sleep(0.3)
    xsub.close()
    assert raw.barrier("shell") == []
    assert not path.exists()


def test_kernel_survives_everything(raw: RawClient, kernel: KernelPair) -> None:
    """Runs last in this module: after all the above, the kernel answers on every channel."""
    km, kc = kernel
    assert raw.barrier("shell") == []
    assert raw.barrier("control") == []
    assert raw.heartbeat_ok()
    assert km.is_alive()
    reply = kc.execute_interactive("print fine", timeout=30, output_hook=lambda m: None)
    assert reply["content"]["status"] == "ok"
