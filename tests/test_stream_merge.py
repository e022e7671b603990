"""Stream outputs merged in the IOPub queue (kernelsdk._stream_merge): order and text kept."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kernelsdk import Header, Message
from kernelsdk._stream_merge import MAX_STREAM_TEXT, merge_streams

PARENTS = [None, *(Message(Header(f"req-{i}", "execute_request", "s")) for i in range(2))]


@st.composite
def queued(draw: st.DrawFn) -> Any:
    parent = draw(st.sampled_from(PARENTS))
    kind = draw(st.sampled_from(["stdout", "stderr", "display", "with-metadata"]))
    size = draw(st.one_of(st.integers(0, 3), st.integers(20_000, 40_000)))
    text = draw(st.sampled_from("abc")) * size
    if kind == "display":
        return ("display_data", {"data": {"text/plain": text}}, parent, None, ())
    if kind == "with-metadata":
        return ("stream", {"name": "stdout", "text": text}, parent, {"m": 1}, ())
    return ("stream", {"name": kind, "text": text}, parent, None, ())


def collapse(items: list[Any]) -> list[Any]:
    """Adjacent plain streams of one name and parent joined, without any size limit."""
    out: list[Any] = []
    for item in items:
        plain = item[0] == "stream" and not item[3]
        if out and plain and out[-1][0] == "plain":
            _, name, parent, text = out[-1]
            if name == item[1]["name"] and parent is item[2]:
                out[-1] = ("plain", name, parent, text + item[1]["text"])
                continue
        out.append(("plain", item[1]["name"], item[2], item[1]["text"]) if plain else item)
    return out


@given(st.lists(queued(), max_size=30))
def test_merging_keeps_every_output_in_order(items: list[Any]) -> None:
    merged = list(merge_streams(iter(items)))
    assert collapse(merged) == collapse(items)
    others = [i for i in items if not (i[0] == "stream" and not i[3])]
    assert [i for i in merged if not (i[0] == "stream" and not i[3])] == others
    for item in merged:  # no single write exceeds the cap here, so no merged one may
        if item[0] == "stream":
            assert len(item[1]["text"]) <= MAX_STREAM_TEXT
    assert len(merged) <= len(items)


def test_adjacent_writes_merge_and_others_do_not() -> None:
    p = PARENTS[1]
    items = [
        ("stream", {"name": "stdout", "text": "a"}, p, None, ()),
        ("stream", {"name": "stdout", "text": "b"}, p, None, ()),
        ("stream", {"name": "stdout", "text": "c"}, PARENTS[2], None, ()),  # another request
        ("stream", {"name": "stdout", "text": "d"}, PARENTS[2], None, (b"buf",)),
    ]
    assert [i[1]["text"] for i in merge_streams(items)] == ["ab", "c", "d"]
