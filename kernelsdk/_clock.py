"""The wall clock, kept out of the sans-IO core: drivers pass it in."""

import time


class UtcClock:
    """The current time as jupyter_client writes it: ISO 8601, UTC, microseconds, ``Z``.

    Every message header carries the time. Formatting it through :mod:`datetime` costs a few
    microseconds per message, so this formats the date and the second once per second and
    appends the microseconds. One instance per kernel (it caches; it is not meant to be
    shared between threads).
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self) -> str:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{nanos // 1000:06d}Z"
