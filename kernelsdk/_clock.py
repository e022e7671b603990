"""The wall clock, kept out of the sans-IO core: drivers pass it in."""

from datetime import UTC, datetime


def utc_now() -> str:
    """The current time as jupyter_client writes it: ISO 8601, UTC, microseconds, ``Z``."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
