"""The Lua kernel's debugger over real sockets, driven through DAP as JupyterLab drives it:
``debug_request`` on control through jupyter_client, ``debug_event`` read from IOPub.

Every request JupyterLab's debugger sends is here: debugInfo, initialize, attach, dumpCell,
setBreakpoints (with a condition, in a required file), setExceptionBreakpoints,
configurationDone, threads, stackTrace, scopes, variables, evaluate, next, stepIn, stepOut,
continue, pause, inspectVariables, richInspectVariables, source, disconnect; and what must
keep working while a cell is stopped (control requests, interrupts).

No assertion depends on time: a running loop ends when the test tells it to (a global it
sets by ``evaluate``), and "stopped" is an event the test waits for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import JupyterEnv, KernelPair, start_kernel_pair, stop_kernel_pair
from kernelsdk_lua import (
    Lua51Kernel,
    Lua52Kernel,
    Lua53Kernel,
    Lua55Kernel,
    LuaKernel,
    LuaNotFoundError,
)

from kernelsdk._dap import HASH_SEED, murmur2
from kernelsdk._install import kernelspec_for
from kernelsdk.protocol import Channel
from kernelsdk.testing import TestClient, open_test_kernel

TIMEOUT = 30  # only reached when something hangs


class Dap:
    """A DAP client over a kernel's control channel and IOPub (what JupyterLab's
    DebuggerSession does)."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.seq = 0
        self.iopub: list[dict[str, Any]] = []
        self._seen_events: set[str] = set()  # msg_ids of the debug_events returned

    def send(self, command: str, **arguments: Any) -> str:
        self.seq += 1
        content = {"type": "request", "seq": self.seq, "command": command, "arguments": arguments}
        msg = self.kc.session.msg("debug_request", content)
        self.kc.control_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def reply(self, msg_id: str, msg_type: str = "debug_reply") -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            msg = self.kc.get_control_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                assert msg["msg_type"] == msg_type
                return dict(msg["content"])

    def control(self, msg_type: str) -> dict[str, Any]:
        """A request on control (not a debug one); its reply's content."""
        msg = self.kc.session.msg(msg_type, {})
        self.kc.control_channel.send(msg)
        return self.reply(msg["header"]["msg_id"], msg_type.replace("_request", "_reply"))

    def __call__(self, command: str, **arguments: Any) -> dict[str, Any]:
        """Send a request, return its response; a failed one fails the test."""
        response = self.request(command, **arguments)
        assert response["success"] is True, response
        return dict(response.get("body") or {})

    def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        response = self.reply(self.send(command, **arguments))
        assert response["type"] == "response" and response["command"] == command
        return response

    def event(self, name: str) -> dict[str, Any]:
        """The body of the next ``debug_event`` called ``name`` not returned yet (whatever
        else IOPub brings is kept)."""
        deadline = time.monotonic() + TIMEOUT
        index = 0
        while True:
            if index == len(self.iopub):
                remaining = max(0.01, deadline - time.monotonic())
                self.iopub.append(self.kc.get_iopub_msg(timeout=remaining))
            msg = self.iopub[index]
            index += 1
            msg_id = msg["header"]["msg_id"]
            if (
                msg["msg_type"] == "debug_event"
                and msg["content"]["event"] == name
                and msg_id not in self._seen_events
            ):
                self._seen_events.add(msg_id)
                return dict(msg["content"]["body"])

    def execute(self, code: str) -> str:
        msg = self.kc.session.msg("execute_request", {"code": code, "silent": False})
        self.kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def finish(self, msg_id: str) -> tuple[dict[str, Any], str]:
        """The cell's execute_reply content and all it printed (IOPub read before counts)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            msg = self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = dict(msg["content"])
                break
        while not any(
            m["parent_header"].get("msg_id") == msg_id
            and m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            for m in self.iopub
        ):
            self.iopub.append(self.kc.get_iopub_msg(timeout=TIMEOUT))
        text = "".join(
            m["content"]["text"]
            for m in self.iopub
            if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream"
        )
        return reply, text

    def start(self) -> None:
        self("initialize", clientID="test", adapterID="lua54", linesStartAt1=True)
        self("attach")
        self("configurationDone")

    def stopped_frames(self) -> list[dict[str, Any]]:
        return list(self("stackTrace", threadId=1)["stackFrames"])

    def scope(self, frame_id: int, name: str) -> dict[str, dict[str, Any]]:
        """The variables of scope ``name`` of a frame, by name."""
        scopes = self("scopes", frameId=frame_id)["scopes"]
        (found,) = [s for s in scopes if s["name"] == name]
        variables = self("variables", variablesReference=found["variablesReference"])
        return {v["name"]: v for v in variables["variables"]}


@pytest.fixture
def lua(jupyter_env: JupyterEnv) -> Iterator[KernelPair]:
    km, kc = start_kernel_pair(jupyter_env, "lua54")
    yield km, kc
    stop_kernel_pair(km, kc)


@pytest.fixture
def dap(lua: KernelPair) -> Dap:
    return Dap(lua[1])


CELL = """\
local offset = 100
local function inner(n)
  return n + offset
end
function outer(a)
  local b = a * 2
  local c = inner(b)
  return c
end
t = {1, 2, name = "lua"}
local r = outer(20)
print("result", r)
"""


def test_kernel_info_and_kernelspec_claim_the_debugger(lua: KernelPair) -> None:
    _, kc = lua
    content = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    assert content["debugger"] is True and "debugger" in content["supported_features"]
    assert kernelspec_for("lua54", LuaKernel).metadata["debugger"] is True


def test_a_breakpoint_in_a_function_stops_and_steps(dap: Dap) -> None:
    info = dap("debugInfo")
    assert info["isStarted"] is False and info["hashSeed"] == HASH_SEED
    dap.start()
    assert dap("debugInfo")["isStarted"] is True
    path = dap("dumpCell", code=CELL)["sourcePath"]
    assert path == f"{info['tmpFilePrefix']}{murmur2(CELL, HASH_SEED)}{info['tmpFileSuffix']}"
    assert Path(path).read_text() == CELL and path.endswith(".lua")
    points = dap("setBreakpoints", source={"path": path}, breakpoints=[{"line": 6}])
    assert points["breakpoints"][0]["verified"] is True
    assert dap("debugInfo")["breakpoints"] == [{"source": path, "breakpoints": [{"line": 6}]}]

    cell = dap.execute(CELL)
    stopped = dap.event("stopped")
    assert stopped["reason"] == "breakpoint" and stopped["threadId"] == 1
    assert dap("debugInfo")["stoppedThreads"] == [1]
    assert dap("threads")["threads"] == [{"id": 1, "name": "Lua"}]
    frames = dap.stopped_frames()
    assert [(f["name"], f["line"], f["source"]["path"]) for f in frames] == [
        ("outer", 6, path),
        ("cell In[1]", 11, path),
    ]
    local = dap.scope(frames[0]["id"], "Locals")
    assert local["a"]["value"] == "20" and local["a"]["type"] == "int"  # JupyterLab's name
    cell_locals = dap.scope(frames[1]["id"], "Locals")
    assert "offset" in cell_locals and cell_locals["offset"]["value"] == "100"
    globals_ = dap.scope(frames[0]["id"], "Globals")
    assert set(globals_) == {"outer", "t"}  # the user's, not Lua's library
    table = globals_["t"]
    assert table["variablesReference"] > 0 and table["value"] == '{1, 2, name = "lua"}'
    items = dap("variables", variablesReference=table["variablesReference"])["variables"]
    assert [(v["name"], v["value"]) for v in items] == [
        ("[1]", "1"),
        ("[2]", "2"),
        ("name", '"lua"'),
    ]
    explorer = {v["name"] for v in dap("inspectVariables")["variables"]}
    assert explorer == {"outer", "t"}  # the variable explorer, asked while stopped
    assert dap("evaluate", expression="a * 3", frameId=frames[0]["id"])["result"] == "60"
    failed = dap.request("evaluate", expression="a +", frameId=frames[0]["id"])
    assert failed["success"] is False and failed["message"]

    # Stopped: the control channel answers (and the heartbeat: jupyter_client's check).
    assert dap.control("kernel_info_request")["status"] == "ok"
    assert dap.control("comm_info_request")["status"] == "ok"
    assert dap.kc.is_alive()

    dap("next", threadId=1)
    assert dap.event("stopped")["reason"] == "step"
    assert dap.stopped_frames()[0]["line"] == 7
    dap("evaluate", expression="b = 5", frameId=1)  # assigns the frame's local
    assert dap.scope(1, "Locals")["b"]["value"] == "5"
    dap("stepIn", threadId=1)
    dap.event("stopped")
    frames = dap.stopped_frames()
    assert (frames[0]["name"], frames[0]["line"]) == ("inner", 3)
    upvalues = dap.scope(frames[0]["id"], "Upvalues")
    assert upvalues["offset"]["value"] == "100"
    dap("stepOut", threadId=1)
    dap.event("stopped")
    top = dap.stopped_frames()[0]
    assert (top["name"], top["line"]) == ("outer", 8)
    dap("continue", threadId=1)
    dap.event("continued")
    reply, printed = dap.finish(cell)
    assert reply["status"] == "ok" and printed == "result\t105\n"
    assert dap("debugInfo")["stoppedThreads"] == []


def test_conditional_breakpoint_and_log_point(dap: Dap) -> None:
    dap.start()
    code = "local total = 0\nfor i = 1, 10 do\n  total = total + i\nend\nprint(total)\n"
    path = dap("dumpCell", code=code)["sourcePath"]
    dap(
        "setBreakpoints",
        source={"path": path},
        breakpoints=[{"line": 3, "condition": "i == 7"}, {"line": 5, "logMessage": "sum {total}"}],
    )
    cell = dap.execute(code)
    dap.event("stopped")
    local = dap.scope(1, "Locals")
    assert local["i"]["value"] == "7" and local["total"]["value"] == "21"
    dap("continue", threadId=1)
    reply, printed = dap.finish(cell)
    assert reply["status"] == "ok" and printed == "sum 55\n55\n"


def test_breakpoint_in_a_required_file(dap: Dap, tmp_path: Path) -> None:
    module = tmp_path / "geometry.lua"
    module.write_text(
        "local M = {}\nfunction M.area(w, h)\n  local a = w * h\n  return a\nend\nreturn M\n"
    )
    dap.start()
    dap("setBreakpoints", source={"path": str(module)}, breakpoints=[{"line": 3}])
    cell = dap.execute(
        f'package.path = "{tmp_path}/?.lua;" .. package.path\n'
        'local geometry = require("geometry")\nprint(geometry.area(6, 7))\n'
    )
    dap.event("stopped")
    top = dap.stopped_frames()[0]
    assert (top["source"]["path"], top["line"], top["name"]) == (str(module), 3, "area")
    assert dap("source", source={"path": str(module)})["content"] == module.read_text()
    assert dap.scope(top["id"], "Locals")["w"]["value"] == "6"
    dap("continue", threadId=1)
    assert dap.finish(cell)[1] == "42\n"


def test_stop_on_uncaught_errors(dap: Dap) -> None:
    dap.start()
    filters = dap("initialize")  # again: the capabilities, the debugger stays started
    assert filters["exceptionBreakpointFilters"][0]["filter"] == "uncaught"
    dap("setExceptionBreakpoints", filters=["uncaught"])
    cell = dap.execute(
        "local function check(x)\n"
        '  if x > 1 then error("too big: " .. x) end\n'
        "end\n"
        "check(5)\n"
        'print("unreachable")\n'
    )
    stopped = dap.event("stopped")
    assert stopped["reason"] == "exception" and "too big: 5" in stopped["text"]
    top = dap.stopped_frames()[0]
    assert (top["name"], top["line"]) == ("check", 2)
    assert dap.scope(top["id"], "Locals")["x"]["value"] == "5"
    dap("continue", threadId=1)
    reply, _ = dap.finish(cell)
    assert reply["status"] == "error" and "too big: 5" in reply["evalue"]
    # Errors a cell catches do not stop it.
    reply, printed = dap.finish(dap.execute('print(pcall(error, "caught"))'))
    assert reply["status"] == "ok" and printed == "false\tcaught\n"


def test_an_interrupt_ends_a_stopped_cell(dap: Dap) -> None:
    dap.start()
    code = "x = 1\nx = 2\n"
    path = dap("dumpCell", code=code)["sourcePath"]
    dap("setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
    cell = dap.execute(code)
    dap.event("stopped")
    assert dap.control("interrupt_request")["status"] == "ok"
    result, _ = dap.finish(cell)
    assert result["status"] == "error" and result["ename"] == "KeyboardInterrupt"
    dap.event("continued")
    assert dap("debugInfo")["stoppedThreads"] == []
    result, printed = dap.finish(dap.execute("print(x)"))
    assert result["status"] == "ok" and printed == "1\n"


def test_disconnect_releases_a_stopped_cell(dap: Dap) -> None:
    dap.start()
    code = "y = 1\ny = 2\nprint(y)\n"
    path = dap("dumpCell", code=code)["sourcePath"]
    dap("setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
    cell = dap.execute(code)
    dap.event("stopped")
    dap("disconnect", restart=False, terminateDebuggee=False)
    result, printed = dap.finish(cell)
    assert result["status"] == "ok" and printed == "2\n"
    info = dap("debugInfo")
    assert (info["isStarted"], info["breakpoints"], info["stoppedThreads"]) == (False, [], [])
    # The debugger is off: the same cell runs through.
    result, printed = dap.finish(dap.execute(code))
    assert result["status"] == "ok" and printed == "2\n"


def test_pause_and_breakpoints_set_while_a_cell_runs(dap: Dap) -> None:
    dap.start()
    code = "function tick(i)\n  return i + 1\nend\ndone = false\n"
    assert dap.finish(dap.execute(code))[0]["status"] == "ok"
    # The loop ends when `done` is set (by evaluate, below); a pause that arrives before the
    # cell starts stops it at its first line, which is fine too.
    loop = "n = 0\nwhile not done do\n  n = tick(n)\nend\nprint('done')\n"
    cell = dap.execute(loop)
    dap("pause", threadId=1)
    assert dap.event("stopped")["reason"] == "pause"
    dap("evaluate", expression="done = true", frameId=1)
    dap("continue", threadId=1)
    reply, printed = dap.finish(cell)
    assert reply["status"] == "ok" and printed == "done\n"
    # A breakpoint set while the loop runs, in a function of an earlier cell, is hit.
    assert dap.finish(dap.execute("done = false"))[0]["status"] == "ok"
    cell = dap.execute(loop)
    dap("pause", threadId=1)  # stopped and continued: the loop runs from here on
    dap.event("stopped")
    dap("continue", threadId=1)
    dap.event("continued")
    path = dap("dumpCell", code=code)["sourcePath"]
    dap("setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
    assert dap.event("stopped")["reason"] == "breakpoint"
    assert [f["name"] for f in dap.stopped_frames()] == ["tick", "cell In[4]"]
    dap("evaluate", expression="done = true")
    dap("setBreakpoints", source={"path": path}, breakpoints=[])
    dap("continue", threadId=1)
    reply, printed = dap.finish(cell)
    assert reply["status"] == "ok" and printed == "done\n"


def test_variable_explorer_when_nothing_is_stopped(dap: Dap) -> None:
    assert (
        dap.finish(dap.execute("answer = 42\nnested = {list = {1, 2}, flag = true}"))[0]["status"]
        == "ok"
    )
    # inspectVariables works before the debugger starts (JupyterLab asks at once).
    variables = {v["name"]: v for v in dap("inspectVariables")["variables"]}
    assert set(variables) == {"answer", "nested"}
    assert variables["answer"]["value"] == "42"
    rich = dap("richInspectVariables", variableName="answer")
    assert rich["data"] == {"text/plain": "42"}
    # Started, JupyterLab expands a table of the explorer with `variables`.
    dap.start()
    variables = {v["name"]: v for v in dap("inspectVariables")["variables"]}
    children = dap("variables", variablesReference=variables["nested"]["variablesReference"])
    assert [v["name"] for v in children["variables"]] == ["flag", "list"]
    assert dap("evaluate", expression="answer + 1")["result"] == "43"


def test_a_subshell_runs_while_a_cell_is_stopped(dap: Dap) -> None:
    """A subshell's cell (a console, a widget's comm handler) runs while the notebook's cell is
    stopped at a breakpoint, and may stop too; the notebook's cell is then shown stopped again."""
    kc = dap.kc
    reply = dap.control("create_subshell_request")
    subshell = reply["subshell_id"]
    dap.start()
    helper = "function helper(x)\n  return x * 10\nend\n"
    assert dap.finish(dap.execute(helper))[0]["status"] == "ok"
    code = "progress = 'before'\nprogress = 'after'\nprint(progress)\n"
    path = dap("dumpCell", code=code)["sourcePath"]
    dap("setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
    cell = dap.execute(code)
    dap.event("stopped")

    def in_subshell(source: str) -> str:
        msg = kc.session.msg("execute_request", {"code": source, "silent": False})
        msg["header"]["subshell_id"] = subshell
        kc.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    reply, printed = dap.finish(in_subshell("print(progress)"))
    assert reply["status"] == "ok" and printed == "before\n"  # the stopped cell's state
    # A breakpoint in the subshell's cell stops it in turn; continued, the notebook's cell is
    # shown stopped again, on its own line.
    helper_path = dap("dumpCell", code=helper)["sourcePath"]
    dap("setBreakpoints", source={"path": helper_path}, breakpoints=[{"line": 2}])
    nested = in_subshell("print(helper(4))")
    dap.event("stopped")
    assert dap.stopped_frames()[0]["name"] == "helper"
    dap("continue", threadId=1)
    reply, printed = dap.finish(nested)
    assert reply["status"] == "ok" and printed == "40\n"
    dap.event("stopped")
    assert dap.stopped_frames()[0]["line"] == 2
    dap("continue", threadId=1)
    reply, printed = dap.finish(cell)
    assert reply["status"] == "ok" and printed == "after\n"


@pytest.mark.parametrize(
    "kernel",
    [Lua51Kernel, Lua52Kernel, Lua53Kernel, LuaKernel, Lua55Kernel],
    ids=lambda k: f"lua{k.lua_version}",
)
def test_every_lua_version_stops_steps_and_shows_locals(kernel: type[LuaKernel]) -> None:
    """In memory, on each Lua the kernel runs (5.1 lists tail calls as frames of their own
    and has no math.type; hook events differ)."""
    try:
        made = kernel()
    except LuaNotFoundError as exc:
        pytest.skip(str(exc))
    code = (
        "local function f(a)\n  local b = a * 2\n  return b + 1\nend\nprint(f(20))\nlocal z = 1\n"
    )

    async def request(client: TestClient, command: str, **arguments: Any) -> dict[str, Any]:
        content = {"type": "request", "seq": 1, "command": command, "arguments": arguments}
        msg_id = client.send("debug_request", content, Channel.CONTROL)
        reply = (await client.collect(msg_id, Channel.CONTROL)).reply.content
        assert reply["success"] is True, reply
        return dict(reply["body"])

    async def stopped(client: TestClient) -> list[dict[str, Any]]:
        while True:
            msg = await client.receive(Channel.IOPUB)
            if msg.msg_type == "debug_event" and msg.content["event"] == "stopped":
                return list((await request(client, "stackTrace", threadId=1))["stackFrames"])

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with open_test_kernel(made) as client:
                await request(client, "initialize")
                path = (await request(client, "dumpCell", code=code))["sourcePath"]
                await request(
                    client, "setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}]
                )
                cell = client.send("execute_request", {"code": code, "silent": False})
                frames = await stopped(client)
                assert [(f["line"], f["source"]["path"]) for f in frames] == [(2, path), (5, path)]
                scopes = (await request(client, "scopes", frameId=1))["scopes"]
                ref = scopes[0]["variablesReference"]
                local = (await request(client, "variables", variablesReference=ref))["variables"]
                assert [(v["name"], v["value"], v["type"]) for v in local] == [("a", "20", "int")]
                result = await request(client, "evaluate", expression="a + 1", frameId=1)
                assert result["result"] == "21"
                await request(client, "next", threadId=1)
                assert (await stopped(client))[0]["line"] == 3
                await request(client, "continue", threadId=1)
                assert (await client.collect(cell)).reply.content["status"] == "ok"

    trio.run(main)


def test_restart_while_stopped_starts_afresh(lua: KernelPair) -> None:
    """A restart requested while a cell is stopped at a breakpoint: the stopped cell ends, the
    new kernel process has no debugger state (not started, no breakpoints, its own files)."""
    km, kc = lua
    dap = Dap(kc)
    dap.start()
    before = dap("debugInfo")
    code = "w = 1\nw = 2\n"
    path = dap("dumpCell", code=code)["sourcePath"]
    dap("setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}])
    dap.execute(code)
    dap.event("stopped")
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=TIMEOUT)
    after = Dap(kc)("debugInfo")
    assert (after["isStarted"], after["breakpoints"], after["stoppedThreads"]) == (False, [], [])
    assert after["tmpFilePrefix"] != before["tmpFilePrefix"]  # another process's directory
    assert not Path(before["tmpFilePrefix"]).exists()  # the old one went with its kernel
