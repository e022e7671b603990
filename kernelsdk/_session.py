"""The wire layer: frames <-> :class:`~kernelsdk.protocol.Message`, with HMAC signing and replay
checks.

Theory of operation
-------------------
A message on the wire is ``[*identities, b"<IDS|MSG>", signature, header, parent_header,
metadata, content, *buffers]``. The signature is the lowercase hex HMAC of the four packed
dict frames *exactly as sent*: we never re-pack before verifying, because two correct JSON
encoders disagree on spacing. Buffers are not signed (spec). An empty key disables signing:
the signature frame is then empty and nothing is verified.

A valid signature is remembered in a bounded history; the same signature seen again is a
replay and is refused. The history is FIFO-bounded so memory stays flat in long sessions.

Everything here is pure computation: no sockets, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from ._exceptions import ConfigError, RemoteProtocolError
from ._message import Header, Message
from ._packers import JSON, Packer

DELIMITER: Final = b"<IDS|MSG>"
#: How many signatures are remembered for replay detection (jupyter_client uses 2**16 too).
DEFAULT_REPLAY_HISTORY: Final = 2**16


class Session:
    """Signs, packs, verifies and unpacks messages for one kernel (or client) session.

    Args:
        key: the connection file's ``key`` as bytes (its UTF-8 encoding; not hex-decoded).
            Empty means unsigned.
        signature_scheme: ``"hmac-<name>"`` for any algorithm :mod:`hashlib` provides.
        packer: how dicts become bytes (:data:`kernelsdk.protocol.JSON` or
            :data:`kernelsdk.protocol.MSGPACK`).
        replay_history: how many signatures to remember; 0 disables replay rejection.

    Raises:
        ConfigError: the signature scheme is not ``hmac-`` plus a hashlib algorithm.
    """

    def __init__(
        self,
        key: bytes = b"",
        signature_scheme: str = "hmac-sha256",
        packer: Packer = JSON,
        *,
        replay_history: int = DEFAULT_REPLAY_HISTORY,
    ) -> None:
        scheme, _, algorithm = signature_scheme.partition("-")
        if scheme != "hmac" or not algorithm:
            raise ConfigError(
                f"signature_scheme must look like 'hmac-sha256', not {signature_scheme!r}"
            )
        try:
            hashlib.new(algorithm)
        except (ValueError, TypeError):
            raise ConfigError(
                f"hashlib has no algorithm {algorithm!r} ({signature_scheme!r})"
            ) from None
        self.key = key
        self.signature_scheme = signature_scheme
        self.packer = packer
        # Copying a keyed HMAC object is much cheaper than re-keying one for every message.
        self._hmac = hmac.new(key, digestmod=algorithm) if key else None
        self._history_size = replay_history
        self._seen: set[bytes] = set()
        self._seen_order: deque[bytes] = deque()
        self._empty = packer.pack({})
        self._last_parent: tuple[Header, bytes] | None = None

    @property
    def signs(self) -> bool:
        """Whether messages are signed and verified (a non-empty key)."""
        return self._hmac is not None

    def sign(self, parts: Sequence[bytes]) -> bytes:
        """The hex signature of the four packed dict frames (``b""`` when unsigned)."""
        if self._hmac is None:
            return b""
        h = self._hmac.copy()
        for part in parts:
            h.update(part)
        return h.hexdigest().encode("ascii")

    def serialize(self, msg: Message) -> list[bytes]:
        """Frames for ``msg``, ready for ``send_multipart``."""
        return self.pack_frames(
            msg.header.to_dict(),
            msg.content,
            msg.parent_header,
            msg.metadata,
            identities=msg.identities,
            buffers=msg.buffers,
        )

    def pack_frames(
        self,
        header: dict[str, Any],
        content: dict[str, Any],
        parent_header: Header | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        identities: Sequence[bytes] = (),
        buffers: Sequence[bytes] = (),
    ) -> list[bytes]:
        """Frames for a message given as a header dict (what :meth:`serialize` does without
        building a :class:`~kernelsdk.protocol.Message` first: the kernel's hot path)."""
        pack = self.packer.pack
        parts = [
            pack(header),
            self._pack_parent(parent_header),
            pack(metadata) if metadata else self._empty,
            pack(content),
        ]
        return [*identities, DELIMITER, self.sign(parts), *parts, *buffers]

    def _pack_parent(self, parent: Header | None) -> bytes:
        # A request's busy, outputs, reply and idle all carry its header as parent: pack it
        # once per request, not once per message.
        if parent is None:
            return self._empty
        cached = self._last_parent
        if cached is not None and cached[0] is parent:
            return cached[1]
        packed = self.packer.pack(parent.to_dict())
        self._last_parent = (parent, packed)
        return packed

    def deserialize(self, frames: Sequence[bytes]) -> Message:
        """Verify and decode one multipart message.

        Raises:
            RemoteProtocolError: no delimiter, too few frames, a missing/invalid/replayed
                signature, undecodable frames, or fields of the wrong type. Nothing is
                recorded in the replay history unless the signature was valid.
        """
        try:
            split = frames.index(DELIMITER)
        except ValueError:
            raise RemoteProtocolError("no <IDS|MSG> delimiter frame") from None
        body = frames[split + 1 :]
        if len(body) < 5:
            raise RemoteProtocolError(
                f"malformed message: {len(body)} frames after <IDS|MSG>, at least 5 needed"
            )
        signature, parts, buffers = body[0], body[1:5], body[5:]
        if self._hmac is not None:
            self._verify(signature, parts)
        try:
            header, parent, metadata, content = (self.packer.unpack(p) for p in parts)
        except Exception as exc:  # any decoder error is the peer's garbage, not our bug
            raise RemoteProtocolError(f"undecodable message ({self.packer.name}): {exc}") from None
        for name, value in (
            ("parent_header", parent),
            ("metadata", metadata),
            ("content", content),
        ):
            if not isinstance(value, dict):
                raise RemoteProtocolError(f"{name} must be a dict, not {type(value).__name__}")
        return Message(
            header=Header.from_dict(header),
            parent_header=Header.from_dict(parent) if parent else None,
            metadata=metadata,
            content=content,
            buffers=tuple(bytes(b) for b in buffers),
            identities=tuple(frames[:split]),
        )

    def _verify(self, signature: bytes, parts: Sequence[bytes]) -> None:
        if not signature:
            raise RemoteProtocolError("unsigned message (this kernel requires signatures)")
        if not hmac.compare_digest(signature, self.sign(parts)):
            raise RemoteProtocolError("invalid signature")
        if self._history_size <= 0:
            return
        if signature in self._seen:
            raise RemoteProtocolError("replayed message (duplicate signature)")
        self._seen.add(signature)
        self._seen_order.append(signature)
        if len(self._seen_order) > self._history_size:
            self._seen.discard(self._seen_order.popleft())
