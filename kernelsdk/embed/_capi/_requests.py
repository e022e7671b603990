"""Requests as C sees them: a small integer per callback call, valid only while it runs.

A callback of a native kernel gets a request id; the output functions (``ksdk_stream``...)
take it back. Once the callback has returned, the id answers ``KSDK_EREQUEST``: output of a
request that has ended would land in the wrong cell, and a dangling pointer would crash.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._errors import EREQUEST, ApiError

if TYPE_CHECKING:
    from ..._context import ExecuteContext

Kind = Literal["execute", "complete", "inspect", "is_complete"]


@attrs.define(eq=False)
class Request:
    """What one callback call has produced so far."""

    id: int
    kind: Kind
    ctx: ExecuteContext | None = None
    active: bool = True
    interrupted: bool = False
    bundle: dict[str, Any] = attrs.field(factory=dict)
    error: tuple[str, str, list[str]] | None = None
    matches: list[str] = attrs.field(factory=list)
    match_range: tuple[int, int] | None = None
    indent: str = ""


class RequestTable:
    """The live requests of every native kernel of the process, by id (ids never reused)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._live: dict[int, Request] = {}
        self._lock = threading.Lock()

    def open(self, kind: Kind, ctx: ExecuteContext | None = None) -> Request:
        with self._lock:
            request = Request(next(self._ids), kind, ctx)
            self._live[request.id] = request
        return request

    def close(self, request: Request) -> None:
        with self._lock:
            request.active = False
            self._live.pop(request.id, None)

    def get(self, req: int, *kinds: Kind) -> Request:
        request = self._live.get(req)
        if request is None:
            raise ApiError(
                EREQUEST,
                f"request {req} is not running: output and input of a request are only "
                "possible while its callback runs",
            )
        if kinds and request.kind not in kinds:
            raise ApiError(
                EREQUEST, f"request {req} is a {request.kind} request, not {' or '.join(kinds)}"
            )
        return request
