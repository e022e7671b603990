"""The Debug Adapter Protocol inside Jupyter messages (messaging 5.5, "Debug request"), sans-IO.

A ``debug_request`` (control) carries one DAP request as its content, its ``debug_reply`` one
DAP response, and a ``debug_event`` (IOPub) one DAP event. This module holds the rules that do
not depend on the kernel's language:

* the shape of a DAP request this kernel accepts (:func:`parse_request`), of its response
  (:func:`response`) and of an event (:func:`event`);
* how a frontend names the file of a cell (:func:`cell_file_name`): JupyterLab computes the
  name itself, from the ``hashMethod``, ``hashSeed``, ``tmpFilePrefix`` and ``tmpFileSuffix``
  the kernel's ``debugInfo`` reply gave it, and then finds the cell of a stack frame or
  breakpoint by that name, so the kernel must compute exactly the same one
  (``packages/debugger/src/hash.ts`` and ``config.ts``: ``prefix + murmur2(code, seed) +
  suffix``, the hash of the code's UTF-8 bytes printed in decimal).

No I/O, no clock: :mod:`kernelsdk._debug_session` writes the files and sends the messages.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final, final

import attrs

#: The only ``hashMethod`` JupyterLab knows (``DebuggerConfig.setHashParams``).
HASH_METHOD: Final = "Murmur2"
#: The seed kernelsdk's kernels announce in ``debugInfo`` (ipykernel's: any seed works, the
#: frontend uses the one it is given).
HASH_SEED: Final = 0xC70F6907

_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(text: str, seed: int) -> int:
    """MurmurHash2 (32 bits) of ``text``'s UTF-8 bytes: what JupyterLab's ``murmur2`` returns."""
    data = text.encode("utf-8")
    length = len(data)
    h = (seed ^ length) & _MASK
    aligned = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:aligned]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest:
        tail = data[aligned:]
        if rest == 3:
            h ^= tail[2] << 16
        if rest >= 2:
            h ^= tail[1] << 8
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def cell_file_name(code: str, prefix: str, suffix: str, seed: int = HASH_SEED) -> str:
    """The file a frontend expects the cell ``code`` in (JupyterLab's ``getCodeId``)."""
    return f"{prefix}{murmur2(code, seed)}{suffix}"


@final
@attrs.frozen
class DapRequest:
    """One DAP request, from a ``debug_request``'s content."""

    seq: int
    command: str
    arguments: dict[str, Any]


def parse_request(content: Mapping[str, Any]) -> DapRequest | str:
    """The DAP request in a ``debug_request``'s content, or why it is none (a string).

    DAP asks for ``type: "request"``, an integer ``seq`` and a string ``command``;
    ``arguments`` is optional (an object). JupyterLab's first ``debugInfo`` has no arguments.
    """
    seq, command, arguments = content.get("seq"), content.get("command"), content.get("arguments")
    if content.get("type") != "request":
        return "a debug_request's content must be a DAP request (type 'request')"
    if not isinstance(command, str) or not command:
        return "a DAP request needs a 'command' string"
    if isinstance(seq, bool) or not isinstance(seq, int):
        return "a DAP request needs an integer 'seq'"
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return "a DAP request's 'arguments' must be an object"
    return DapRequest(seq, command, arguments)


def response(
    seq: int,
    request_seq: int,
    command: str,
    *,
    body: Mapping[str, Any] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A DAP response: ``success`` is false exactly when ``message`` (why) is given.

    ``body`` is always present, ``{}`` when empty: JupyterLab reads ``reply.body.<field>``
    without checking, even of a failed response.
    """
    content: dict[str, Any] = {
        "seq": seq,
        "type": "response",
        "request_seq": request_seq,
        "success": message is None,
        "command": command,
        "body": dict(body or {}),
    }
    if message is not None:
        content["message"] = message
    return content


def event(seq: int, name: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A DAP event (the content of a ``debug_event``)."""
    return {"seq": seq, "type": "event", "event": name, "body": dict(body or {})}
