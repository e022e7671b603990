"""Malformed messages for the robustness check, from a seed.

A seed makes a verdict reproducible (``--fuzz-seed``: the same messages in the same order),
and the generator is a plain :class:`random.Random` of the checking thread: nothing global, so
suites may run in parallel threads. (Hypothesis did this before; its test runner replays a
failing example and reports a *flaky* failure when the replay passes, which hid the error, and
its process-wide state is not made for several threads.)

Three kinds, as a client's bugs or an attacker make them:

* **signed garbage**: a header with any of its fields, each any JSON value (the ``msg_type``
  mostly a real request's, never a real ``shutdown_request``), and any JSON as parent,
  metadata and content, validly signed: it reaches the kernel's own checks;
* **raw frames**: up to 8 random byte strings, after the delimiter or not, unsigned;
* **undecodable**: four random byte strings, signed: not JSON, or not UTF-8.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Final

from .._client import DELIM

#: What a fuzzed header's msg_type mostly is: requests a kernel acts on.
MSG_TYPES: Final = (
    "execute_request",
    "kernel_info_request",
    "complete_request",
    "comm_open",
    "comm_msg",
    "inspect_request",
    "history_request",
    "interrupt_request",
    "input_reply",
    "is_complete_request",
    "shutdown_requesx",  # close to a shutdown, which would end the check
)
HEADER_FIELDS: Final = ("msg_id", "msg_type", "session", "username", "date", "version")
CHANNELS: Final = ("shell", "control")

#: Characters text is drawn from: ASCII, controls, Latin-1, lone surrogates (JSON escapes
#: them; a strict decoder refuses them), CJK, emoji.
_CODE_POINTS: Final = (
    (0x20, 0x7E),
    (0x00, 0x1F),
    (0xA0, 0xFF),
    (0xD800, 0xDFFF),
    (0x4E00, 0x4E80),
    (0x1F600, 0x1F640),
)
_INTS: Final = (0, -1, 1, 2**31, -(2**63), 2**64, 10**30)
_FLOATS: Final = (0.0, -0.0, 1e308, -5e-324, float("inf"), float("-inf"))

Signer = Callable[[Sequence[bytes]], bytes]


class MalformedMessages:
    """An endless supply of malformed messages: ``(channel, frames)``."""

    def __init__(self, seed: int, sign: Signer) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._sign = sign

    def next(self) -> tuple[str, list[bytes]]:
        rng = self._rng
        channel = rng.choice(CHANNELS)
        kind = rng.randrange(3)
        if kind == 0:
            parts = [self._dumps(self._header()), *(self._dumps(self._json()) for _ in range(3))]
            return channel, [DELIM, self._sign(parts), *parts]
        if kind == 1:
            frames = [self._bytes(64) for _ in range(rng.randrange(9))]
            frames = [DELIM, *frames] if rng.random() < 0.5 else frames
            return channel, frames or [b""]
        parts = [self._bytes(32) for _ in range(4)]
        return channel, [DELIM, self._sign(parts), *parts]

    # -- values ----------------------------------------------------------------------------

    def _header(self) -> dict[str, object]:
        rng = self._rng
        header: dict[str, object] = {}
        for field in HEADER_FIELDS:
            if rng.random() < 0.7:
                real_type = field == "msg_type" and rng.random() < 0.8
                header[field] = rng.choice(MSG_TYPES) if real_type else self._json()
        return header

    def _json(self, depth: int = 2) -> object:
        rng = self._rng
        shape = rng.randrange(4) if depth else 0
        if shape == 1:
            return [self._json(depth - 1) for _ in range(rng.randrange(4))]
        if shape == 2:
            return {self._text(8): self._json(depth - 1) for _ in range(rng.randrange(4))}
        kind = rng.randrange(5)
        if kind == 0:
            return None
        if kind == 1:
            return rng.random() < 0.5
        if kind == 2:
            return rng.choice(_INTS) if rng.random() < 0.5 else rng.randint(-(10**6), 10**6)
        if kind == 3:
            return rng.choice(_FLOATS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6)
        return self._text(12)

    def _text(self, longest: int) -> str:
        rng = self._rng
        chars = []
        for _ in range(rng.randrange(longest + 1)):
            low, high = rng.choice(_CODE_POINTS)
            chars.append(chr(rng.randint(low, high)))
        return "".join(chars)

    def _bytes(self, longest: int) -> bytes:
        return self._rng.randbytes(self._rng.randrange(longest + 1))

    @staticmethod
    def _dumps(value: object) -> bytes:
        # Infinity is not JSON, and exactly what a careless client sends.
        return json.dumps(value).encode("utf-8", "surrogatepass")
