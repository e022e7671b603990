"""The checks of a claimed debugger (messaging 5.5 "Debug request", JupyterLab's debugger),
for kernels that claim it (``"debugger"`` in ``supported_features`` or ``debugger: true``;
the others skip).

What JupyterLab needs and DAP does not say: ``debugInfo`` answered at once, even before the
debugger starts, with the hash method and seed and the temp file prefix and suffix it names
cells by; ``dumpCell`` writing the cell to exactly that name; a kernel that still runs cells
once ``initialize`` has started its debugger (ipymini's did not); a breakpoint in a dumped
cell that stops the cell (a ``stopped`` debug_event), a stack whose top frame is that cell's
file and line, and ``continue`` letting the cell finish.

The session checks use a kernel of their own: a debugger that wedges its kernel must not
take the shared one with it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .._client import KernelClient, Msg, NoReply
from .._registry import Context, Fail, Skip, check
from ._helpers import expect

SPEC = "Debug request (5.5); JupyterLab's debugger (packages/debugger: service.ts, config.ts)"
#: JupyterLab's only hash method (config.ts)
HASH_METHOD = "Murmur2"
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(text: str, seed: int) -> int:
    """MurmurHash2 of ``text``'s UTF-8 bytes, as JupyterLab's hash.ts computes it."""
    data = text.encode("utf-8")
    h = (seed ^ len(data)) & _MASK
    aligned = len(data) & ~3
    for i in range(0, aligned, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[aligned:]
    if tail:
        for i in reversed(range(len(tail))):
            h ^= tail[i] << (8 * i)
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def _claimed(ctx: Context) -> None:
    info = ctx.info()
    features = info.get("supported_features")
    if (
        not (isinstance(features, list) and "debugger" in features)
        and info.get("debugger") is not True
    ):
        raise Skip("the kernel does not claim a debugger (supported_features, debugger)")


class _Dap:
    def __init__(self, kc: KernelClient) -> None:
        self.kc = kc
        self.seq = 0

    def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        """One DAP request; its response (Fail when no debug_reply comes)."""
        self.seq += 1
        content = {"type": "request", "seq": self.seq, "command": command, "arguments": arguments}
        msg_id = self.kc.send("control", "debug_request", content)
        try:
            reply = self.kc.reply("control", msg_id)
        except NoReply as exc:
            raise Fail(f"debug_request {command!r} got no debug_reply: {exc}") from None
        if reply.msg_type != "debug_reply":
            raise Fail(f"debug_request {command!r} answered with {reply.msg_type}")
        response = reply.content if isinstance(reply.content, dict) else {}
        if response.get("type") != "response" or response.get("command") != command:
            raise Fail(f"debug_reply to {command!r} is not its DAP response: {response}")
        return response

    def ok(self, command: str, **arguments: Any) -> dict[str, Any]:
        response = self.request(command, **arguments)
        if response.get("success") is not True:
            raise Fail(f"DAP {command!r} failed: {response.get('message')!r}")
        body = response.get("body")
        return body if isinstance(body, dict) else {}

    def event(self, name: str, timeout: float) -> dict[str, Any] | None:
        """The body of the next ``debug_event`` ``name`` (other IOPub is kept for later)."""
        kept: list[Msg] = []
        deadline = time.monotonic() + timeout
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                msg = self.kc.recv_iopub(remaining)
                if msg is None:
                    return None
                content = msg.content if isinstance(msg.content, dict) else {}
                if msg.msg_type == "debug_event" and content.get("event") == name:
                    body = content.get("body")
                    return body if isinstance(body, dict) else {}
                kept.append(msg)
            return None
        finally:
            self.kc._iopub_backlog[:0] = kept

    def start(self) -> None:
        self.ok(
            "initialize",
            clientID="conformance",
            adapterID="conformance",
            pathFormat="path",
            linesStartAt1=True,
            columnsStartAt1=True,
        )
        self.ok("attach")


def _debug_info_problems(body: dict[str, Any]) -> list[str]:
    problems = []
    shapes = {
        "isStarted": bool,
        "hashMethod": str,
        "hashSeed": int,
        "tmpFilePrefix": str,
        "tmpFileSuffix": str,
        "breakpoints": list,
        "stoppedThreads": list,
    }
    for field, kind in shapes.items():
        if not isinstance(body.get(field), kind):
            problems.append(f"debugInfo body.{field} is {body.get(field)!r}, not a {kind.__name__}")
    if body.get("hashMethod") not in (None, HASH_METHOD) and isinstance(
        body.get("hashMethod"), str
    ):
        problems.append(f"hashMethod {body['hashMethod']!r}: JupyterLab knows only {HASH_METHOD!r}")
    return problems


@check(
    "debugger_info",
    "a claimed debugger answers debugInfo at once, before it is started, with what JupyterLab "
    "rebuilds its state from (isStarted, hashMethod Murmur2, hashSeed, tmpFilePrefix and "
    "tmpFileSuffix, breakpoints, stoppedThreads); the kernelspec says metadata.debugger",
    f"{SPEC}: debugInfo",
)
def debugger_info(ctx: Context) -> str:
    _claimed(ctx)
    dap = _Dap(ctx.kernel())
    body = dap.ok("debugInfo")
    problems = _debug_info_problems(body)
    if ctx.kernelspec.get("metadata", {}).get("debugger") is not True:
        problems.append(
            "kernelspec metadata.debugger is not true: JupyterLab offers its debugger for a "
            "kernelspec only when it is"
        )
    expect(problems, "debugger info")
    return (
        f"isStarted {body['isStarted']}, {body['hashMethod']} seed {body['hashSeed']}, "
        f"files {body['tmpFilePrefix']}<hash>{body['tmpFileSuffix']}"
    )


@check(
    "debugger_session",
    "initialize and attach start the debugger and the kernel still runs cells; dumpCell "
    "writes the cell to the file JupyterLab names it by (prefix + murmur2(code, seed) + "
    "suffix); disconnect stops it",
    f"{SPEC}: initialize, attach, dumpCell, disconnect",
)
def debugger_session(ctx: Context) -> str:
    _claimed(ctx)
    code = ctx.sample("code_hello_world")
    with ctx.fresh() as kc:
        dap = _Dap(kc)
        info = dap.ok("debugInfo")
        expect(_debug_info_problems(info), "debugger session")
        dap.start()
        problems = []
        if dap.ok("debugInfo").get("isStarted") is not True:
            problems.append("debugInfo says isStarted false after initialize")
        try:
            reply, _ = kc.run(code)
        except NoReply as exc:
            raise Fail(f"once the debugger started, a cell got no reply: {exc}") from None
        if reply.content.get("status") != "ok":
            problems.append(f"a cell with the debugger on: status {reply.content.get('status')!r}")
        dumped = dap.ok("dumpCell", code=code).get("sourcePath")
        expected = (
            f"{info['tmpFilePrefix']}{murmur2(code, int(info['hashSeed']))}{info['tmpFileSuffix']}"
        )
        if dumped != expected:
            problems.append(f"dumpCell wrote {dumped!r}; JupyterLab looks for {expected!r}")
        elif os.path.exists(dumped):
            with open(dumped, encoding="utf-8") as f:
                if f.read() != code:
                    problems.append(f"{dumped} does not hold the cell's code")
        else:
            problems.append(f"dumpCell's file {dumped} does not exist")
        dap.ok("disconnect", restart=False, terminateDebuggee=False)
        if dap.ok("debugInfo").get("isStarted") is not False:
            problems.append("debugInfo says isStarted true after disconnect")
    expect(problems, "debugger session")
    return f"started, a cell ran, dumpCell wrote {os.path.basename(str(dumped))}, disconnected"


@check(
    "debugger_breakpoint",
    "a breakpoint on line 2 of a dumped cell stops it (a stopped debug_event), the top frame "
    "of stackTrace is that file and line, and continue lets the cell finish",
    f"{SPEC}: setBreakpoints, configurationDone, stopped, stackTrace, continue",
)
def debugger_breakpoint(ctx: Context) -> str:
    _claimed(ctx)
    code = ctx.sample("code_debug")
    timeout = ctx.options.timeout
    with ctx.fresh() as kc:
        dap = _Dap(kc)
        dap.start()
        path = dap.ok("dumpCell", code=code).get("sourcePath")
        dap.ok(
            "setBreakpoints", source={"path": path}, breakpoints=[{"line": 2}], sourceModified=False
        )
        dap.ok("configurationDone")
        msg_id = kc.execute(code)
        stopped = dap.event("stopped", timeout)
        if stopped is None:
            raise Fail(f"no stopped debug_event within {timeout:g}s of running the cell")
        thread = stopped.get("threadId", 1)
        frames = dap.ok("stackTrace", threadId=thread).get("stackFrames") or []
        problems = []
        top = frames[0] if frames and isinstance(frames[0], dict) else {}
        where = ((top.get("source") or {}).get("path"), top.get("line"))
        if where != (path, 2):
            problems.append(f"stopped at {where}, not at line 2 of {path}")
        dap.ok("continue", threadId=thread)
        try:
            reply = kc.reply("shell", msg_id)
        except NoReply as exc:
            raise Fail(f"after continue the cell never finished: {exc}") from None
        kc.collect(msg_id)
        if reply.content.get("status") != "ok":
            problems.append(f"after continue the cell ended with {reply.content.get('status')!r}")
        dap.ok("disconnect", restart=False, terminateDebuggee=False)
    expect(problems, "debugger breakpoint")
    return f"stopped at line 2 of the dumped cell ({stopped.get('reason')}), continued, finished"
