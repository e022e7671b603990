"""Deliberately broken debuggers for the conformance suite's debugger checks.

``FaultyDebuggerKernel`` is the Lua kernel (whose debugger passes the checks) with exactly one
fault, chosen by the ``KSDK_FAULT`` environment variable of its kernelspec, as in
faulty_kernels.py. The first two are what other kernels do, measured:

    silent_debugger       claims the debugger, never answers a debug_request (every kernel
                          on ipykernel's base without debugpy: bash_kernel, calysto_scheme)
    wedged_by_initialize  once initialize has started the debugger, no cell gets a reply
                          (kernmini's ipymini)
    wrong_cell_file       dumpCell writes the cell under another name than JupyterLab's (the
                          hash with seed 0, not the seed debugInfo announces)
    breakpoints_ignored   setBreakpoints is answered (verified) but no breakpoint ever stops
"""

from __future__ import annotations

import os
from typing import Any

import trio
from kernelsdk_lua import LuaKernel
from kernelsdk_lua._debugger import LuaDebugger

from kernelsdk import ExecuteContext, _debug_session, _handlers
from kernelsdk._dap import cell_file_name
from kernelsdk.protocol import Request

FAULTS: dict[str, Any] = {}


def fault(name: str) -> Any:
    def register(fn: Any) -> Any:
        FAULTS[name] = fn
        return fn

    return register


@fault("silent_debugger")
def _silent_debugger() -> None:
    async def _debug(self: _handlers.RequestHandlers, req: Request) -> None:
        return None  # busy and idle, no debug_reply

    _handlers.RequestHandlers._HANDLERS["debug_request"] = _debug


@fault("wedged_by_initialize")
def _wedged_by_initialize() -> None:
    execute = LuaKernel.do_execute

    async def do_execute(self: LuaKernel, code: str, ctx: ExecuteContext) -> Any:
        if self.lua_debugger.active:
            await trio.sleep_forever()
        return await execute(self, code, ctx)

    LuaKernel.do_execute = do_execute  # type: ignore[method-assign]


@fault("wrong_cell_file")
def _wrong_cell_file() -> None:
    def cell_path(self: _debug_session.DebugSession, code: str) -> str:
        return cell_file_name(code, self.prefix, self.suffix, 0)

    _debug_session.DebugSession.cell_path = cell_path  # type: ignore[method-assign]


@fault("breakpoints_ignored")
def _breakpoints_ignored() -> None:
    async def set_breakpoints(
        self: LuaDebugger, path: str, breakpoints: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return [{"verified": True, "line": bp["line"]} for bp in breakpoints]

    LuaDebugger.set_breakpoints = set_breakpoints  # type: ignore[method-assign]


class FaultyDebuggerKernel(LuaKernel):
    implementation = "faulty-debugger-lua"

    def __init__(self) -> None:
        name = os.environ.get("KSDK_FAULT", "")
        if name:
            FAULTS[name]()
        super().__init__()
