"""Reports: a terminal table, Markdown and JSON."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections import Counter
from collections.abc import Sequence

from ._runner import Result

MARKS = {"pass": "PASS", "fail": "FAIL", "skip": "skip", "error": "ERROR"}


def exit_status(results: Sequence[Result]) -> int:
    """1 if any check failed or errored, else 0."""
    return 1 if any(r.status in ("fail", "error") for r in results) else 0


def summary(results: Sequence[Result]) -> str:
    counts = Counter(r.status for r in results)
    return ", ".join(f"{counts[s]} {s}" for s in ("pass", "fail", "skip", "error") if counts[s])


def table_row(result: Result, width: int | None = None) -> str:
    width = width or shutil.get_terminal_size((100, 20)).columns
    head = f"{MARKS[result.status]:<5} {result.name:<25} "
    body = textwrap.wrap(result.message, max(30, width - len(head))) or [""]
    pad = " " * len(head)
    return "\n".join([head + body[0], *(pad + line for line in body[1:])])


def as_table(results: Sequence[Result], kernel: str = "") -> str:
    lines = [f"Conformance of kernel {kernel!r}" if kernel else "Conformance"]
    lines += [table_row(r) for r in results]
    lines.append(summary(results))
    return "\n".join(lines)


def as_markdown(results: Sequence[Result], kernel: str = "") -> str:
    lines = ["| check | result | details |", "|---|---|---|"]
    if kernel:
        lines.insert(0, f"Kernel `{kernel}`: {summary(results)}\n")
    for r in results:
        message = r.message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{r.name}` | {MARKS[r.status]} | {message} |")
    return "\n".join(lines)


def as_json(results: Sequence[Result], kernel: str = "") -> str:
    return json.dumps(
        {"kernel": kernel, "summary": summary(results), "results": [r.to_dict() for r in results]},
        indent=1,
    )


def format_results(results: Sequence[Result], fmt: str = "table", kernel: str = "") -> str:
    """The results as ``table``, ``markdown`` or ``json``."""
    formats = {"table": as_table, "markdown": as_markdown, "json": as_json}
    return formats[fmt](results, kernel)
