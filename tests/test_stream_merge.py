"""Stream outputs merged in the IOPub queue (kernelsdk._stream_merge): order and text kept."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kernelsdk._events import Output
from kernelsdk._stream_merge import MAX_STREAM_TEXT, merge_streams
from kernelsdk.protocol import Header, Message

PARENTS = [None, *(Message(Header(f"req-{i}", "execute_request", "s")) for i in range(2))]


@st.composite
def queued(draw: st.DrawFn) -> Any:
    parent = draw(st.sampled_from(PARENTS))
    kind = draw(st.sampled_from(["stdout", "stderr", "display", "with-metadata"]))
    size = draw(st.one_of(st.integers(0, 3), st.integers(20_000, 40_000)))
    text = draw(st.sampled_from("abc")) * size
    if kind == "display":
        return Output("display_data", {"data": {"text/plain": text}}, parent)
    if kind == "with-metadata":
        return Output("stream", {"name": "stdout", "text": text}, parent, {"m": 1})
    return Output("stream", {"name": kind, "text": text}, parent)


def plain(item: Output) -> bool:
    return item.msg_type == "stream" and not item.metadata


def collapse(items: list[Output]) -> list[Any]:
    """Adjacent plain streams of one name and parent joined, without any size limit."""
    out: list[Any] = []
    for item in items:
        if out and plain(item) and not isinstance(out[-1], Output):  # a run collapsed here
            _, name, parent, text = out[-1]
            if name == item.content["name"] and parent is item.parent:
                out[-1] = ("plain", name, parent, text + item.content["text"])
                continue
        if plain(item):
            out.append(("plain", item.content["name"], item.parent, item.content["text"]))
        else:
            out.append(item)
    return out


@given(st.lists(queued(), max_size=30))
def test_merging_keeps_every_output_in_order(items: list[Output]) -> None:
    merged = list(merge_streams(iter(items)))
    assert collapse(merged) == collapse(items)
    assert [i for i in merged if not plain(i)] == [i for i in items if not plain(i)]
    for item in merged:  # no single write exceeds the cap here, so no merged one may
        if item.msg_type == "stream":
            assert len(item.content["text"]) <= MAX_STREAM_TEXT
    assert len(merged) <= len(items)


def test_adjacent_writes_merge_and_others_do_not() -> None:
    p = PARENTS[1]
    items = [
        Output("stream", {"name": "stdout", "text": "a"}, p),
        Output("stream", {"name": "stdout", "text": "b"}, p),
        Output("stream", {"name": "stdout", "text": "c"}, PARENTS[2]),  # another request
        Output("stream", {"name": "stdout", "text": "d"}, PARENTS[2], None, (b"buf",)),
    ]
    assert [i.content["text"] for i in merge_streams(items)] == ["ab", "c", "d"]
