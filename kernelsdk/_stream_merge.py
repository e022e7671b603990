"""Merging stream outputs that wait next to each other in the IOPub queue into one message.

A loop that prints queues one ``stream`` output per call: 20,000 prints would be 20,000 IOPub
messages, each built, signed, sent, verified and rendered. The IOPub writer passes what is
queued when it runs through :func:`merge_streams`, so adjacent writes to the same stream for the
same request leave as one message. Nothing waits to be merged (unlike ipykernel's stdout
buffer, flushed every few milliseconds): the first output of a cell is never delayed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, TypeVar

from ._events import Output
from ._message import Message

#: Merged stream outputs stop growing at this many characters.
MAX_STREAM_TEXT: Final = 64 << 10

T = TypeVar("T")


def merge_streams(items: Iterable[T]) -> Iterator[T | Output]:
    """``items`` in order, with each run of plain ``stream`` outputs (no metadata, no buffers)
    of one stream name and one parent merged, up to :data:`MAX_STREAM_TEXT` characters.

    Reads one item ahead. Parents are compared by identity: a request's outputs share its
    message object.
    """
    run: _StreamRun | None = None
    for item in items:
        stream = _plain_stream(item)
        if run is not None:
            if stream is not None and run.takes(*stream):
                continue
            yield run.output()
            run = None
        if stream is None:
            yield item
        else:
            run = _StreamRun(*stream)
    if run is not None:
        yield run.output()


def _plain_stream(item: object) -> tuple[str, str, Message | None] | None:
    """(name, text, parent) of a queued stream output that may be merged."""
    if not (isinstance(item, Output) and item.msg_type == "stream"):
        return None
    content = item.content
    if item.metadata or item.buffers or len(content) != 2:
        return None
    name, text = content.get("name"), content.get("text")
    if not isinstance(name, str) or not isinstance(text, str):
        return None
    return name, text, item.parent


class _StreamRun:
    __slots__ = ("name", "parent", "size", "texts")

    def __init__(self, name: str, text: str, parent: Message | None) -> None:
        self.name = name
        self.parent = parent
        self.texts = [text]  # joined once, at the end: no quadratic concatenation
        self.size = len(text)

    def takes(self, name: str, text: str, parent: Message | None) -> bool:
        """Append ``text`` if it belongs to this run and fits; whether it did."""
        if name != self.name or parent is not self.parent:
            return False
        if self.size + len(text) > MAX_STREAM_TEXT:
            return False
        self.texts.append(text)
        self.size += len(text)
        return True

    def output(self) -> Output:
        return Output("stream", {"name": self.name, "text": "".join(self.texts)}, self.parent)
