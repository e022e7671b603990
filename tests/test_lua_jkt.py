"""jupyter_kernel_test's conformance suite against the installed ``lua54`` kernelspec
(``python -m kernelsdk install lua54``), plus what a real process adds: SIGINT interrupts
and the heartbeat while Lua holds a worker thread."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import jupyter_kernel_test as jkt
import pytest
from conftest import JupyterEnv
from jupyter_kernel_test.msgspec_v5 import validate_message

from kernelsdk.protocol import PROTOCOL_VERSION


@pytest.fixture(scope="session")
def lua_kernelspec(jupyter_env: JupyterEnv) -> Iterator[dict[str, Any]]:
    """``python -m kernelsdk install lua54`` into the session's private Jupyter prefix
    (``--replace``: the ``jupyter_env`` fixture installed it already, for the other tests)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kernelsdk",
            "install",
            "lua54",
            "--replace",
            "--prefix",
            str(jupyter_env.prefix),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    spec_file = jupyter_env.kernels_dir / "lua54" / "kernel.json"
    assert proc.returncode == 0, proc.stderr
    yield json.loads(spec_file.read_text(encoding="utf-8"))


PNG = "\\137PNG\\r\\n\\026\\n"  # the PNG signature as a Lua string literal


class LuaKernelTests(jkt.KernelTests):
    kernel_name = "lua54"
    language_name = "lua"
    file_extension = ".lua"

    code_hello_world = 'print("hello, world")'
    code_stderr = 'io.stderr:write("oops\\n")'
    code_generate_error = 'error("boom")'
    code_execute_result: ClassVar[list[dict[str, str]]] = [
        {"code": "6 * 7", "result": "42"},
        {"code": "'a' .. 'b'", "result": '"ab"'},
        {"code": "{1, 2, x = 3}", "result": "{1, 2, x = 3}"},
        {"code": "local t = {}\nt.n = 5\nt.n", "result": "5"},
        {"code": "return 1, 2", "result": "1, 2"},
    ]
    code_display_data: ClassVar[list[dict[str, str]]] = [
        {"code": "display.html('<b>hi</b>')", "mime": "text/html"},
        {"code": "display.markdown('*hi*')", "mime": "text/markdown"},
        {"code": f"display.png('{PNG}')", "mime": "image/png"},
        {"code": "display.json({a = {1, 2}})", "mime": "application/json"},
    ]
    completion_samples: ClassVar[list[dict[str, Any]]] = [
        {"text": "string.fo", "matches": ["format"]},
        {"text": "math.fl", "matches": ["floor"]},
        {"text": "coroutine.isy", "matches": ["isyieldable"]},
        {"text": "nothing_here_at_all", "matches": []},
    ]
    complete_code_samples: ClassVar[list[str]] = ["x = 1", "print(1)", "1 + 1", ""]
    incomplete_code_samples: ClassVar[list[str]] = ["for i = 1, 2 do", "function f()", "t = {"]
    invalid_code_samples: ClassVar[list[str]] = ["x = = 1", "end", "1 +* 2"]
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "6 * 7"
    code_inspect_sample = "print"
    code_clear_output = "display.clear_output()"

    # -- beyond jupyter_kernel_test ------------------------------------------------------------

    def test_lua_kernel_info(self) -> None:
        self.flush_channels()
        msg_id = self.kc.kernel_info()
        reply = self.kc.get_shell_msg(timeout=15)
        validate_message(reply, "kernel_info_reply", msg_id)
        content = reply["content"]
        assert content["protocol_version"] == PROTOCOL_VERSION
        assert content["language_info"]["name"] == "lua"
        assert content["language_info"]["version"] == "5.4"
        assert self.km.kernel_spec is not None
        assert self.km.kernel_spec.display_name == "Lua 5.4"
        assert self.km.kernel_spec.interrupt_mode == "signal"

    def test_lua_sigint_interrupts_and_state_survives(self) -> None:
        """SIGINT (jupyter_client's interrupt in signal mode) stops an endless loop; the
        heartbeat answers while Lua runs; the kernel and its state survive."""
        self.flush_channels()
        reply, _ = self.execute_helper(code="kept = 41")
        assert reply["content"]["status"] == "ok"
        msg_id = self.kc.execute("io.write('looping\\n')\nwhile true do end")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the loop really runs
            msg = self.kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "stream" and "looping" in msg["content"]["text"]:
                break
        assert self.kc.hb_channel.is_beating()
        assert self.km.is_alive()
        self.km.interrupt_kernel()
        reply = self.kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        self.flush_channels()
        reply, outputs = self.execute_helper(code="kept + 1")
        assert reply["content"]["status"] == "ok"
        results = [m for m in outputs if m["msg_type"] == "execute_result"]
        assert results[0]["content"]["data"]["text/plain"] == "42"

    def test_lua_input_request(self) -> None:
        self.flush_channels()
        msg_id = self.kc.execute("name = io.read(); print('hello ' .. name)", allow_stdin=True)
        request = self.kc.get_stdin_msg(timeout=30)
        assert request["msg_type"] == "input_request"
        self.kc.input("Lua")
        reply = self.kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok"
        texts = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=2)
            except queue.Empty:
                break
            if msg["msg_type"] == "stream":
                texts.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert "".join(texts) == "hello Lua\n"


pytest.mark.usefixtures("jupyter_env", "lua_kernelspec")(LuaKernelTests)


@pytest.mark.usefixtures("jupyter_env", "lua_kernelspec")
def test_lua_notebook_through_nbclient() -> None:
    """nbclient (what nbconvert and papermill use) runs a Lua notebook."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [
        "x = 6 * 7\nprint('x is', x)",
        "x + 0.5",
        "display.markdown('**bold**')\nt = {1, 2, k = 'v'}\nt",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="lua54", timeout=60, startup_timeout=60).execute()
    first, second, third = (cell.outputs for cell in nb.cells)
    assert [(o.output_type, o.get("text")) for o in first] == [("stream", "x is\t42\n")]
    assert second[0].data == {"text/plain": "42.5"}
    assert [o.output_type for o in third] == ["display_data", "execute_result"]
    assert third[0].data["text/markdown"] == "**bold**"
    assert third[1].data == {"text/plain": '{1, 2, k = "v"}'}
    assert nb.metadata.language_info.name == "lua"
    nbformat.validate(nb)


def test_lua_kernelspec_carries_the_logos(
    lua_kernelspec: dict[str, Any], jupyter_env: JupyterEnv
) -> None:
    """JupyterLab's launcher shows them (it falls back to the first letter of the name)."""
    spec_dir = jupyter_env.kernels_dir / "lua54"
    for size in (32, 64):
        png = (spec_dir / f"logo-{size}x{size}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") == size  # IHDR width
    assert (spec_dir / "logo-svg.svg").read_text().startswith("<svg")


# -- the memory guard in a real kernel process ---------------------------------------------

#: The kernel's address space, as a safety net for the machine should the guard fail (the
#: runaway cell would then get a malloc failure, or the kernel die, instead of eating the
#: machine). Also the bound the default guard derives its limit from.
ADDRESS_SPACE = 1536 << 20
#: Starts the kernel under RLIMIT_AS (a kernel.json argv: python -c TRAMPOLINE {connection_file}).
TRAMPOLINE = (
    "import os, resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE})); "
    "os.execv(sys.executable, [sys.executable, '-m', 'kernelsdk', 'run', 'lua54', "
    "'-f', sys.argv[1]])"
)
RUNAWAY = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end"


@pytest.mark.parametrize(
    ("setting", "limit_text"),
    [("200M", "200.0 MiB (KERNELSDK_LUA_MEMORY_LIMIT)"), ("", "left by RLIMIT_AS")],
    ids=["explicit", "default"],
)
def test_lua_runaway_memory_is_an_error_and_the_kernel_survives(
    jupyter_env: JupyterEnv,
    start_kernel: Callable[..., tuple[Any, Any]],
    setting: str,
    limit_text: str,
) -> None:
    """Issue 12, fault 5: the runaway loop used to eat the machine. Now it fails with a Lua
    "not enough memory" error naming the guard's limit, with KERNELSDK_LUA_MEMORY_LIMIT=200M
    and with the default (half of what RLIMIT_AS leaves the kernel), and the next cell runs
    with the state intact."""
    name = f"lua54-memory-{setting or 'default'}"
    spec = {
        "argv": [sys.executable, "-c", TRAMPOLINE, "{connection_file}"],
        "display_name": name,
        "language": "lua",
        "interrupt_mode": "signal",
        "env": {"KERNELSDK_LUA_MEMORY_LIMIT": setting},
    }
    directory = jupyter_env.kernels_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    _, kc = start_kernel(name)
    reply = kc.execute_interactive("kept = 41", timeout=60)
    assert reply["content"]["status"] == "ok"
    reply = kc.execute_interactive(RUNAWAY, timeout=120)
    content = reply["content"]
    assert content["status"] == "error", content
    assert content["ename"] == "MemoryError"
    assert content["evalue"].startswith("not enough memory"), content["evalue"]
    assert limit_text in content["evalue"], content["evalue"]
    results: list[str] = []

    def keep_result(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "execute_result":
            results.append(msg["content"]["data"]["text/plain"])

    reply = kc.execute_interactive("kept + 1", timeout=60, output_hook=keep_result)
    assert reply["content"]["status"] == "ok"
    assert results == ["42"]
