"""Deliberately broken kernels for the conformance suite's lifecycle and verdict checks.

``FaultyLifecycleKernel`` is the probe kernel (see kernels_for_tests) with exactly one fault,
chosen by the ``KSDK_FAULT`` environment variable of its kernelspec, as in faulty_kernels.py:

    no_status_kernel_info     kernel_info_request gets its reply but no busy/idle on IOPub
    never_idle                no request ever gets its idle status (busy comes)
    input_survives_interrupt  an interrupt ends a cell waiting for input (reply, idle), but
                              its input stays pending: the next input_reply goes to it, it
                              prints, with the interrupted request's parent, after that
                              idle, and the next cell never gets its answer
    shutdown_hangs_in_input   shut down while a cell waits for input, the process never exits
    ignores_parent_death      the kernel watches no parent (neither JPY_PARENT_PID nor its
                              parent process), so it outlives its parent
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import trio
from kernels_for_tests import ProbeKernel

from kernelsdk import ExecuteContext, _events, _server

FAULT = os.environ.get("KSDK_FAULT", "")

if FAULT == "ignores_parent_death":
    # At import (before the runtime starts): the kernel watches no parent.
    os.environ.pop("JPY_PARENT_PID", None)
    with contextlib.suppress(ImportError):  # kernelsdk without parent watching ignores it anyway
        from kernelsdk import _parent

        _parent.ParentWatch.from_environment = classmethod(  # type: ignore[method-assign,assignment]
            lambda cls, environ=os.environ: None
        )


def _drop_status(drop: Any) -> None:
    # KernelServer.queue is bound per instance (the output channel's send_nowait): wrap it as
    # each server is made.
    original_init = _server.KernelServer.__init__

    def init(self: _server.KernelServer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        original = self.queue

        def queue(item: Any) -> None:
            if (
                isinstance(item, _events.Output)
                and item.msg_type == "status"
                and drop(item.content.get("execution_state"), item.parent)
            ):
                return
            original(item)

        self.queue = queue

    _server.KernelServer.__init__ = init  # type: ignore[method-assign]


def _input_survives_interrupt() -> None:
    """Below kernelsdk's guards (replies routed to the input_request they answer, output of
    an ended cell dropped): what a kernel without them does."""
    original_input = _server.KernelServer.request_input
    original_route = _server.KernelServer._route_input_reply

    async def input(self: Any, execution: Any, *args: Any) -> str:
        try:
            result: str = await original_input(self, execution, *args)
        except BaseException:  # interrupted: the old input keeps waiting
            self._stale_input = execution.request.message
            raise
        return result

    def route(self: Any, reply: Any) -> None:
        stale = getattr(self, "_stale_input", None)
        if stale is None:
            original_route(self, reply)
            return
        self._stale_input = None
        value = str(reply.message.content.get("value", ""))
        self.publish("stream", {"name": "stdout", "text": value + "\n"}, stale)

    _server.KernelServer.request_input = input  # type: ignore[method-assign]
    _server.KernelServer._route_input_reply = route  # type: ignore[method-assign]


def _apply(fault: str) -> None:
    if fault == "input_survives_interrupt":
        _input_survives_interrupt()
    elif fault == "no_status_kernel_info":
        _drop_status(lambda state, parent: getattr(parent, "msg_type", "") == "kernel_info_request")
    elif fault == "never_idle":
        _drop_status(lambda state, parent: state == "idle")


class FaultyLifecycleKernel(ProbeKernel):
    implementation = "faulty-lifecycle-probe"

    def __init__(self) -> None:
        _apply(FAULT)
        super().__init__()
        self._shutting_down = False

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str | None:
        command, _, arg = code.strip().partition(" ")
        if command == "input" and FAULT == "shutdown_hangs_in_input":
            try:
                ctx.print(await ctx.input(arg))
            except trio.Cancelled:
                if self._shutting_down:
                    with trio.CancelScope(shield=True):
                        await trio.sleep_forever()  # never lets the process exit
                raise
            return None
        return await super().do_execute(code, ctx)

    async def do_shutdown(self, restart: bool) -> None:
        self._shutting_down = True
        await super().do_shutdown(restart)
