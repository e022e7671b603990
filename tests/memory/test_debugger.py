"""The debug protocol through the full kernel in memory: what the SDK answers itself
(debugInfo, dumpCell, initialize, attach, configurationDone, disconnect, source), what it
passes to a kernel's Debugger, the events and the stopped threads, and that a stopped cell
never wedges the kernel (control, comms, interrupts, a disconnect).

``Steps`` runs cells of ``name = value`` lines; its debugger stops a cell on a breakpoint
line until told to resume, as a real language's would (the Lua kernel's, over sockets, is
tests/test_lua_debugger.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from kernelsdk import BaseKernel, Debugger, DebuggerError, ExecuteContext, ExecutionError
from kernelsdk._dap import HASH_SEED, cell_file_name, murmur2
from kernelsdk.protocol import Channel, Message, interrupt_error
from kernelsdk.testing import TestClient, open_test_kernel

from .conftest import Scripted, check_reply


class StepsDebugger(Debugger):
    exception_filters = [{"filter": "errors", "label": "Errors", "default": False}]
    exception_paths = ["Steps errors"]

    def __init__(self, kernel: Steps) -> None:
        super().__init__(kernel)
        self.steps = kernel
        self.breakpoints: dict[str, set[int]] = {}
        self.resumed = trio.Event()
        self.resumes: list[str] = []
        self.stopped_at: tuple[str, int] | None = None
        self.started = self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1
        self.breakpoints.clear()
        self.resumed.set()

    async def set_breakpoints(
        self, path: str, breakpoints: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        self.breakpoints[path] = {b["line"] for b in breakpoints}
        return [{"verified": True, "line": b["line"]} for b in breakpoints]

    async def stack_trace(
        self, thread_id: int, start_frame: int, levels: int | None
    ) -> list[dict[str, Any]]:
        if self.stopped_at is None:
            raise DebuggerError("not stopped")
        path, line = self.stopped_at
        return [{"id": 1, "name": "cell", "line": line, "column": 1, "source": {"path": path}}]

    async def scopes(self, frame_id: int) -> list[dict[str, Any]]:
        return [{"name": "Locals", "variablesReference": 1, "expensive": False}]

    async def variables(
        self, reference: int, start: int | None, count: int | None
    ) -> list[dict[str, Any]]:
        return [
            {"name": k, "value": v, "type": "str", "variablesReference": 0}
            for k, v in self.steps.names.items()
        ]

    async def resume(self, thread_id: int, kind: Any) -> None:
        if self.stopped_at is None:
            raise DebuggerError("no thread is stopped")
        self.resumes.append(kind)
        self.resumed.set()

    async def evaluate(self, expression: str, frame_id: int | None, context: str) -> dict[str, Any]:
        if expression == "boom":
            raise ValueError("kaboom")
        return {"result": self.steps.names.get(expression, "nil"), "variablesReference": 0}

    async def inspect_variables(self) -> list[dict[str, Any]]:
        return await self.variables(1, None, None)

    async def request(self, command: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if command == "hang":  # a debugger stuck in its runtime
            await trio.sleep_forever()
        return await super().request(command, arguments)

    async def hit(self, path: str, line: int) -> None:
        """Called by the cell before each line: stop there while a breakpoint says so."""
        if line not in self.breakpoints.get(path, ()):
            return
        self.stopped_at = (path, line)
        self.resumed = trio.Event()
        self.send_event("stopped", {"reason": "breakpoint", "threadId": 1})
        try:
            await self.resumed.wait()
        finally:
            self.stopped_at = None
        self.send_event("continued", {"threadId": 1, "allThreadsContinued": True})


class Steps(BaseKernel):
    implementation = "steps"
    language_info = {"name": "steps", "mimetype": "text/plain", "file_extension": ".steps"}
    debugger_class = StepsDebugger

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}

    @property
    def dbg(self) -> StepsDebugger:
        assert isinstance(self.debugger, StepsDebugger)
        return self.debugger

    async def do_execute(self, code: str, ctx: ExecuteContext) -> Any:
        path = self.dbg.cell_path(code)
        for number, line in enumerate(code.splitlines(), 1):
            await self.dbg.hit(path, number)
            name, _, value = line.partition("=")
            self.names[name.strip()] = value.strip()
        return None


async def dap(client: TestClient, command: str, **arguments: Any) -> dict[str, Any]:
    """One DAP request through debug_request on control; its DAP response."""
    seq = dap.seq = getattr(dap, "seq", 0) + 1  # type: ignore[attr-defined]
    content = {"type": "request", "seq": seq, "command": command, "arguments": arguments}
    msg_id = client.send("debug_request", content, Channel.CONTROL)
    result = await client.collect(msg_id, Channel.CONTROL)
    check_reply(result, msg_id, "debug_reply")
    reply = result.reply.content
    assert (reply["type"], reply["request_seq"], reply["command"]) == ("response", seq, command)
    return reply


async def next_event(client: TestClient, name: str) -> Message:
    while True:
        msg = await client.receive(Channel.IOPUB)
        if msg.msg_type == "debug_event" and msg.content["event"] == name:
            return msg


def test_murmur2_matches_ipykernel_and_known_values() -> None:
    """JupyterLab names a cell's file by murmur2 of its UTF-8 bytes (hash.ts); ipykernel's
    compiler computes the same function, so its values are the reference."""
    from ipykernel.compiler import murmur2_x86

    for text in ["", "a", "ab", "abc", "abcd", "x = 1\n", "héllo wörld 日本語 🙂", "z" * 1027]:
        assert murmur2(text, HASH_SEED) == murmur2_x86(text, HASH_SEED), text
    assert murmur2("", 0) == 0
    assert cell_file_name("a", "/t/", ".lua", 0) == f"/t/{murmur2('a', 0)}.lua"


async def test_debug_info_before_the_debugger_starts() -> None:
    async with open_test_kernel(Steps()) as client:
        info = (await client.request("kernel_info_request")).reply.content
        assert info["debugger"] is True and "debugger" in info["supported_features"]
        reply = await dap(client, "debugInfo")
        assert reply["success"] is True
        body = reply["body"]
        assert body["isStarted"] is False
        assert body["hashMethod"] == "Murmur2" and body["hashSeed"] == HASH_SEED
        assert body["tmpFilePrefix"].endswith("/") and "steps" in body["tmpFilePrefix"]
        assert body["tmpFileSuffix"] == ".steps"
        assert body["breakpoints"] == [] and body["stoppedThreads"] == []
        assert body["exceptionPaths"] == ["Steps errors"]
        # Requests that need the debugger are refused until initialize, with a reason.
        refused = await dap(client, "stackTrace", threadId=1)
        assert refused["success"] is False and "initialize" in refused["message"]


async def test_dump_cell_writes_the_file_jupyterlab_names() -> None:
    kernel = Steps()
    async with open_test_kernel(kernel) as client:
        info = (await dap(client, "debugInfo"))["body"]
        code = "a = 1\nb = ü\n"
        reply = await dap(client, "dumpCell", code=code)
        path = reply["body"]["sourcePath"]
        seed = info["hashSeed"]
        assert path == f"{info['tmpFilePrefix']}{murmur2(code, seed)}{info['tmpFileSuffix']}"
        assert Path(path).read_bytes() == code.encode()
        assert Path(path).parent.stat().st_mode & 0o777 == 0o700
        source = await dap(client, "source", source={"path": path})
        assert source["body"]["content"] == code
        missing = await dap(client, "source", source={"path": path + ".gone"})
        assert missing["success"] is False
        bad = await dap(client, "dumpCell")
        assert bad["success"] is False and "code" in bad["message"]
        await client.request("shutdown_request", {"restart": False}, Channel.CONTROL)
    assert not Path(path).exists()  # the directory goes with the kernel process


async def test_a_breakpoint_stops_the_cell_and_the_kernel_stays_responsive() -> None:
    kernel = Steps()
    async with open_test_kernel(kernel) as client:
        init = await dap(client, "initialize", clientID="test", adapterID="steps")
        assert init["success"] is True
        assert init["body"]["supportsConfigurationDoneRequest"] is True
        assert init["body"]["exceptionBreakpointFilters"][0]["filter"] == "errors"
        assert (await dap(client, "attach"))["success"] is True
        code = "a = 1\nb = 2\nc = 3\n"
        path = (await dap(client, "dumpCell", code=code))["body"]["sourcePath"]
        bps = await dap(client, "setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
        assert bps["body"]["breakpoints"] == [
            {"verified": True, "line": 2, "source": {"path": path}}
        ]
        assert (await dap(client, "configurationDone"))["success"] is True
        info = (await dap(client, "debugInfo"))["body"]
        assert info["isStarted"] is True
        assert info["breakpoints"] == [{"source": path, "breakpoints": [{"line": 2}]}]

        cell = client.send("execute_request", {"code": code, "silent": False})
        stopped = await next_event(client, "stopped")
        assert stopped.content["body"] == {"reason": "breakpoint", "threadId": 1}
        assert stopped.content["type"] == "event"
        assert (await dap(client, "debugInfo"))["body"]["stoppedThreads"] == [1]
        frames = (await dap(client, "stackTrace", threadId=1))["body"]["stackFrames"]
        assert frames[0]["source"]["path"] == path and frames[0]["line"] == 2
        scopes = (await dap(client, "scopes", frameId=1))["body"]["scopes"]
        reference = scopes[0]["variablesReference"]
        variables = await dap(client, "variables", variablesReference=reference)
        assert variables["body"]["variables"][0]["name"] == "a"
        assert (await dap(client, "evaluate", expression="a", frameId=1))["body"]["result"] == "1"
        # A debugger method that raises fails its request, and nothing else.
        boom = await dap(client, "evaluate", expression="boom", frameId=1)
        assert boom["success"] is False and "kaboom" in boom["message"]

        # Stopped: control answers, comms on shell are handled, the heartbeat is not ours.
        info_reply = await client.request("kernel_info_request", {}, Channel.CONTROL)
        assert info_reply.reply.content["status"] == "ok"
        comms = await client.request("comm_info_request", {}, Channel.CONTROL)
        assert comms.reply.content["status"] == "ok"

        cont = await dap(client, "continue", threadId=1)
        assert cont["success"] is True and kernel.dbg.resumes == ["continue"]
        await next_event(client, "continued")
        result = await client.collect(cell)
        assert result.reply.content["status"] == "ok"
        assert kernel.names == {"a": "1", "b": "2", "c": "3"}
        assert (await dap(client, "debugInfo"))["body"]["stoppedThreads"] == []


async def test_disconnect_releases_a_stopped_cell_and_forgets_breakpoints() -> None:
    kernel = Steps()
    async with open_test_kernel(kernel) as client:
        await dap(client, "initialize")
        code = "a = 1\nb = 2\n"
        path = kernel.dbg.cell_path(code)
        await dap(client, "setBreakpoints", source={"path": path}, breakpoints=[{"line": 1}])
        cell = client.send("execute_request", {"code": code, "silent": False})
        await next_event(client, "stopped")
        assert (await dap(client, "disconnect", restart=False))["success"] is True
        assert (await client.collect(cell)).reply.content["status"] == "ok"
        info = (await dap(client, "debugInfo"))["body"]
        assert info == {**info, "isStarted": False, "breakpoints": [], "stoppedThreads": []}
        assert kernel.dbg.stopped == 1
        # Started again, it starts afresh.
        await dap(client, "initialize")
        assert kernel.dbg.started == 2


async def test_an_interrupt_reaches_a_stopped_cell() -> None:
    class Interruptible(Steps):
        def do_interrupt(self) -> None:
            self.dbg.resumed.set()  # what a real kernel's interrupt does: release, then stop

        async def do_execute(self, code: str, ctx: ExecuteContext) -> Any:
            await super().do_execute(code, ctx)
            raise ExecutionError(**interrupt_error())

    kernel = Interruptible()
    async with open_test_kernel(kernel) as client:
        await dap(client, "initialize")
        code = "a = 1\n"
        await dap(
            client,
            "setBreakpoints",
            source={"path": kernel.dbg.cell_path(code)},
            breakpoints=[{"line": 1}],
        )
        cell = client.send("execute_request", {"code": code, "silent": False})
        await next_event(client, "stopped")
        await client.request("interrupt_request", {}, Channel.CONTROL)
        result = await client.collect(cell)
        assert result.reply.content["ename"] == "KeyboardInterrupt"


async def test_a_hung_debugger_holds_up_only_debug_requests() -> None:
    async with open_test_kernel(Steps()) as client:
        await dap(client, "initialize")
        seq = 999
        content = {"type": "request", "seq": seq, "command": "hang", "arguments": {}}
        client.send("debug_request", content, Channel.CONTROL)
        for msg_type in ("kernel_info_request", "interrupt_request"):
            reply = await client.request(msg_type, {}, Channel.CONTROL)
            assert reply.reply.content["status"] == "ok"
        assert (await client.execute("x = 1")).reply.content["status"] == "ok"


async def test_unknown_and_malformed_requests_fail_with_a_reason() -> None:
    async with open_test_kernel(Steps()) as client:
        await dap(client, "initialize")
        unknown = await dap(client, "setFunctionBreakpoints", breakpoints=[])
        assert unknown["success"] is False and "setFunctionBreakpoints" in unknown["message"]
        for content in ({"type": "event", "seq": 1, "command": "x"}, {"type": "request"}):
            msg_id = client.send("debug_request", content, Channel.CONTROL)
            reply = (await client.collect(msg_id, Channel.CONTROL)).reply.content
            assert reply["success"] is False and reply["type"] == "response"


async def test_a_kernel_without_a_debugger_answers_every_request() -> None:
    """Not claimed, not wedged: JupyterLab sends debugInfo to any kernel whose kernelspec it
    cannot find and waits for the reply before anything else."""
    async with open_test_kernel(Scripted()) as client:
        info = (await client.request("kernel_info_request")).reply.content
        assert info["debugger"] is False and "debugger" not in info["supported_features"]
        reply = await dap(client, "debugInfo")
        assert reply["success"] is True and reply["body"]["isStarted"] is False
        for command in ("initialize", "dumpCell", "inspectVariables"):
            refused = await dap(client, command, code="x")
            assert refused["success"] is False and "no debugger" in refused["message"]
        assert (await client.execute("print hi")).stdout == "hi\n"
