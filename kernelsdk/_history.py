"""The default execution history: in memory, answering tail, range and search requests."""

from __future__ import annotations

import fnmatch
from typing import Any, final

import attrs

#: The history of this kernel process is session 1; 0 and negative numbers mean "current".
SESSION = 1


@final
@attrs.frozen
class HistoryEntry:
    line: int
    input: str
    output: str | None = None

    def as_reply_item(self, output: bool) -> list[Any]:
        if output:
            return [SESSION, self.line, [self.input, self.output]]
        return [SESSION, self.line, self.input]


class InMemoryHistory:
    """Inputs (and their ``text/plain`` results) of the ``store_history`` executions."""

    def __init__(self) -> None:
        self._entries: list[HistoryEntry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, line: int, code: str, output: str | None = None) -> None:
        self._entries.append(HistoryEntry(line, code, output))

    def tail(self, n: int) -> list[HistoryEntry]:
        return self._entries[-n:] if n > 0 else []

    def range(self, session: int, start: int, stop: int | None) -> list[HistoryEntry]:
        if session not in (0, SESSION) and session >= 0:
            return []
        return [e for e in self._entries if e.line >= start and (stop is None or e.line < stop)]

    def search(self, pattern: str, n: int | None, unique: bool) -> list[HistoryEntry]:
        matches = [e for e in self._entries if fnmatch.fnmatchcase(e.input, pattern)]
        if unique:
            # Keep the latest occurrence of each input, in order.
            seen: set[str] = set()
            kept = []
            for e in reversed(matches):
                if e.input not in seen:
                    seen.add(e.input)
                    kept.append(e)
            matches = kept[::-1]
        return matches[-n:] if n else matches
