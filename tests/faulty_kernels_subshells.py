"""Deliberately broken kernels for the conformance suite's subshell checks (JEP 91).

``FaultySubshellKernel`` is the probe kernel claiming subshells (``SubshellProbeKernel`` of
kernels_for_tests) with exactly one fault, chosen by the ``KSDK_FAULT`` environment variable
of its kernelspec, as in faulty_kernels.py:

    serial_subshells          claims subshells, but every subshell's requests join the main
                              shell's queue: all run one at a time
    unordered_subshell        each request of a subshell runs in a task of its own, so a
                              subshell's requests overlap instead of running in order
    parentless_subshell       IOPub messages of a subshell's requests lose the subshell_id of
                              their parent header (ipykernel #1414, #1564)
    unknown_runs_on_main      a request for an unknown subshell_id runs in the main shell
    list_keeps_deleted        a deleted subshell stays in list_subshell_reply
    interrupt_loses_subshells an interrupt forgets every subshell: their requests are refused
                              from then on
"""

from __future__ import annotations

import math
import os
from typing import Any

import attrs
import trio
from kernels_for_tests import SubshellProbeKernel

from kernelsdk import _events, _protocol, _server

FAULTS: dict[str, Any] = {}


def fault(name: str) -> Any:
    def register(fn: Any) -> Any:
        FAULTS[name] = fn
        return fn

    return register


@fault("serial_subshells")
def _serial_subshells() -> None:
    def open_subshell(self: _server.KernelServer, subshell_id: str) -> None:
        self._subshells[subshell_id] = self._shell_send  # the main shell's queue, no worker

    def close_subshell(self: _server.KernelServer, subshell_id: str) -> None:
        self._subshells.pop(subshell_id, None)  # the main shell's queue stays open

    _server.KernelServer.open_subshell = open_subshell  # type: ignore[method-assign]
    _server.KernelServer.close_subshell = close_subshell  # type: ignore[method-assign]


@fault("unordered_subshell")
def _unordered_subshell() -> None:
    def open_subshell(self: _server.KernelServer, subshell_id: str) -> None:
        send, recv = trio.open_memory_channel[Any](math.inf)
        self._subshells[subshell_id] = send

        async def each_in_a_task() -> None:
            assert self._nursery is not None
            async for _, req in recv:
                self._nursery.start_soon(self.handlers.handle, req)
                self._shell_pending -= 1

        assert self._nursery is not None
        self._nursery.start_soon(each_in_a_task)

    _server.KernelServer.open_subshell = open_subshell  # type: ignore[method-assign]


@fault("parentless_subshell")
def _parentless_subshell() -> None:
    original_init = _server.KernelServer.__init__

    def init(self: _server.KernelServer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        original = self.queue

        def queue(item: Any) -> None:
            parent = getattr(item, "parent", None)
            if (
                isinstance(item, _events.Output)
                and parent is not None
                and parent.header.subshell_id
            ):
                header = attrs.evolve(parent.header, subshell_id=None)
                item = item._replace(parent=attrs.evolve(parent, header=header))
            original(item)

        self.queue = queue

    _server.KernelServer.__init__ = init  # type: ignore[method-assign]


@fault("unknown_runs_on_main")
def _unknown_runs_on_main() -> None:
    def refuse(self: _server.KernelServer, req: Any) -> None:
        self._shell_pending += 1
        self._shell_send.send_nowait((self._last_comm_seq, req))

    _server.KernelServer._refuse = refuse  # type: ignore[method-assign]


@fault("list_keeps_deleted")
def _list_keeps_deleted() -> None:
    listed: list[str] = []
    original_create = _protocol.KernelProtocol.create_subshell

    def create_subshell(self: _protocol.KernelProtocol, request: Any, subshell_id: str) -> Any:
        listed.append(subshell_id)
        return original_create(self, request, subshell_id)

    def list_subshells(self: _protocol.KernelProtocol, request: Any) -> Any:
        return self.reply(request, {"status": "ok", "subshell_id": list(listed)})

    _protocol.KernelProtocol.create_subshell = create_subshell  # type: ignore[method-assign]
    _protocol.KernelProtocol.list_subshells = list_subshells  # type: ignore[method-assign]


@fault("interrupt_loses_subshells")
def _interrupt_loses_subshells() -> None:
    original = _server.KernelServer.interrupt

    def interrupt(self: _server.KernelServer) -> None:
        original(self)
        self._subshells.clear()

    _server.KernelServer.interrupt = interrupt  # type: ignore[method-assign]


class FaultySubshellKernel(SubshellProbeKernel):
    implementation = "faulty-subshell-probe"

    def __init__(self) -> None:
        name = os.environ.get("KSDK_FAULT", "")
        if name:
            FAULTS[name]()
        super().__init__()
