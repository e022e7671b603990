"""The message model: a header, a parent header, metadata, content and binary buffers.

These are small frozen attrs classes. They carry already-decoded Python values; turning them
into frames and back (packing, signing, verifying) is :mod:`kernelsdk._session`'s job.
"""

from __future__ import annotations

from typing import Any, Final, final

import attrs

from ._exceptions import RemoteProtocolError
from ._version import PROTOCOL_VERSION

#: Header keys with a field of their own; any other key a client sends is kept in ``extra``.
_HEADER_FIELDS: Final = ("msg_id", "msg_type", "session", "username", "date", "version")


@final
@attrs.frozen
class Header:
    """A message header (messaging protocol 5.5).

    ``date`` is an ISO 8601 string with a timezone, as it is on the wire. ``extra`` keeps keys
    this version does not model, so a parent header is echoed back to the client unchanged.
    """

    msg_id: str
    msg_type: str
    session: str
    username: str = "kernel"
    date: str = ""
    version: str = PROTOCOL_VERSION
    subshell_id: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "msg_id": self.msg_id,
            "msg_type": self.msg_type,
            "session": self.session,
            "username": self.username,
            "date": self.date,
            "version": self.version,
        }
        if self.subshell_id is not None:
            d["subshell_id"] = self.subshell_id
        if self.extra:
            d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: object) -> Header:
        """Validate a decoded header.

        Raises:
            RemoteProtocolError: ``d`` is not a dict, lacks ``msg_id``/``msg_type``, or a known
                field has the wrong type. Missing ``session``, ``username``, ``date`` and
                ``version`` are tolerated (old clients omit some), with empty defaults.
        """
        if not isinstance(d, dict):
            raise RemoteProtocolError(f"header must be a dict, not {type(d).__name__}")
        for key in ("msg_id", "msg_type"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise RemoteProtocolError(f"header.{key} must be a non-empty string")
        for key in ("session", "username", "date", "version"):
            value = d.get(key, "")
            if not isinstance(value, str):
                raise RemoteProtocolError(f"header.{key} must be a string")
        subshell_id = d.get("subshell_id")
        if subshell_id is not None and not isinstance(subshell_id, str):
            raise RemoteProtocolError("header.subshell_id must be a string or null")
        extra = {k: v for k, v in d.items() if k not in _HEADER_FIELDS and k != "subshell_id"}
        return cls(
            msg_id=d["msg_id"],
            msg_type=d["msg_type"],
            session=d.get("session", ""),
            username=d.get("username", ""),
            date=d.get("date", ""),
            version=d.get("version", ""),
            subshell_id=subshell_id,
            extra=extra,
        )


@final
@attrs.frozen
class Message:
    """One Jupyter message as the kernel sees it.

    ``identities`` are the routing frames before ``<IDS|MSG>`` (ROUTER peers, or the IOPub
    topic). ``buffers`` are the raw binary frames after the content; they are never signed.
    """

    header: Header
    content: dict[str, Any] = attrs.field(factory=dict)
    parent_header: Header | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    buffers: tuple[bytes, ...] = ()
    identities: tuple[bytes, ...] = ()

    @property
    def msg_type(self) -> str:
        return self.header.msg_type

    @property
    def msg_id(self) -> str:
        return self.header.msg_id
