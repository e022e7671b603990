"""What several areas of checks share: how a check fails with the problems it found (``expect``),
the ``status: ok`` of a reply (``status_ok``), busy/idle around a request (``bracket``), IOPub
published after idle (``late_outputs``), protocol versions (``version_tuple``), and the marker and
waiting time of optional messages.
"""

from __future__ import annotations

import time
from typing import Any

from .._client import KernelClient, Msg, is_status
from .._registry import Fail

MARK = "kernelsdk-conformance"
#: how long to wait for the reply to an optional message type before deciding it is unhandled
OPTIONAL_WAIT = 5.0


def expect(problems: list[str], what: str) -> None:
    if problems:
        raise Fail(f"{what}: " + "; ".join(problems))


def status_ok(reply: Msg, what: str) -> None:
    status = reply.content.get("status") if isinstance(reply.content, dict) else None
    if status != "ok":
        evalue = reply.content.get("evalue", "") if isinstance(reply.content, dict) else ""
        raise Fail(f"{what}: reply status {status!r} (expected 'ok') {evalue}".rstrip())


def bracket(msgs: list[Msg], what: str) -> list[str]:
    """busy first, idle last, exactly once each."""
    problems = []
    kinds = [m.describe() for m in msgs]
    if not msgs or not is_status(msgs[0], "busy"):
        problems.append(f"{what}: first IOPub message is not status busy ({kinds})")
    if not msgs or not is_status(msgs[-1], "idle"):
        problems.append(f"{what}: last IOPub message is not status idle ({kinds})")
    busy = sum(is_status(m, "busy") for m in msgs)
    idle = sum(is_status(m, "idle") for m in msgs)
    if busy != 1 or idle != 1:
        problems.append(f"{what}: {busy} busy and {idle} idle statuses ({kinds})")
    return problems


def late_outputs(kc: KernelClient, parent_id: str, quiet: float = 0.5) -> list[Msg]:
    """IOPub messages for ``parent_id`` arriving after its idle (within ``quiet`` s)."""
    late = []
    deadline = time.monotonic() + quiet
    while (remaining := deadline - time.monotonic()) > 0:
        msg = kc.recv_iopub(remaining)
        if msg is None:
            break
        if msg.parent_id == parent_id:
            late.append(msg)
    return late


def version_tuple(version: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(version).split(".")[:2])
    except ValueError:
        return None
