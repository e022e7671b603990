"""Packers turn a header/parent/metadata/content dict into bytes and back.

Both ends of a connection must use the same packer: the protocol has no negotiation. JSON is the
default everywhere; msgpack matches jupyter_client's ``Session(packer="msgpack")``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Final, final

import attrs

from ._exceptions import ConfigError


def _default(obj: object) -> object:
    """Values JSON and msgpack have no type for, converted the way jupyter_client does."""
    if isinstance(obj, datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=UTC)
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not serializable in a Jupyter message")


def _finite(obj: Any) -> Any:
    """Replace NaN and infinities, which JSON cannot carry, by their repr (as jupyter_client)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_default).encode
_dumps_ascii = json.JSONEncoder(ensure_ascii=True, allow_nan=False, default=_default).encode
_loads = json.JSONDecoder().decode
# A \uD800-\uDFFF escape: either half of a surrogate pair, or a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def json_pack(obj: object) -> bytes:
    try:
        text = _dumps(obj)
    except ValueError:  # a NaN or infinity somewhere: the rare slow path
        obj = _finite(obj)
        text = _dumps(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a native string decoded with surrogateescape, say): UTF-8
        # cannot carry it, but a JSON \\u escape can, and every client decodes that.
        return _dumps_ascii(obj).encode("ascii")


def json_unpack(data: bytes) -> Any:
    obj = _loads(data.decode("utf-8"))
    if _SURROGATE_ESCAPE.search(data) is not None:
        # Paired escapes decode to one character; a lone one leaves a surrogate that no
        # UTF-8 encoder accepts, so a message echoing it (as a parent header) could not be
        # sent. Reject it here, where it is still just remote garbage.
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return obj


def msgpack_pack(obj: object) -> bytes:
    import msgpack

    packed: bytes = msgpack.packb(obj, default=_msgpack_default)
    return packed


def _msgpack_default(obj: object) -> object:
    if isinstance(obj, bytearray | memoryview):
        return bytes(obj)
    return _default(obj)


def msgpack_unpack(data: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(data)


@final
@attrs.frozen
class Packer:
    """A named pair of functions: ``pack(obj) -> bytes`` and ``unpack(bytes) -> obj``."""

    name: str
    pack: Callable[[object], bytes]
    unpack: Callable[[bytes], Any]


JSON: Final = Packer("json", json_pack, json_unpack)
MSGPACK: Final = Packer("msgpack", msgpack_pack, msgpack_unpack)
_PACKERS: Final = {"json": JSON, "msgpack": MSGPACK}


def get_packer(name: str) -> Packer:
    """Return the packer called ``name`` (``"json"`` or ``"msgpack"``).

    Raises:
        ConfigError: unknown name.
    """
    try:
        return _PACKERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown packer {name!r}; choose one of {', '.join(sorted(_PACKERS))}"
        ) from None
