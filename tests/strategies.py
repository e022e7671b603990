"""Hypothesis strategies for kernelsdk's wire-level tests.

Everything here produces values that both packers (JSON and msgpack) round-trip exactly:
text without lone surrogates, 64-bit integers, finite floats, lists (never tuples) and dicts
with text keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from kernelsdk.protocol import DELIMITER, PROTOCOL_VERSION, Header

#: Unicode text without surrogate code points (they cannot be encoded as UTF-8).
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
nonempty_text = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30)

#: Integers both packers carry exactly (msgpack is limited to 64 bits).
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)

json_scalars = st.none() | st.booleans() | ints | finite_floats | text

#: Any JSON-able value: scalars, lists and text-keyed dicts, nested.
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=20,
)

#: A message content / metadata dict.
content_dicts = st.dictionaries(text, json_values, max_size=6)

timezones = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=timezones
)


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


#: ISO 8601 date strings with a timezone, as they appear in headers.
iso_dates = aware_datetimes.map(_iso)

versions = st.sampled_from([PROTOCOL_VERSION, "5.0", "5.3", "5.4"])


@st.composite
def header_dicts(draw: st.DrawFn, msg_type: str | None = None) -> dict[str, Any]:
    """A decoded header as a client would send it (sometimes with a subshell id or extras)."""
    d: dict[str, Any] = {
        "msg_id": draw(nonempty_text),
        "msg_type": msg_type if msg_type is not None else draw(nonempty_text),
        "session": draw(text),
        "username": draw(text),
        "date": draw(iso_dates),
        "version": draw(versions),
    }
    if draw(st.booleans()):
        d["subshell_id"] = draw(text)
    extra = draw(
        st.dictionaries(
            text.filter(lambda k: k not in d and k != "subshell_id"), json_values, max_size=2
        )
    )
    d.update(extra)
    return d


def headers(msg_type: str | None = None) -> st.SearchStrategy[Header]:
    """:class:`kernelsdk.protocol.Header` objects."""
    return header_dicts(msg_type).map(Header.from_dict)


#: Binary buffers (never signed).
buffers = st.lists(st.binary(max_size=64), max_size=3)

#: Arbitrary binary frames, sometimes the delimiter itself.
frames = st.binary(max_size=40) | st.just(DELIMITER) | st.just(b"") | st.just(b"{}")

#: Arbitrary multipart messages (lists of frames), garbage on purpose.
frame_lists = st.lists(frames, max_size=9)


@st.composite
def delimited_frame_lists(draw: st.DrawFn) -> list[bytes]:
    """Garbage that at least has identities, a delimiter and five or more frames after it."""
    idents = draw(st.lists(st.binary(max_size=8).filter(lambda b: b != DELIMITER), max_size=2))
    body = draw(st.lists(frames, min_size=5, max_size=8))
    return [*idents, DELIMITER, *body]
