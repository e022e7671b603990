"""C, C++ and Fortran hosts (issue 11): libkernelsdk-embed through real compilers and clients.

Hosts in tests/capi_hosts/ and the rpn kernel of examples/c-kernel/ are compiled with gcc and
gfortran against what ``python -m kernelsdk config`` prints, run as processes of their own and
driven with jupyter_client (and the conformance suite). Only the absence of a compiler skips.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from conftest import JupyterEnv, _write_spec, start_kernel_pair, stop_kernel_pair
from jupyter_client import BlockingKernelClient

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ROOT / "tests" / "capi_hosts"
EXAMPLE = ROOT / "examples" / "c-kernel"
TIMEOUT = 60

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
needs_gfortran = pytest.mark.skipif(
    shutil.which("gfortran") is None, reason="gfortran is not installed"
)


def config(*options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernelsdk", "config", *options],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def flags(*options: str) -> list[str]:
    done = config(*options)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def compile_host(source: Path, out: Path, *, fortran: bool = False) -> Path:
    if fortran:
        command = ["gfortran", "-Wall", "-Wextra", "-Werror", str(source)]
        command += flags("--fflags", "--ldflags")
    else:
        command = ["gcc", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror"]
        command += [str(source), *flags("--cflags", "--ldflags")]
    done = subprocess.run(
        [*command, "-o", str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return out


class Host:
    """A host program's process, its stdout read line by line in a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str) -> str:
        """The next line starting with ``prefix`` (fails if the host ends first)."""
        while True:
            line = self.lines.get(timeout=TIMEOUT)
            if line is None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"the host ended before {prefix!r}: {stderr}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def close(self) -> int:
        try:
            return self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()


def client_for(connection_file: str) -> BlockingKernelClient:
    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.start_channels()
    client.wait_for_ready(timeout=TIMEOUT)
    return client


def run_cell(
    client: BlockingKernelClient, code: str, **kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The execute_reply's content and the IOPub messages of the cell."""
    outputs: list[dict[str, Any]] = []
    reply = client.execute_interactive(code, timeout=TIMEOUT, output_hook=outputs.append, **kwargs)
    return reply["content"], outputs


def stdout_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def is_complete(client: BlockingKernelClient, code: str) -> str:
    msg_id = client.is_complete(code)
    reply = client.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    status: str = reply["content"]["status"]
    return status


def result_of(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    results = [m["content"]["data"] for m in outputs if m["msg_type"] == "execute_result"]
    assert len(results) == 1, outputs
    data: dict[str, Any] = results[0]
    return data


# -- config --------------------------------------------------------------------------------


@needs_gcc
def test_config_builds_once_and_caches(tmp_path: Path) -> None:
    env = {**os.environ, "KERNELSDK_EMBED_CACHE": str(tmp_path / "cache")}
    first = config("--cflags", "--ldflags", env=env)
    assert first.returncode == 0, first.stderr
    words = first.stdout.split()
    include = next(w[2:] for w in words if w.startswith("-I"))
    assert (Path(include) / "kernelsdk.h").is_file()
    libdir = next(w[2:] for w in words if w.startswith("-L"))
    library = Path(libdir) / "libkernelsdk-embed.so"
    built = library.stat().st_mtime_ns
    again = config("--cflags", "--ldflags", env=env)
    assert again.stdout == first.stdout
    assert library.stat().st_mtime_ns == built  # found in the cache, not built again
    dirs = config("--include-dir", "--lib-dir", env=env).stdout.split()
    assert dirs == [include, libdir]


def test_config_without_a_c_compiler_says_so(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KERNELSDK_EMBED_CACHE": str(tmp_path / "cache"),
        "PATH": str(tmp_path),  # no cc, gcc or clang here
        "CC": "",
    }
    done = config("--cflags", env=env)
    assert done.returncode == 2
    assert "no C compiler found" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_refuses_a_cc_that_names_no_program(tmp_path: Path) -> None:
    env = {**os.environ, "KERNELSDK_EMBED_CACHE": str(tmp_path / "cache"), "CC": "/no/such/cc"}
    done = config("--cflags", env=env)
    assert done.returncode == 2
    assert "CC='/no/such/cc': no such program" in done.stderr  # not another compiler, silently


def test_config_without_cffi_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "cffi.py").write_text("raise ImportError('cffi is not installed here')\n")
    env = {
        **os.environ,
        "KERNELSDK_EMBED_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(tmp_path),  # this cffi comes first, and fails to import
    }
    done = config("--cflags", env=env)
    assert done.returncode == 2
    assert "pip install 'kernelsdk[embed]'" in done.stderr
    assert "Traceback" not in done.stderr


def doc_programs(language: str, marker: str) -> list[tuple[str, str]]:
    """The whole programs among the ``language`` code blocks of the embedding docs."""
    block = re.compile(rf"^```{language}\n(.*?)^```", re.S | re.M)
    found = []
    for doc in ("embedding.md", "c-api.md"):
        text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
        found += [(doc, code) for code in block.findall(text) if marker in code]
    return found


@needs_gcc
@needs_gfortran
def test_the_docs_c_and_fortran_programs_compile_and_run(tmp_path: Path) -> None:
    """As written, with the compiler line the docs give: they start a kernel, run their steps
    with a poll in each, and stop it."""
    programs = [(d, c, False) for d, c in doc_programs("c", "int main(")]
    programs += [(d, c, True) for d, c in doc_programs("fortran", "program ")]
    assert len(programs) >= 2
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    for number, (doc, code, fortran) in enumerate(programs):
        source = tmp_path / f"host{number}.{'f90' if fortran else 'c'}"
        source.write_text(code)
        binary = compile_host(source, tmp_path / f"host{number}", fortran=fortran)
        done = subprocess.run(
            [str(binary)], capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
        )
        assert done.returncode == 0, (doc, done.stdout, done.stderr)
        assert "no kernel" not in done.stdout + done.stderr, (doc, done.stdout, done.stderr)
        if not fortran:
            assert "attach with: jupyter console --existing" in done.stdout, (doc, done.stdout)


def test_config_without_an_option_is_a_usage_error() -> None:
    done = config()
    assert done.returncode == 2
    assert "--cflags" in done.stderr


# -- misuse --------------------------------------------------------------------------------


@needs_gcc
@pytest.mark.parametrize("mode", ["created", "started"])
def test_misuse_returns_error_codes_with_messages(
    jupyter_env: JupyterEnv, tmp_path: Path, mode: str
) -> None:
    host = compile_host(HOSTS / "misuse.c", tmp_path / "misuse")
    done = subprocess.run(
        [str(host), mode], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("ALL OK")
    assert "FAIL" not in done.stdout


# -- a C host with the python kind ---------------------------------------------------------


@pytest.fixture(scope="module")
def pyhost(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    return compile_host(HOSTS / "pyhost.c", tmp_path_factory.mktemp("pyhost") / "pyhost")


def test_c_host_cells_see_host_arrays_and_steer_it(jupyter_env: JupyterEnv, pyhost: Path) -> None:
    host = Host([str(pyhost), "steered"])
    try:
        client = client_for(host.expect("connection_file "))
        try:
            reply, outputs = run_cell(
                client, "print(field.shape, field.dtype, field.flags.writeable)"
            )
            assert reply["status"] == "ok", reply
            assert stdout_of(outputs) == "(2, 3) float64 False\n"
            # The host writes field[i][j] = 10 i + j + step between polls: a cell sees it whole.
            reply, outputs = run_cell(client, "int(field[1, 2] - field[0, 0] + 0 * step)")
            assert result_of(outputs)["text/plain"] == "12"
            reply, outputs = run_cell(client, "(bool(field[0, 0] == step), type(step).__name__)")
            assert result_of(outputs)["text/plain"] == "(True, 'ndarray')"
            reply, outputs = run_cell(client, "1 / 0")
            assert reply["status"] == "error" and reply["ename"] == "ZeroDivisionError"
            reply, _ = run_cell(client, "gain = 2.5")
            assert reply["status"] == "ok"
            assert host.expect("gain ") == "2.5"
            reply, outputs = run_cell(client, "field[0, 0] = 1")
            assert reply["status"] == "error" and "read-only" in reply["evalue"]
            reply, _ = run_cell(client, "stop[...] = 1")
            assert reply["status"] == "ok"
            assert int(host.expect("stopped ")) > 0
        finally:
            client.stop_channels()
        assert host.close() == 0
    finally:
        host.close()


def test_heartbeat_and_kernel_info_answer_while_the_host_spins(
    jupyter_env: JupyterEnv, pyhost: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    host = Host([str(pyhost), "spinner", str(go)])
    try:
        connection_file = host.expect("connection_file ")
        host.expect("spinning")
        client = client_for(connection_file)  # kernel_info answered by the kernel thread
        try:
            info = json.loads(Path(connection_file).read_text())
            context = zmq.Context()
            try:
                heartbeat = context.socket(zmq.REQ)
                heartbeat.linger = 0
                heartbeat.connect(f"{info['transport']}://{info['ip']}:{info['hb_port']}")
                for _ in range(3):
                    heartbeat.send(b"ping")
                    assert heartbeat.poll(TIMEOUT * 1000), "no heartbeat while the host spins"
                    assert heartbeat.recv() == b"ping"
                heartbeat.close()
            finally:
                context.term()
            # A cell waits (busy) for the host's next poll; it runs once the host polls.
            msg_id = client.execute("stop[...] = 1")
            busy = client.get_iopub_msg(timeout=TIMEOUT)
            while busy["msg_type"] != "status" or busy["parent_header"].get("msg_id") != msg_id:
                busy = client.get_iopub_msg(timeout=TIMEOUT)
            assert busy["content"]["execution_state"] == "busy"
            go.touch()
            reply = client.get_shell_msg(timeout=TIMEOUT)
            assert reply["parent_header"]["msg_id"] == msg_id
            assert reply["content"]["status"] == "ok"
            host.expect("polling")
            host.expect("stopped ")
        finally:
            client.stop_channels()
        assert host.close() == 0
    finally:
        host.close()


# -- a Fortran host ------------------------------------------------------------------------


@needs_gfortran
def test_fortran_host(jupyter_env: JupyterEnv, tmp_path: Path) -> None:
    fhost = compile_host(HOSTS / "fhost.f90", tmp_path / "fhost", fortran=True)
    host = Host([str(fhost)])
    try:
        client = client_for(host.expect("connection_file "))
        try:
            # t(i, j) = 10 i + j in Fortran; the cells see the same shape, 0-based.
            _, outputs = run_cell(
                client, "print(t.shape, t[0, 0], t[2, 1], t_copy.flags.writeable)"
            )
            assert stdout_of(outputs) == "(3, 2) 11.0 32.0 False\n"
            reply, _ = run_cell(client, "gain = 4.25; stop = 1")
            assert reply["status"] == "ok", reply
            assert host.expect("gain ") == "4.25 stopped"
        finally:
            client.stop_channels()
        assert host.close() == 0
    finally:
        host.close()


# -- the rpn kernel, a language written in C -------------------------------------------------


@pytest.fixture(scope="module")
def rpn(jupyter_env: JupyterEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example built with its own script, its kernelspec installed as ``rpn``. The build
    goes to a path with "kernelsdk" in it: the session's leak check looks for that."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("kernelsdk-rpn")
    done = subprocess.run(
        [str(EXAMPLE / "build"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable, "CC": "gcc"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads((out / "share" / "jupyter" / "kernels" / "rpn" / "kernel.json").read_text())
    assert spec["argv"][1:] == ["-f", "{connection_file}"]
    _write_spec(jupyter_env.kernels_dir, "rpn", spec)
    yield "rpn"


def test_rpn_kernel_through_jupyter_client(jupyter_env: JupyterEnv, rpn: str) -> None:
    km, kc = start_kernel_pair(jupyter_env, rpn)
    try:
        info = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
        assert info["implementation"] == "rpn-kernel"
        assert info["language_info"]["name"] == "rpn"
        assert info["language_info"]["file_extension"] == ".rpn"
        reply, outputs = run_cell(kc, "1 2 + 3 *")
        assert reply["status"] == "ok"
        assert result_of(outputs)["text/plain"] == "9"
        _, outputs = run_cell(kc, '." hello, world" 4 .')
        assert stdout_of(outputs) == "hello, world\n4\n"
        reply, outputs = run_cell(kc, "1 0 /")
        assert reply["status"] == "error" and reply["ename"] == "ZeroDivisionError"
        assert [m["content"]["ename"] for m in outputs if m["msg_type"] == "error"] == [
            "ZeroDivisionError"
        ]
        reply, _ = run_cell(kc, "frobnicate")
        assert reply["ename"] == "UnknownWord" and "frobnicate" in reply["evalue"]
        # The stack lives on from cell to cell (a failed cell leaves it as it was).
        _, outputs = run_cell(kc, "html")
        html = [m["content"]["data"] for m in outputs if m["msg_type"] == "display_data"]
        assert html and "<td>9</td>" in html[0]["text/html"]
        complete = kc.complete("1 du", reply=True, timeout=TIMEOUT)["content"]
        assert complete["matches"] == ["dup"]
        assert (complete["cursor_start"], complete["cursor_end"]) == (2, 4)
        inspect = kc.inspect("2 sqrt", 4, reply=True, timeout=TIMEOUT)["content"]
        assert inspect["found"] and "square root" in inspect["data"]["text/plain"]
        assert is_complete(kc, "1 ( a comment") == "incomplete"
        assert is_complete(kc, "1 2 +") == "complete"

        def answer(message: dict[str, Any]) -> None:
            kc.input("21")

        reply = kc.execute_interactive(
            "input 2 *", timeout=TIMEOUT, allow_stdin=True, stdin_hook=answer
        )
        assert reply["content"]["status"] == "ok"
        # An interrupt stops a long cell through on_interrupt; the kernel goes on.
        msg_id = kc.execute("30 wait")
        while True:
            message = kc.get_iopub_msg(timeout=TIMEOUT)
            if message["msg_type"] == "execute_input":
                break
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        _, outputs = run_cell(kc, "dup")
        assert result_of(outputs)["text/plain"] == "42"
    finally:
        stop_kernel_pair(km, kc)
    assert not km.is_alive()


def test_rpn_kernel_passes_the_conformance_suite(jupyter_env: JupyterEnv, rpn: str) -> None:
    from kernelsdk_conformance import Options, Profile, run

    class RpnProfile(Profile):
        kernel_name = rpn
        language_name = "rpn"
        file_extension = ".rpn"
        code_hello_world = '." hello, world"'
        code_stderr = 'e." oops"'
        code_generate_error = "1 0 /"
        code_sleep = "{seconds} wait"
        code_spin = "{seconds} wait"
        code_input = "read"
        code_password = "secret"
        code_display_data = [{"code": "html", "mime": "text/html"}]
        completion_samples = [{"text": "1 sw", "matches": ["swap"]}]
        complete_code_samples = ["1 2 +"]
        incomplete_code_samples = ["1 ( still open"]
        busy_seconds = 1.0

    results = run(rpn, RpnProfile(), options=Options(timeout=10.0, fuzz_budget=25))
    failed = [f"{r.name}: {r.status} {r.message}" for r in results if r.status in ("fail", "error")]
    assert not failed, "\n".join(failed)


# -- the library loaded into this process (ctypes as the C host) -----------------------------
#
# The same library, called through ctypes from the test process: the Python side runs here,
# where coverage sees it, and a kernel's requests reach callbacks written with ctypes.


@pytest.fixture(scope="module")
def capi() -> ctypes.CDLL:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    libdir = Path(flags("--lib-dir")[0])
    lib = ctypes.CDLL(str(libdir / "libkernelsdk-embed.so"))
    lib.ksdk_last_error.restype = ctypes.c_char_p
    lib.ksdk_connection_file.restype = ctypes.c_char_p
    lib.ksdk_poll.argtypes = [ctypes.c_int, ctypes.c_double]
    lib.ksdk_expose_array.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_int,
    ]
    lib.ksdk_expose_scalar.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    lib.ksdk_input.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    return lib


def ok(capi: ctypes.CDLL, rc: int) -> int:
    assert rc >= 0, capi.ksdk_last_error().decode()
    return rc


@pytest.fixture(scope="module")
def toy(capi: ctypes.CDLL, tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """The callbacks of tests/capi_hosts/callbacks.c, a shared library of C functions."""
    out = tmp_path_factory.mktemp("toy") / "libtoy.so"
    command = ["gcc", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"]
    command += [str(HOSTS / "callbacks.c"), *flags("--cflags", "--ldflags"), "-o", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(out))


def test_in_process_native_kernel(
    jupyter_env: JupyterEnv, capi: ctypes.CDLL, toy: ctypes.CDLL
) -> None:
    k = ok(capi, capi.ksdk_create(b"inproc-native", b"native"))
    for key, value in (
        (b"language", b"toy"),
        (b"language_version", b"0.1"),
        (b"pygments_lexer", b"text"),
        (b"banner", b"a toy"),
    ):
        ok(capi, capi.ksdk_set_option(k, key, value))
    for register, name in (
        (capi.ksdk_on_execute, "toy_execute"),
        (capi.ksdk_on_complete, "toy_complete"),
        (capi.ksdk_on_inspect, "toy_inspect"),
        (capi.ksdk_on_is_complete, "toy_is_complete"),
        (capi.ksdk_on_interrupt, "toy_interrupt"),
    ):
        ok(capi, register(k, ctypes.cast(getattr(toy, name), ctypes.c_void_p), None))
    ok(capi, capi.ksdk_start(k))
    try:
        assert capi.ksdk_poll(k, 0.0) == 0  # no safe points: nothing ever waits
        client = client_for(capi.ksdk_connection_file(k).decode())
        try:
            info = client.kernel_info(reply=True, timeout=TIMEOUT)["content"]
            assert info["language_info"]["name"] == "toy"
            assert info["implementation"] == "toy" and info["banner"] == "a toy"
            reply, outputs = run_cell(client, "hi")
            assert reply["status"] == "ok"
            assert stdout_of(outputs) == "echo: hi"
            assert result_of(outputs)["text/plain"] == "éhi"
            displays = [m["content"]["data"] for m in outputs if m["msg_type"] == "display_data"]
            assert displays == [{"application/json": {"a": [1, 2]}}]
            # The request has ended: its id is refused, with a message.
            last = ctypes.c_int.in_dll(toy, "last_request").value
            assert capi.ksdk_stream(last, b"stdout", b"late") == -4
            assert b"not running" in capi.ksdk_last_error()
            reply, outputs = run_cell(client, "fail")
            assert (reply["status"], reply["ename"], reply["evalue"]) == (
                "error",
                "Boom",
                "it failed",
            )
            assert reply["traceback"] == ["line 1", "line 2"]
            reply, _ = run_cell(client, "status")
            assert reply["status"] == "error" and "returned 3" in reply["evalue"]
            reply, outputs = run_cell(client, "bad")
            assert reply["status"] == "ok" and stdout_of(outputs) == "all refused\n"
            outputs = []
            reply = client.execute_interactive(
                "ask",
                timeout=TIMEOUT,
                allow_stdin=True,
                stdin_hook=lambda message: client.input("abcdef"),
                output_hook=outputs.append,
            )
            assert reply["content"]["status"] == "ok"
            assert stdout_of(outputs) == "6 abc\n"
            _, outputs = run_cell(client, "ask", allow_stdin=False)
            assert stdout_of(outputs) == "-8 \n"
            matches = client.complete("x = al", reply=True, timeout=TIMEOUT)["content"]
            assert matches["matches"] == ["alpha", "alps"]
            assert (matches["cursor_start"], matches["cursor_end"]) == (4, 6)
            ranged = client.complete("rangeé", reply=True, timeout=TIMEOUT)["content"]
            assert (ranged["cursor_start"], ranged["cursor_end"]) == (0, 6)
            found = client.inspect("é abc", 3, reply=True, timeout=TIMEOUT)["content"]
            assert found["found"] and found["data"]["text/plain"] == "at 4 level 0"
            missing = client.inspect("nothing", 2, reply=True, timeout=TIMEOUT)["content"]
            assert not missing["found"]
            assert is_complete_reply(client, "f {") == ("incomplete", "    ")
            assert is_complete_reply(client, "bad")[0] == "invalid"
            assert is_complete_reply(client, "?")[0] == "unknown"
            assert is_complete_reply(client, "x")[0] == "complete"
        finally:
            client.stop_channels()
    finally:
        ok(capi, capi.ksdk_stop(k))
    assert capi.ksdk_shutdown_requested(k) == 0


def is_complete_reply(client: BlockingKernelClient, code: str) -> tuple[str, str]:
    msg_id = client.is_complete(code)
    reply = client.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    return reply["content"]["status"], reply["content"].get("indent", "")


def test_in_process_python_kernel_shares_host_memory(
    jupyter_env: JupyterEnv, capi: ctypes.CDLL
) -> None:
    data = (ctypes.c_double * 6)(*range(6))
    shape = (ctypes.c_int64 * 2)(2, 3)
    gain = ctypes.c_double(1.0)
    count = ctypes.c_int32(7)
    fortran = (ctypes.c_float * 6)(*range(6))
    k = ok(capi, capi.ksdk_create(b"inproc-python", b"python"))
    ok(capi, capi.ksdk_set_option(k, b"safe_points", b"1"))
    ok(capi, capi.ksdk_expose_array(k, b"data", data, b"double", 2, shape, 1))
    ok(capi, capi.ksdk_expose_array(k, b"fortran", fortran, b"float32", 2, shape, 2))
    ok(capi, capi.ksdk_expose_scalar(k, b"gain", ctypes.byref(gain), b"float64", 1))
    ok(capi, capi.ksdk_start(k))
    # Exposed after the start too, straight into the namespace.
    ok(capi, capi.ksdk_expose_scalar(k, b"count", ctypes.byref(count), b"int", 0))
    assert capi.ksdk_set_option(k, b"ip", b"127.0.0.1") == -3
    stop = threading.Event()

    def host_loop() -> None:  # the host's time steps: a safe point each
        while not stop.is_set():
            assert capi.ksdk_poll(k, 0.05) >= 0

    host = threading.Thread(target=host_loop)
    host.start()
    try:
        client = client_for(capi.ksdk_connection_file(k).decode())
        try:
            _, outputs = run_cell(client, "data[1, 2] = 50.0; float(data.sum())")
            assert result_of(outputs)["text/plain"] == "60.0"
            assert data[5] == 50.0  # the host's memory
            _, outputs = run_cell(client, "(fortran.shape, float(fortran[1, 0]))")
            assert result_of(outputs)["text/plain"] == "((2, 3), 1.0)"
            reply, _ = run_cell(client, "gain = 2")
            assert reply["status"] == "ok" and gain.value == 2.0
            _, outputs = run_cell(client, "gain = 'loud'")
            assert "gain takes a number" in "".join(
                m["content"]["text"] for m in outputs if m["msg_type"] == "stream"
            )
            _, outputs = run_cell(client, "count = 9")
            assert "count belongs to the host" in "".join(
                m["content"]["text"] for m in outputs if m["msg_type"] == "stream"
            )
            _, outputs = run_cell(client, "int(count)")  # read-only: put back after the cell
            assert result_of(outputs)["text/plain"] == "7" and count.value == 7
        finally:
            client.stop_channels()
    finally:
        stop.set()
        host.join()
        ok(capi, capi.ksdk_stop(k))
    assert capi.ksdk_poll(k, 0.0) == -3


def test_host_views_without_numpy() -> None:
    """Without NumPy, cells get memoryviews over the same memory."""
    code = """
import ctypes, sys
sys.modules["numpy"] = None  # this child process has no NumPy
from kernelsdk.embed._capi._host_data import make_view
raw = (ctypes.c_double * 6)(*range(6))
view = make_view(memoryview(raw).cast("B"), "d", (2, 3), True)
view[1, 2] = 9.5
ro = make_view(memoryview(raw).cast("B"), "d", (2, 3), False, column_major=True)
print(raw[5], view.shape, ro.shape, ro.readonly)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["9.5", "(2,", "3)", "(3,", "2)", "True"]
