"""Kernel subshells (JEP 91) in the Lua kernel: a subshell's cell runs at a hook point of the
running cell, on the same Lua state (kernels/lua/kernelsdk_lua/_state.py).

Over real sockets with jupyter_client (the session's ``lua54`` kernelspec): a subshell reads
the progress of a loop the main shell runs, an interrupt stops both, an error in a subshell
leaves the main cell running. In memory (``open_test_kernel``): the same on Lua 5.1, where a
loop inside ``pcall`` cannot yield, in a loop inside a coroutine of the cell, and with
``io.popen``, ``io.read``, the memory guard, comm handlers and per-subshell counts.

No assertion depends on time: a loop runs until a subshell's cell tells it to stop, and
"the loop went on" is read from what the main cell printed, not from a clock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
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
from test_integration import stdout_of
from test_subshells import collect_all, control, create, execute, replies, run

from kernelsdk.protocol import Channel
from kernelsdk.testing import RequestResult, TestClient, open_test_kernel

TIMEOUT = 30  # only reached when something hangs

# Counts until a subshell sets `stop_loop`, printing its progress every 2^16 steps.
LOOP = """
progress, stop_loop = 0, false
while not stop_loop do
  progress = progress + 1
  if progress % 65536 == 0 then print("at " .. progress) end
end
return progress
"""


@pytest.fixture(scope="module")
def lua(jupyter_env: JupyterEnv) -> Iterator[KernelPair]:
    km, kc = start_kernel_pair(jupyter_env, "lua54")
    yield km, kc
    stop_kernel_pair(km, kc)


def value_of(iopub: list[dict[str, Any]]) -> str:
    (result,) = [m for m in iopub if m["msg_type"] == "execute_result"]
    return str(result["content"]["data"]["text/plain"])


def printed_beyond(kc: Any, msg_id: str, floor: int) -> int:
    """Read IOPub until the cell ``msg_id`` prints a progress above ``floor``; returns it."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id or msg["msg_type"] != "stream":
            continue
        printed = [int(n) for n in re.findall(r"at (\d+)", msg["content"]["text"])]
        if printed and printed[-1] > floor:
            return printed[-1]


def stop_the_loop(kc: Any, a: str, main: str) -> list[dict[str, Any]]:
    """Stop the main shell's LOOP from subshell ``a``; returns the loop's IOPub messages.
    The loop's reply and result may come before or after the stopping cell's."""
    stop = execute(kc, "stop_loop = true", a)
    found = replies(kc, [stop, main])
    assert found[stop]["content"]["status"] == "ok"
    assert found[main]["content"]["status"] == "ok", found[main]["content"]
    return collect_all(kc, [stop, main])[main]


def test_kernel_info_claims_subshells(lua: KernelPair) -> None:
    _, kc = lua
    reply = kc.kernel_info(reply=True, timeout=TIMEOUT)
    assert "kernel subshells" in reply["content"]["supported_features"]


def test_a_subshell_reads_the_progress_of_a_running_loop(lua: KernelPair) -> None:
    """The scenario of issue 13: a second console reads a variable while a loop runs."""
    _, kc = lua
    a = create(kc)
    main = execute(kc, LOOP)
    seen: list[int] = []
    floor = 0
    for _ in range(4):
        floor = printed_beyond(kc, main, floor)  # the loop has gone on since the last read
        reply, iopub = run(kc, "return progress", a)
        assert reply["content"]["status"] == "ok", reply["content"]
        seen.append(int(value_of(iopub)))
        assert seen[-1] >= floor
        floor = seen[-1]
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
    final = stop_the_loop(kc, a, main)
    assert int(value_of(final)) > seen[-1]
    control(kc, "delete_subshell_request", subshell_id=a)


def test_an_interrupt_stops_both_shells_busy(lua: KernelPair) -> None:
    km, kc = lua
    a = create(kc)
    main = execute(kc, LOOP)
    printed_beyond(kc, main, 0)
    # The subshell's cell loops too: the main cell stays paused under it.
    sub = execute(kc, 'sub_progress = progress print("sub started")\nwhile true do end', a)
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == sub and msg["msg_type"] == "stream":
            break
    km.interrupt_kernel()
    for reply in replies(kc, [main, sub]).values():
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    collect_all(kc, [main, sub])
    # The state survived both: the subshell saw the main loop's progress.
    for subshell_id in (None, a):
        reply, iopub = run(kc, "return sub_progress == progress and progress > 0", subshell_id)
        assert value_of(iopub) == "true"
    control(kc, "delete_subshell_request", subshell_id=a)


def test_an_error_in_a_subshell_leaves_the_main_cell_running(lua: KernelPair) -> None:
    _, kc = lua
    a = create(kc)
    main = execute(kc, LOOP)
    before = printed_beyond(kc, main, 0)
    reply, iopub = run(kc, 'error("boom in the subshell")', a)
    assert reply["content"]["status"] == "error"
    assert "boom in the subshell" in reply["content"]["evalue"]
    assert [m for m in iopub if m["msg_type"] == "error"]
    reply, iopub = run(kc, "error(setmetatable({}, {__tostring = function() return 'obj' end}))", a)
    assert reply["content"]["status"] == "error"
    printed_beyond(kc, main, before)  # the main cell goes on
    final = stop_the_loop(kc, a, main)
    assert int(value_of(final)) > before
    assert not [m for m in final if m["msg_type"] == "error"]
    control(kc, "delete_subshell_request", subshell_id=a)


def test_native_output_of_a_subshell_cell_is_its_own(lua: KernelPair) -> None:
    """What a child process writes to the kernel's descriptors while a subshell's cell runs
    inside the main cell's hook is the subshell cell's output, not the main cell's."""
    _, kc = lua
    a = create(kc)
    main = execute(kc, LOOP)
    printed_beyond(kc, main, 0)
    for _ in range(2):
        reply, iopub = run(kc, 'os.execute("echo from the subshell")', a)
        assert reply["content"]["status"] == "ok"
        assert stdout_of(iopub) == "from the subshell\n"
    final = stop_the_loop(kc, a, main)
    assert "from the subshell" not in stdout_of(final)
    control(kc, "delete_subshell_request", subshell_id=a)


def test_each_shell_counts_its_own_cells(lua: KernelPair) -> None:
    _, kc = lua
    a = create(kc)
    counts = []
    for subshell_id in (a, a, None, a):
        reply, _ = run(kc, "x = 1", subshell_id)
        counts.append(reply["content"]["execution_count"])
    assert counts[:2] == [1, 2] and counts[3] == 3
    reply, _ = run(kc, 'error("where")', a)
    assert f"In[4@{a[:8]}]" in reply["content"]["evalue"]
    control(kc, "delete_subshell_request", subshell_id=a)


# -- in memory ------------------------------------------------------------------------------


def run_in_memory(
    fn: Callable[[TestClient], Awaitable[None]], kernel: Callable[[], LuaKernel] = LuaKernel
) -> None:
    """Run ``fn(client)`` against a fresh kernel served in memory (skip a missing Lua)."""
    try:
        made = kernel()
    except LuaNotFoundError as exc:
        pytest.skip(str(exc))

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with open_test_kernel(made) as client:
                await fn(client)

    trio.run(main)


def lua_test(
    kernel: Callable[[], LuaKernel] = LuaKernel,
) -> Callable[[Callable[[TestClient], Awaitable[None]]], Callable[[], None]]:
    def decorate(fn: Callable[[TestClient], Awaitable[None]]) -> Callable[[], None]:
        def wrapper() -> None:
            run_in_memory(fn, kernel)

        # Not functools.wraps: pytest would read fn's signature and look for fixtures.
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper

    return decorate


def result_text(result: RequestResult) -> str | None:
    for m in result.outputs:
        if m.msg_type == "execute_result":
            return str(m.content["data"]["text/plain"])
    return None


async def printed(client: TestClient, msg_id: str, text: str) -> None:
    """Wait until the cell ``msg_id`` prints ``text`` (its other messages stay held)."""
    while True:
        msg = await client.receive(Channel.IOPUB)
        if msg.parent_header is None:
            continue
        client._held_iopub.setdefault(msg.parent_header.msg_id, []).append(msg)
        if (
            msg.parent_header.msg_id == msg_id
            and msg.msg_type == "stream"
            and text in msg.content["text"]
        ):
            return


async def with_a_loop(
    client: TestClient, loop: str, body: Callable[[str], Awaitable[None]]
) -> RequestResult:
    """Run ``loop`` (which prints "looping" once ``n`` is 1000 and runs until ``stop_loop``)
    on the main shell, ``body(subshell)`` while it runs, then stop it; returns the loop's
    result."""
    a = await client.create_subshell()
    main = client.send("execute_request", {"code": loop})
    await printed(client, main, "looping")
    await body(a)
    assert (await client.execute("stop_loop = true", subshell_id=a)).reply.content["status"] == "ok"
    result = await client.collect(main)
    assert result.reply.content["status"] == "ok", result.reply.content
    return result


async def read(client: TestClient, code: str, subshell: str, **options: Any) -> str | None:
    result = await client.execute(code, subshell_id=subshell, **options)
    assert result.reply.content["status"] == "ok", result.reply.content
    return result_text(result)


PCALL_LOOP = """
stop_loop, n = false, 0
pcall(function() while not stop_loop do n = n + 1 if n == 1000 then print("looping") end end end)
return n
"""


@lua_test(Lua51Kernel)
async def test_lua51_loop_inside_pcall_cannot_yield_and_still_lets_a_subshell_in(
    client: TestClient,
) -> None:
    """On 5.1 a coroutine cannot yield across pcall: the subshell runs inside the hook."""

    async def body(a: str) -> None:
        assert await read(client, "return n >= 1000", a) == "true"

    await with_a_loop(client, PCALL_LOOP, body)


@pytest.mark.parametrize(
    "kernel_class",
    [Lua51Kernel, Lua52Kernel, Lua53Kernel, LuaKernel, Lua55Kernel],
    ids=["5.1", "5.2", "5.3", "5.4", "5.5"],
)
def test_every_lua_version_lets_a_subshell_read_a_running_loop(
    kernel_class: type[LuaKernel],
) -> None:
    async def test(client: TestClient) -> None:
        async def body(a: str) -> None:
            assert int(await read(client, "return n", a) or 0) >= 1000

        result = await with_a_loop(client, SIMPLE_LOOP, body)
        assert int(result_text(result) or 0) > 0

    run_in_memory(test, kernel_class)


SORT_LOOP = """
stop_loop, n = false, 0
local t = {3, 1, 2}
table.sort(t, function(x, y)
  while not stop_loop do n = n + 1 if n == 1000 then print("looping") end end
  return x < y
end)
return n
"""


@lua_test()
async def test_a_loop_inside_a_c_function_lets_a_subshell_in(client: TestClient) -> None:
    async def body(a: str) -> None:
        assert await read(client, "return n >= 1000", a) == "true"

    await with_a_loop(client, SORT_LOOP, body)


COROUTINE_LOOP = """
stop_loop, n = false, 0
local gen = coroutine.wrap(function()
  while not stop_loop do n = n + 1 if n == 1000 then print("looping") end end
  coroutine.yield(n)
end)
return gen()
"""


@lua_test()
async def test_a_loop_inside_a_coroutine_of_the_cell_lets_a_subshell_in(
    client: TestClient,
) -> None:
    async def body(a: str) -> None:
        # The subshell's own coroutines do not disturb the main cell's.
        code = "local co = coroutine.wrap(function() coroutine.yield(n >= 1000) end) return co()"
        assert await read(client, code, a) == "true"

    result = await with_a_loop(client, COROUTINE_LOOP, body)
    assert int(result_text(result) or 0) > 0


SIMPLE_LOOP = """
stop_loop, n = false, 0
while not stop_loop do n = n + 1 if n == 1000 then print("looping") end end
return n
"""


@lua_test()
async def test_popen_input_and_display_in_a_subshell_while_a_loop_runs(client: TestClient) -> None:
    async def body(a: str) -> None:
        code = 'local f = io.popen("echo from a child") local s = f:read("l") f:close() return s'
        assert await read(client, code, a) == '"from a child"'
        result = await client.execute(
            "return io.read()", subshell_id=a, allow_stdin=True, input=["typed"]
        )
        assert result_text(result) == '"typed"'
        result = await client.execute('display.html("<b>x</b>") print("out")', subshell_id=a)
        assert [m.msg_type for m in result.outputs] == ["display_data", "stream"]
        assert {m.parent_header.msg_id for m in result.outputs if m.parent_header} == {
            result.reply.parent_header.msg_id if result.reply.parent_header else ""
        }

    result = await with_a_loop(client, SIMPLE_LOOP, body)
    # The main cell printed only its own output.
    assert [m.content["text"] for m in result.outputs if m.msg_type == "stream"] == ["looping\n"]


@lua_test()
async def test_completion_and_inspection_interleave_with_a_running_loop(
    client: TestClient,
) -> None:
    async def body(a: str) -> None:
        await read(client, "progress_marker = 1", a)
        msg_id = client.send(
            "complete_request", {"code": "progress_m", "cursor_pos": 10}, subshell_id=a
        )
        reply = (await client.collect(msg_id)).reply
        assert "progress_marker" in reply.content["matches"]
        msg_id = client.send("is_complete_request", {"code": "for i = 1, 2 do"}, subshell_id=a)
        assert (await client.collect(msg_id)).reply.content["status"] == "incomplete"

    await with_a_loop(client, SIMPLE_LOOP, body)


def test_a_subshell_cell_that_runs_out_of_memory_leaves_the_main_cell_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERNELSDK_LUA_MEMORY_LIMIT", "64M")

    async def test(client: TestClient) -> None:
        async def body(a: str) -> None:
            code = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end"
            result = await client.execute(code, subshell_id=a)
            assert result.reply.content["ename"] == "MemoryError", result.reply.content
            assert await read(client, "return n >= 1000", a) == "true"

        result = await with_a_loop(client, SIMPLE_LOOP, body)
        assert int(result_text(result) or 0) > 0

    run_in_memory(test)


@lua_test()
async def test_a_comm_handler_runs_at_a_hook_point_of_the_running_cell(client: TestClient) -> None:
    """A widget's message is handled while a cell runs, as JupyterLab expects of a kernel that
    claims subshells; a subshell's request sent after it is handled after it."""
    await client.execute('jupyter.register_target("t", function(comm, data) handled_at = n end)')

    async def body(a: str) -> None:
        client.send("comm_open", {"comm_id": "c1", "target_name": "t", "data": {}}, Channel.SHELL)
        assert await read(client, "return handled_at > 0 and handled_at <= n", a) == "true"

    await with_a_loop(client, SIMPLE_LOOP, body)
