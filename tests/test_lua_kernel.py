"""The Lua kernel (kernels/lua) in memory, with real Lua (lupa's Lua 5.4 unless noted).

These tests run under a real clock: the kernel runs Lua in worker threads, which a MockClock
cannot wait for. ``trio.fail_after`` guards only stop hangs; no assertion depends on time.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from kernelsdk_lua import (
    Lua51Kernel,
    Lua52Kernel,
    Lua53Kernel,
    Lua55Kernel,
    LuaKernel,
    LuaNotFoundError,
    load_library,
)

from kernelsdk.protocol import Channel, Message
from kernelsdk.testing import RequestResult, TestClient, open_test_kernel

GUARD = 30  # seconds: only reached on a hang


def lua_test(fn: Callable[[TestClient], Awaitable[None]]) -> Callable[[], None]:
    """Run ``fn(client)`` against a fresh Lua 5.4 kernel served in memory."""

    def wrapper() -> None:
        async def main() -> None:
            with trio.fail_after(GUARD):
                async with open_test_kernel(LuaKernel()) as client:
                    await fn(client)

        trio.run(main)

    # Not functools.wraps: pytest would read fn's signature and look for a `client` fixture.
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def result_text(result: RequestResult) -> str | None:
    for m in result.outputs:
        if m.msg_type == "execute_result":
            return str(m.content["data"]["text/plain"])
    return None


async def ok(client: TestClient, code: str, **options: Any) -> RequestResult:
    result = await client.execute(code, **options)
    assert result.reply.content["status"] == "ok", (code, result.reply.content)
    return result


async def value(client: TestClient, code: str) -> str | None:
    return result_text(await ok(client, code))


async def start(client: TestClient, code: str) -> str:
    """Send an execute_request without waiting; returns its msg_id."""
    return client.send("execute_request", {"code": code, "silent": False, "allow_stdin": False})


async def wait_for_stream(client: TestClient, msg_id: str, text: str) -> list[Message]:
    """IOPub messages of ``msg_id`` up to the first stream containing ``text``."""
    seen: list[Message] = []
    while True:
        msg = await client.receive(Channel.IOPUB)
        if msg.parent_header is None or msg.parent_header.msg_id != msg_id:
            continue
        seen.append(msg)
        if msg.msg_type == "stream" and text in msg.content["text"]:
            return seen


async def finish(client: TestClient, msg_id: str, before: list[Message]) -> RequestResult:
    rest = await client.collect(msg_id)
    return RequestResult(rest.reply, before + rest.iopub)


# -- values and state ------------------------------------------------------------------------


@lua_test
async def test_state_persists_and_trailing_expression_is_the_result(client: TestClient) -> None:
    assert await value(client, "x = 20") is None
    assert await value(client, "x + 1") == "21"
    assert await value(client, "local y = x * 2\ny") == "40"
    assert await value(client, "t = {}; t.n = 3; t.n") == "3"
    assert await value(client, "x;") is None  # a trailing ; suppresses the value
    assert await value(client, "function f() return 1, 'two', nil end") is None
    assert await value(client, "f()") == '1, "two", nil'
    assert await value(client, "return") is None
    assert await value(client, "print('no value')") is None
    assert await value(client, "for i = 1, 2 do\n  x = x + i\nend") is None
    assert await value(client, "x") == "23"
    assert await value(client, "_") == "23"  # `_` holds the last value


@lua_test
async def test_values_have_a_readable_repr(client: TestClient) -> None:
    assert await value(client, "'a\\nb\"'") == '"a\\nb\\""'
    # A control character before a digit: the escape is padded, so the repr reads back as is.
    shown = await value(client, "'\\1' .. '2'")
    assert shown == '"\\0012"'
    assert await value(client, f"{shown} == '\\1' .. '2'") == "true"
    assert await value(client, "1.5, 2, 1e100, 0/0 ~= 0/0") == "1.5, 2, 1e+100, true"
    assert await value(client, "{1, 2, {3}, name = 'n', [10] = true}") == (
        '{1, 2, {3}, [10] = true, name = "n"}'
    )
    assert await value(client, "{}") == "{}"
    cyclic = await value(client, "c = {}; c.me = c; c")
    assert cyclic is not None and cyclic.startswith("{me = <cycle: table: ")
    long = await value(client, "local t = {} for i = 1, 30 do t['key' .. i] = i end return t")
    assert long is not None and long.startswith("{\n  key1 = 1,\n") and long.endswith("\n}")
    obj = await value(client, "setmetatable({}, {__tostring = function() return 'OBJ' end})")
    assert obj == "OBJ"
    fn = await value(client, "print")
    assert fn is not None and fn.startswith("function: ")


# -- output ------------------------------------------------------------------------------------


@lua_test
async def test_print_and_io_write_go_to_stdout_stderr_to_stderr(client: TestClient) -> None:
    result = await ok(
        client,
        "print('a', 1, nil, true)\nio.write('b', 2, 3.5, '\\n')\n"
        "io.stderr:write('oops\\n')\nio.stdout:write('c'):write('d\\n')",
    )
    assert result.stdout == "a\t1\tnil\ttrue\nb23.5\ncd\n"
    assert result.stderr == "oops\n"
    names = [m.content["name"] for m in result.outputs if m.msg_type == "stream"]
    assert names.index("stderr") > names.index("stdout")  # order kept across streams
    error = await client.execute("io.write({})")
    assert error.reply.content["ename"] == "LuaError"
    assert "string expected, got table" in error.reply.content["evalue"]


@lua_test
async def test_utf8_output_split_across_writes(client: TestClient) -> None:
    result = await ok(client, "local s = 'héllo ✓' for i = 1, #s do io.write(s:sub(i, i)) end")
    assert result.stdout == "héllo ✓"


@lua_test
async def test_output_is_streamed_while_the_cell_runs(client: TestClient) -> None:
    # The cell never ends by itself: seeing its output before interrupting it proves the
    # output was published while Lua was still running.
    msg_id = await start(client, "print('started')\nwhile true do end")
    before = await wait_for_stream(client, msg_id, "started")
    assert not any(m.msg_type == "execute_result" for m in before)
    client.send("interrupt_request", {}, Channel.CONTROL)
    result = await finish(client, msg_id, before)
    assert result.reply.content["ename"] == "KeyboardInterrupt"
    assert result.stdout == "started\n"


@lua_test
async def test_large_output_is_delivered_in_order(client: TestClient) -> None:
    result = await ok(client, "for i = 1, 20000 do print(i) end")
    assert result.stdout == "".join(f"{i}\n" for i in range(1, 20001))


# -- errors ------------------------------------------------------------------------------------


@lua_test
async def test_runtime_error_has_a_clean_lua_traceback(client: TestClient) -> None:
    await ok(client, "function inner() error('boom') end\nfunction outer() inner() end")
    result = await client.execute("outer()")
    content = result.reply.content
    assert content["status"] == "error"
    assert content["ename"] == "LuaError"
    assert content["evalue"] == "In[1]:1: boom"
    tb = "\n".join(content["traceback"])
    assert "stack traceback:" in tb
    assert "in function 'inner'" in tb or "in global 'inner'" in tb
    assert "In[1]:2: in function 'outer'" in tb or "In[1]:2: in global 'outer'" in tb
    assert "kernelsdk_lua" not in tb and "xpcall" not in tb
    errors = [m for m in result.iopub if m.msg_type == "error"]
    assert errors and errors[0].content["ename"] == "LuaError"
    assert await value(client, "1") == "1"  # the kernel carries on


@lua_test
async def test_syntax_error_and_error_objects(client: TestClient) -> None:
    result = await client.execute("x = = 1")
    assert result.reply.content["ename"] == "SyntaxError"
    assert "In[1]:1:" in result.reply.content["evalue"]
    result = await client.execute("error({code = 42})")
    assert result.reply.content["evalue"] == "(error object is a table value: {code = 42})"
    result = await client.execute(
        "error(setmetatable({}, {__tostring = function() return 'E!' end}))"
    )
    assert result.reply.content["evalue"] == "E!"
    result = await client.execute("error()")
    assert result.reply.content["evalue"] == "nil"
    result = await client.execute("coroutine.yield(1)")
    assert result.reply.content["ename"] == "LuaError"
    result = await client.execute("os.exit(1)")
    assert "os.exit is disabled" in result.reply.content["evalue"]
    assert await value(client, "'still alive'") == '"still alive"'


# -- interrupts --------------------------------------------------------------------------------

LOOPS = [
    "while true do end",
    "while true do local s = string.rep('x', 1000) end",
    "table.sort({3, 2, 1, 5, 4}, function(a, b) while true do end end)",  # inside a C function
    "while true do pcall(function() while true do end end) end",
    "local co = coroutine.wrap(function() while true do end end) co()",
    "local n = 0 while true do n = n + 1 if n % 100000 == 0 then io.write('.') end end",
    "while true do print('flood') end",  # the output buffer fills: backpressure
]


async def interrupt_running(client: TestClient, code: str, how: str) -> RequestResult:
    msg_id = await start(client, f"io.write('go\\n')\n{code}")
    before = await wait_for_stream(client, msg_id, "go")
    if how == "message":
        client.send("interrupt_request", {}, Channel.CONTROL)
    else:  # what SIGINT does in a served kernel
        client.server.interrupt()  # type: ignore[attr-defined]
    return await finish(client, msg_id, before)


@pytest.mark.parametrize("how", ["message", "signal"])
@pytest.mark.parametrize("code", LOOPS)
def test_interrupt_stops_lua_and_keeps_state(code: str, how: str) -> None:
    @lua_test
    async def check(client: TestClient) -> None:
        await ok(client, "kept = 41")
        result = await interrupt_running(client, code, how)
        assert result.reply.content["status"] == "error"
        assert result.reply.content["ename"] == "KeyboardInterrupt"
        assert await value(client, "kept + 1") == "42"
        # the hook is gone: a long computation runs to its end
        assert await value(client, "local s = 0 for i = 1, 100000 do s = s + i end return s") == (
            "5000050000"
        )

    check()


@lua_test
async def test_interrupts_at_random_moments(client: TestClient) -> None:
    """Many rounds: interrupt a cell at a random moment, whether it loops forever or has
    already finished; the state stays consistent and usable."""
    rng = random.Random(1234)
    await ok(client, "count = 0")
    expected = 0
    for _ in range(60):
        code = rng.choice(
            [
                "count = count + 1",
                "count = count + 1; for i = 1, 20000 do end",
                "count = count + 1; while true do end",
                "count = count + 1; table.sort({1, 2, 3}, function(a, b) while true do end end)",
            ]
        )
        msg_id = await start(client, code)
        await trio.sleep(rng.random() * 0.01)
        client.send("interrupt_request", {}, Channel.CONTROL)
        result = await client.collect(msg_id)
        status = result.reply.content["status"]
        assert status in ("ok", "error")
        if status == "error":
            assert result.reply.content["ename"] == "KeyboardInterrupt"
        # The cell may have been stopped before its first instruction, or after it.
        now = int(await value(client, "count") or "-1")
        assert now in (expected, expected + 1)
        expected = now
    assert await value(client, "'usable'") == '"usable"'


@lua_test
async def test_interrupt_while_waiting_for_input(client: TestClient) -> None:
    msg_id = client.send(
        "execute_request", {"code": "x = io.read()", "silent": False, "allow_stdin": True}
    )
    request = await client.receive(Channel.STDIN)
    assert request.msg_type == "input_request"
    client.send("interrupt_request", {}, Channel.CONTROL)
    result = await client.collect(msg_id)
    assert result.reply.content["ename"] == "KeyboardInterrupt"
    assert await value(client, "1 + 1") == "2"


# -- stdin -----------------------------------------------------------------------------------


@lua_test
async def test_io_read_asks_the_frontend(client: TestClient) -> None:
    result = await ok(
        client,
        "io.write('name? ') local name = io.read() local n = io.read('n') print(name, n * 2)",
        input=["Ada", "21"],
    )
    assert result.stdout == "name? Ada\t42\n"
    result = await ok(client, "for line in io.lines() do print(#line) break end", input=["abc"])
    assert result.stdout == "3\n"


@lua_test
async def test_io_read_without_stdin_is_a_clear_lua_error(client: TestClient) -> None:
    result = await client.execute("local ok, err = pcall(io.read) print(ok, err) return io.read()")
    assert (
        result.stdout
        == "false\tio.read: this frontend does not accept input (allow_stdin is false)\n"
    )
    assert result.reply.content["ename"] == "LuaError"
    assert "allow_stdin is false" in result.reply.content["evalue"]


# -- is_complete, completion, inspection --------------------------------------------------------


@lua_test
async def test_is_complete(client: TestClient) -> None:
    async def status(code: str) -> dict[str, Any]:
        return (await client.request("is_complete_request", {"code": code})).reply.content

    assert (await status("x = 1"))["status"] == "complete"
    assert (await status("1 + 1"))["status"] == "complete"
    assert (await status(""))["status"] == "complete"
    for code, indent in [
        ("for i = 1, 3 do", "  "),
        ("function f(a)", "  "),
        ("t = {", "  "),
        ("if x then\n  y = 1", "  "),
        ("if x then\n  while y do", "    "),
        ("s = [[long", ""),
        ("t = {1, 2,", ""),
    ]:
        reply = await status(code)
        assert reply["status"] == "incomplete", code
        assert reply["indent"] == indent, code
    assert (await status("x = = 1"))["status"] == "invalid"
    assert (await status("end"))["status"] == "invalid"


async def complete(client: TestClient, code: str, pos: int | None = None) -> dict[str, Any]:
    content = {"code": code, "cursor_pos": len(code) if pos is None else pos}
    return (await client.request("complete_request", content)).reply.content


@lua_test
async def test_completion(client: TestClient) -> None:
    await ok(client, "s = 'text'; a = {b = {c = 1, cat = 2}}; my_var = 1; my_fun = print")
    reply = await complete(client, "string.fo")
    assert reply["matches"] == ["format"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (7, 9)
    reply = await complete(client, "x = s:up")
    assert reply["matches"] == ["upper"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (6, 8)
    reply = await complete(client, "a.b.c")
    assert reply["matches"] == ["c", "cat"]
    assert reply["cursor_start"] == 4
    reply = await complete(client, "print(my_")
    assert reply["matches"] == ["my_fun", "my_var"]
    assert reply["cursor_start"] == 6
    types = {t["text"]: t["type"] for t in reply["metadata"]["_jupyter_types_experimental"]}
    assert types == {"my_fun": "function", "my_var": "number"}
    assert (await complete(client, "whi"))["matches"] == ["while"]
    assert "table" in (await complete(client, "tab"))["matches"]
    assert (await complete(client, "nothing.her"))["matches"] == []
    # cursor positions count code points, not bytes
    reply = await complete(client, "x = 'é' .. string.re")
    assert reply["matches"] == ["rep", "reverse"]
    assert reply["cursor_start"] == len("x = 'é' .. string.")
    # cursor in the middle of the code
    reply = await complete(client, "string.fo(1)", 9)
    assert reply["matches"] == ["format"] and reply["cursor_end"] == 9


@lua_test
async def test_inspection(client: TestClient) -> None:
    await ok(client, "answer = 42\nfunction add(a, b, ...)\n  return a + b\nend")

    async def inspect(code: str, detail: int = 0) -> dict[str, Any]:
        content = {"code": code, "cursor_pos": len(code), "detail_level": detail}
        return (await client.request("inspect_request", content)).reply.content

    reply = await inspect("answer")
    assert reply["found"] is True
    assert reply["data"]["text/plain"] == "answer: number\n42"
    text = (await inspect("add", 1))["data"]["text/plain"]
    assert text.startswith("add: function\nfunction add(a, b, ...)\ndefined at In[1]:2")
    assert "return a + b" in text  # detail_level 1 shows the source
    text = (await inspect("x = string.format"))["data"]["text/plain"]
    assert "string.format(fmt, ...)" in text
    text = (await inspect("math"))["data"]["text/plain"]
    assert text.startswith("math: table\n{") and "pi = 3.1415926535898" in text
    assert (await inspect("undefined_name"))["found"] is False
    # inspection runs no user code (it could not be interrupted): no __tostring
    await ok(client, "obj = setmetatable({}, {__tostring = function() while true do end end})")
    assert (await inspect("obj"))["data"]["text/plain"] == "obj: table\n<table with __tostring>"
    assert (await inspect("  "))["found"] is False


# -- rich display and comms --------------------------------------------------------------------


@lua_test
async def test_display_module(client: TestClient) -> None:
    png = bytes(range(256))
    lua_png = "".join(f"\\{b}" for b in png)
    result = await ok(
        client,
        "display.html('<b>hi</b>')\n"
        "display.markdown('# title')\n"
        "display.latex('$x^2$')\n"
        "display.svg('<svg></svg>')\n"
        f"display.png('{lua_png}', {{width = 10}})\n"
        "display.json({a = 1, list = {1, 2, 3}})\n"
        "display.mime({['text/plain'] = 'plain', ['text/x-custom'] = 'custom'})\n"
        "display(1, 'two')",
    )
    shown = [m.content for m in result.outputs if m.msg_type == "display_data"]
    assert [sorted(c["data"]) for c in shown] == [
        ["text/html", "text/plain"],
        ["text/markdown", "text/plain"],
        ["text/latex", "text/plain"],
        ["image/svg+xml", "text/plain"],
        ["image/png", "text/plain"],
        ["application/json", "text/plain"],
        ["text/plain", "text/x-custom"],
        ["text/plain"],
    ]
    assert shown[0]["data"]["text/html"] == "<b>hi</b>"
    assert base64.b64decode(shown[4]["data"]["image/png"]) == png
    assert shown[4]["metadata"] == {"image/png": {"width": 10}}
    assert shown[5]["data"]["application/json"] == {"a": 1, "list": [1, 2, 3]}
    assert shown[6]["data"]["text/x-custom"] == "custom"
    assert shown[7]["data"]["text/plain"] == '1, "two"'
    assert result_text(result) is None  # display calls return nothing


@lua_test
async def test_display_ids_updates_and_clear_output(client: TestClient) -> None:
    result = await ok(
        client,
        "local id = display.text('0%', {display_id = 'bar'})\n"
        "display.update(id, {['text/plain'] = '100%'})\n"
        "display.html('<i>x</i>', {display_id = 'bar', update = true})\n"
        "print('x') display.clear_output(true)",
    )
    kinds = [m.msg_type for m in result.outputs]
    assert kinds == [
        "display_data",
        "update_display_data",
        "update_display_data",
        "stream",
        "clear_output",
    ]
    assert result.outputs[0].content["transient"] == {"display_id": "bar"}
    assert result.outputs[1].content["data"] == {"text/plain": "100%"}
    assert result.outputs[2].content["data"]["text/html"] == "<i>x</i>"
    assert result.outputs[4].content == {"wait": True}
    error = await client.execute("display.update(nil, {})")
    assert "needs a display_id" in error.reply.content["evalue"]


@lua_test
async def test_comms_from_lua(client: TestClient) -> None:
    result = await ok(
        client,
        "c = jupyter.comm_open('lua.target', {hello = 'world'})\n"
        "c:on_msg(function(comm, data) comm:send({echo = data.n}) end)\n"
        "c:send({n = 1})",
    )
    opened = [m for m in result.outputs if m.msg_type == "comm_open"]
    assert len(opened) == 1
    assert opened[0].content["target_name"] == "lua.target"
    assert opened[0].content["data"] == {"hello": "world"}
    comm_id = opened[0].content["comm_id"]
    sent = [m for m in result.outputs if m.msg_type == "comm_msg"]
    assert sent[0].content == {"comm_id": comm_id, "data": {"n": 1}}
    # the frontend answers: the Lua handler runs and replies
    client.send("comm_msg", {"comm_id": comm_id, "data": {"n": 7}})
    reply = await next_iopub(client, "comm_msg")
    assert reply.content == {"comm_id": comm_id, "data": {"echo": 7}}
    # a target registered from Lua receives comms the frontend opens
    await ok(
        client,
        "jupyter.register_target('lua.echo', function(comm, data)\n"
        "  comm:send({opened = data.x})\n"
        "  comm:on_msg(function(c, d) c:send({got = d.y}) end)\nend)",
    )
    client.send("comm_open", {"comm_id": "front-1", "target_name": "lua.echo", "data": {"x": 5}})
    assert (await next_iopub(client, "comm_msg")).content["data"] == {"opened": 5}
    client.send("comm_msg", {"comm_id": "front-1", "data": {"y": [1, "a"]}})
    assert (await next_iopub(client, "comm_msg")).content["data"] == {"got": [1, "a"]}
    result = await ok(client, "c:close()")
    assert [m.msg_type for m in result.outputs] == ["comm_close"]


@lua_test
async def test_endless_comm_handler_is_interrupted(client: TestClient) -> None:
    await ok(
        client,
        "jupyter.register_target('lua.spin', function(comm, data)\n"
        "  comm:send({started = true})\n  while true do end\nend)",
    )
    client.send("comm_open", {"comm_id": "spin-1", "target_name": "lua.spin", "data": {}})
    assert (await next_iopub(client, "comm_msg")).content["data"] == {"started": True}
    client.send("interrupt_request", {}, Channel.CONTROL)
    assert await value(client, "'free again'") == '"free again"'


async def next_iopub(client: TestClient, msg_type: str) -> Message:
    while True:
        msg = await client.receive(Channel.IOPUB)
        if msg.msg_type == msg_type:
            return msg


# -- other Lua versions and runtimes -------------------------------------------------------


@pytest.mark.parametrize(
    "kernel_class",
    [Lua51Kernel, Lua52Kernel, Lua53Kernel, Lua55Kernel],
    ids=["lua51", "lua52", "lua53", "lua55"],
)
def test_other_lua_versions(kernel_class: type[LuaKernel]) -> None:
    async def main() -> None:
        with trio.fail_after(GUARD):
            async with open_test_kernel(kernel_class()) as client:
                assert await value(client, "_VERSION") == f'"Lua {kernel_class.lua_version}"'
                assert await value(client, "t = {1, x = 2}; t") == "{1, x = 2}"
                assert (await ok(client, "print('hi')")).stdout == "hi\n"
                result = await interrupt_running(client, LOOPS[2], "message")
                assert result.reply.content["ename"] == "KeyboardInterrupt"
                for code in LOOPS[3:5]:
                    result = await interrupt_running(client, code, "signal")
                    assert result.reply.content["ename"] == "KeyboardInterrupt"
                assert await value(client, "1 + 1") == "2"
                assert (await complete(client, "string.fo"))["matches"] == ["format"]
                info = await client.request("kernel_info_request")
                assert info.reply.content["language_info"]["version"] == kernel_class.lua_version

    trio.run(main)


def test_missing_runtime_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERNELSDK_LUA54_LIBRARY", "/nonexistent/liblua.so")
    with pytest.raises(LuaNotFoundError) as info:
        load_library("5.4")
    message = str(info.value)
    assert "pip install 'lupa>=2,<3'" in message and "liblua5.4-0" in message
    assert "/nonexistent/liblua.so" in message


def test_library_without_the_lua_api_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes.util

    libc = ctypes.util.find_library("c")
    assert libc is not None
    monkeypatch.setenv("KERNELSDK_LUA54_LIBRARY", libc)
    with pytest.raises(LuaNotFoundError, match="lacks luaL_newstate"):
        load_library("5.4")


@lua_test
async def test_kernel_info(client: TestClient) -> None:
    info = (await client.request("kernel_info_request")).reply.content
    assert info["implementation"] == "kernelsdk-lua"
    assert info["language_info"]["name"] == "lua"
    assert info["language_info"]["version"] == "5.4"
    assert info["language_info"]["file_extension"] == ".lua"
    assert info["banner"].startswith("Lua 5.4")


def _system_lua_present() -> bool:
    try:
        import cffi

        cffi.FFI().dlopen("liblua5.4.so.0")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _system_lua_present(), reason="Debian's liblua5.4-0 is not installed")
def test_system_lua(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's liblua5.4.so.0, in ABI mode too (the whole file passes with
    KERNELSDK_LUA54_LIBRARY=liblua5.4.so.0; this is the short version)."""
    monkeypatch.setenv("KERNELSDK_LUA54_LIBRARY", "liblua5.4.so.0")

    async def main() -> None:
        kernel = LuaKernel()
        assert kernel.library.path == "liblua5.4.so.0"
        with trio.fail_after(GUARD):
            async with open_test_kernel(kernel) as client:
                assert await value(client, "_VERSION") == '"Lua 5.4"'
                assert (await ok(client, "print(1 + 1)")).stdout == "2\n"
                for code in LOOPS[:3]:
                    result = await interrupt_running(client, code, "message")
                    assert result.reply.content["ename"] == "KeyboardInterrupt"
                assert await value(client, "string.rep('a', 3)") == '"aaa"'

    trio.run(main)


def test_memory_limit_leaves_the_kernel_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    """KERNELSDK_LUA_MEMORY_LIMIT=16M: a runaway table and one huge string.rep fail with a
    MemoryError that says why, the failed cells' garbage is collected, the state survives
    and Lua's own allocator is back."""
    monkeypatch.setenv("KERNELSDK_LUA_MEMORY_LIMIT", "16M")

    async def main() -> None:
        kernel = LuaKernel()
        memory = kernel.lua.memory
        assert memory is not None and memory.limit == 16 << 20
        with trio.fail_after(GUARD):
            async with open_test_kernel(kernel) as client:
                await ok(client, "keep = {1, 2, 3}")
                for code in ["local t = {} for i = 1, 1e8 do t[i] = i end", "s = ('x'):rep(2^25)"]:
                    result = await client.execute(code)
                    assert result.reply.content["ename"] == "MemoryError"
                    evalue = result.reply.content["evalue"]
                    assert evalue.startswith("not enough memory"), evalue
                    assert "16.0 MiB" in evalue and "KERNELSDK_LUA_MEMORY_LIMIT" in evalue
                    assert not memory.precise  # after the cell: Lua's allocator again
                assert memory.refused >= 2
                # the failed cells' garbage is collected
                assert await value(client, "collectgarbage(); collectgarbage('count') < 1024") == (
                    "true"
                )
                assert await value(client, "s") == "nil"
                assert await value(client, "#keep, #string.rep('y', 2^20)") == "3, 1048576"

    trio.run(main)


def test_memory_guard_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable, half of the memory the process can get (here: the machine's)."""
    monkeypatch.delenv("KERNELSDK_LUA_MEMORY_LIMIT", raising=False)

    async def main() -> None:
        kernel = LuaKernel()
        memory = kernel.lua.memory
        assert memory is not None and memory.limit >= 32 << 20
        assert memory.origin.startswith("50% of the ")
        with trio.fail_after(GUARD):
            async with open_test_kernel(kernel) as client:
                # Far from the limit nothing counts allocations: Lua's allocator serves them.
                await ok(client, "local t = {} for i = 1, 1e5 do t[i] = {i} end")
                assert not memory.precise and memory.engagements == 0

    trio.run(main)


def test_memory_guard_keeps_a_users_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard's check after each GC cycle borrows the thread's hook once and puts a hook
    set with debug.sethook back (so profilers and tracers keep working)."""
    monkeypatch.setenv("KERNELSDK_LUA_MEMORY_LIMIT", "64M")

    async def main() -> None:
        with trio.fail_after(GUARD):
            async with open_test_kernel(LuaKernel()) as client:
                code = (
                    "calls = 0\n"
                    "debug.sethook(function() calls = calls + 1 end, '', 1000)\n"
                    "for i = 1, 3e5 do local t = {i, tostring(i)} end\n"  # many GC cycles
                    "local before = calls\n"
                    "for i = 1, 1e5 do end\n"
                    "local hook, mask, count = debug.gethook()\n"
                    "debug.sethook()\n"
                    "return before > 100, calls > before, mask, count"
                )
                assert await value(client, code) == 'true, true, "", 1000'

    trio.run(main)


def test_memory_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from kernelsdk_lua._memory import available_memory, memory_limit

    assert memory_limit("off") is None
    assert memory_limit("OFF") is None
    explicit = memory_limit("256M")
    assert explicit is not None and explicit.limit == 256 << 20
    available = available_memory()
    assert available is not None
    quarter = memory_limit("25%")
    default = memory_limit(None)
    assert quarter is not None and default is not None
    # the available memory moves a little between two readings (other processes)
    assert abs(quarter.limit - available[0] // 4) < available[0] // 20
    assert abs(default.limit - available[0] // 2) < available[0] // 20
    bad = memory_limit("lots")  # ignored with a warning: the default
    assert bad is not None and bad.origin.startswith("50% of the ")


# -- io.popen, C modules ------------------------------------------------------------------


@lua_test
async def test_io_popen_reads_writes_and_reports_the_exit_status(client: TestClient) -> None:
    assert await value(client, "f = io.popen('echo hi; echo there'); f:read('l'), io.type(f)") == (
        '"hi", "file"'
    )
    assert await value(client, "f:read('a'), f:close()") == '"there\\n", true, "exit", 0'
    result = await ok(client, "for l in io.popen('printf \"a\\nb\\n\"'):lines() do print(l) end")
    assert result.stdout == "a\nb\n"
    assert await value(client, "io.popen('exit 3'):close()") == 'nil, "exit", 3'
    assert await value(client, "io.popen('kill -9 $$'):close()") == 'nil, "signal", 9'
    # "w": the command reads what Lua writes; its output and stderr appear in the cell
    result = await ok(
        client,
        "local w = io.popen('tr a-z A-Z; echo oops >&2', 'w')\n"
        "w:write('hello\\n')\n"
        "return io.close(w)",
    )
    assert result.stdout == "HELLO\n" and result.stderr == "oops\n"
    assert result_text(result) == 'true, "exit", 0'
    result = await ok(client, "local f <close> = io.popen('echo x; ls /nonexistent') f:read('a')")
    assert "No such file or directory" in result.stderr
    result = await client.execute("io.popen('true', 'rw')")
    assert "bad argument #2 to 'popen' (invalid mode)" in result.reply.content["evalue"]


@lua_test
async def test_interrupt_stops_a_read_from_io_popen(client: TestClient) -> None:
    """Lua blocked in a read from the pipe is out of any hook's reach: the interrupt stops
    the command (its own process group), the read returns, the hook stops the cell."""
    await ok(client, "kept = 1")
    msg_id = await start(
        client, "local f = io.popen('sleep 60') io.write('reading\\n') f:read('a')"
    )
    before = await wait_for_stream(client, msg_id, "reading")
    await trio.sleep(0.2)  # most likely in the read by now (either way the cell must stop)
    client.send("interrupt_request", {}, Channel.CONTROL)
    result = await finish(client, msg_id, before)
    assert result.reply.content["ename"] == "KeyboardInterrupt"
    assert await value(client, "kept") == "1"


def _lua_module_dir(version: str, name: str) -> str | None:
    import glob

    found = glob.glob(f"/usr/lib/*/lua/{version}/{name}.so")
    return found[0] if found else None


def _run_in_a_kernel_process(code: str, env: dict[str, str]) -> str:
    """Run ``code`` in a fresh Lua kernel (served in memory) in a new Python process: making
    Lua's symbols global for C modules cannot be undone, so not in the test process."""
    import os
    import subprocess
    import sys

    script = (
        "import trio, json, sys\n"
        "from kernelsdk_lua import LuaKernel\n"
        "from kernelsdk.testing import open_test_kernel\n"
        "async def main():\n"
        "    async with open_test_kernel(LuaKernel()) as client:\n"
        "        r = await client.execute(sys.argv[1])\n"
        "        data = [m.content['data']['text/plain'] for m in r.outputs\n"
        "                if m.msg_type == 'execute_result']\n"
        "        print(json.dumps({'reply': r.reply.content, 'value': data}))\n"
        "trio.run(main)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


LUA_LIBRARIES = [
    pytest.param({}, id="lupa"),
    pytest.param(
        {"KERNELSDK_LUA54_LIBRARY": "liblua5.4.so.0"},
        id="system",
        marks=pytest.mark.skipif(
            not _system_lua_present(), reason="Debian's liblua5.4-0 is not installed"
        ),
    ),
]


@pytest.mark.parametrize("env", LUA_LIBRARIES)
@pytest.mark.skipif(
    _lua_module_dir("5.4", "lpeg") is None or _lua_module_dir("5.4", "lfs") is None,
    reason="Debian's lua-lpeg and lua-filesystem are not installed "
    "(apt-get install lua-lpeg lua-filesystem)",
)
def test_c_modules_from_debian_packages(env: dict[str, str]) -> None:
    import json

    code = (
        "local lpeg, lfs = require 'lpeg', require 'lfs'\n"
        "return lpeg.match(lpeg.C(lpeg.P'a'^1), 'aaab'), type(lfs.currentdir())"
    )
    outcome = json.loads(_run_in_a_kernel_process(code, env))
    assert outcome["reply"]["status"] == "ok", outcome
    assert outcome["value"] == ['"aaa", "string"']


@pytest.mark.skipif(
    _lua_module_dir("5.1", "lfs") is None,
    reason="Debian's lua-filesystem is not installed (apt-get install lua-filesystem)",
)
def test_c_module_for_another_lua_says_what_to_do() -> None:
    import json

    directory = str(_lua_module_dir("5.1", "lfs")).rsplit("/", 1)[0]
    code = f"package.cpath = '{directory}/?.so;' .. package.cpath\nrequire 'lfs'"
    reply = json.loads(_run_in_a_kernel_process(code, {}))["reply"]
    assert reply["status"] == "error"
    assert "undefined symbol" in reply["evalue"]
    assert "built for another Lua version than this kernel's Lua 5.4" in reply["evalue"]
    assert "luarocks --lua-version 5.4 install" in reply["evalue"]


def test_parse_size() -> None:
    from kernelsdk_lua._memory import parse_size

    assert parse_size("1024") == 1024
    assert parse_size("64M") == 64 << 20
    assert parse_size("1.5g") == 3 << 29
    assert parse_size("512KB") == 512 << 10
