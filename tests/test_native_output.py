"""Native output capture (issue 13): what a kernel process's descriptors 1 and 2 carry while a
cell runs reaches the client as that cell's stream output, before its idle.

Real kernel processes started by jupyter_client, real subprocesses, C's printf through cffi,
the Lua kernel's os.execute, and an MPI variant on 4 ranks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS_DIR, JupyterEnv, start_kernel_pair, stop_kernel_pair
from jupyter_client.blocking.client import BlockingKernelClient

TIMEOUT = 60  # only reached when something hangs


@pytest.fixture(scope="module")
def capture_env(jupyter_env: JupyterEnv) -> JupyterEnv:
    """Kernelspecs for the capturing probe, alone and on 4 MPI ranks."""
    for args in (
        ("kernels_for_tests:CapturingProbeKernel", "--name", "probe-capture"),
        ("kernels_for_tests:ProbeKernel", "--name", "probe-nocapture"),
        ("kernels_for_tests:ProbeKernel", "--mpi", "4", "--name", "probe-mpi4"),
    ):
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "kernelsdk", "install", *args, "--replace"),
                *("--env", f"PYTHONPATH={TESTS_DIR}", "--prefix", str(jupyter_env.prefix)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
        )
        assert proc.returncode == 0, proc.stderr
    return jupyter_env


def run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Execute; the reply and every IOPub message of the cell up to its idle, in order."""
    messages: list[dict[str, Any]] = []
    reply = kc.execute_interactive(
        code, timeout=TIMEOUT, output_hook=messages.append, allow_stdin=False
    )
    return reply, messages


def streams(messages: list[dict[str, Any]], name: str) -> str:
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["msg_type"] == "stream" and m["content"]["name"] == name
    )


@pytest.fixture(scope="module")
def capturing(capture_env: JupyterEnv) -> Iterator[BlockingKernelClient]:
    km, kc = start_kernel_pair(capture_env, "probe-capture")
    yield kc
    stop_kernel_pair(km, kc)


def test_subprocess_and_c_printf_output_is_the_cells(capturing: BlockingKernelClient) -> None:
    reply, messages = run(
        capturing, "print before\nsh echo from the shell; echo shell error >&2\nprintf from C"
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    assert streams(messages, "stdout") == "before\nfrom the shell\nfrom C\n"
    assert streams(messages, "stderr") == "shell error\n"
    # execute_interactive returns at the idle: all of it came before.
    assert messages[-1]["msg_type"] == "status"


def test_native_output_comes_before_the_cells_next_print(capturing: BlockingKernelClient) -> None:
    """As in a terminal: what C's printf buffered (flushed only when asked) and what a
    subprocess wrote come before the cell's own output that follows them."""
    reply, messages = run(capturing, "printf one\nprint two\nsh echo three\nprint four")
    assert reply["content"]["status"] == "ok", reply["content"]
    assert streams(messages, "stdout") == "one\ntwo\nthree\nfour\n"


def test_a_hundred_mebibytes_from_a_subprocess(capturing: BlockingKernelClient) -> None:
    size = 100 << 20
    reply, messages = run(capturing, f"sh head -c {size} /dev/zero | tr '\\0' x")
    assert reply["content"]["status"] == "ok"
    text = streams(messages, "stdout")
    assert len(text) == size and set(text) == {"x"}


def test_a_background_process_holding_stdout_does_not_hang_the_kernel(
    capturing: BlockingKernelClient, tmp_path: Path
) -> None:
    pid_file = tmp_path / "holder.pid"
    # The shell returns at once; its background child keeps the captured stdout open for 30 s.
    reply, _ = run(capturing, f"sh sleep 30 & echo $! > {pid_file}")
    assert reply["content"]["status"] == "ok"
    holder = int(pid_file.read_text())
    try:
        os.kill(holder, 0)  # still running, still holding the pipe
        reply, messages = run(capturing, "print next cell")
        assert reply["content"]["status"] == "ok"
        assert streams(messages, "stdout") == "next cell\n"
    finally:
        # This sleeper only (a pattern kill could hit another test's processes).
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder, signal.SIGKILL)


def test_without_capture_the_descriptors_are_left_alone(capture_env: JupyterEnv) -> None:
    km, kc = start_kernel_pair(capture_env, "probe-nocapture")
    try:
        reply, messages = run(kc, "sh echo to the terminal\nprint to the cell")
        assert reply["content"]["status"] == "ok"
        assert streams(messages, "stdout") == "to the cell\n"
    finally:
        stop_kernel_pair(km, kc)


def test_native_output_of_every_mpi_rank_is_labelled(capture_env: JupyterEnv) -> None:
    spec = json.loads((capture_env.kernels_dir / "probe-mpi4" / "kernel.json").read_text())
    assert "--mpi" in spec["argv"]
    km, kc = start_kernel_pair(capture_env, "probe-mpi4")
    try:
        reply, messages = run(kc, 'sh echo "native from $PMI_RANK"')
        assert reply["content"]["status"] == "ok"
        text = streams(messages, "stdout")
        for rank in range(4):
            assert f"[rank {rank}] native from {rank}\n" in text, text
    finally:
        stop_kernel_pair(km, kc)


def test_lua_os_execute_output_reaches_the_cell_in_order(capture_env: JupyterEnv) -> None:
    """The commands' lines and Lua's prints interleave as they were written (Lua's output is
    buffered in the kernel, the commands' comes through a pipe read by another thread)."""
    km, kc = start_kernel_pair(capture_env, "lua54")
    try:
        code = (
            "print('lua')\n"
            "for i = 1, 3 do os.execute('echo sh' .. i) print(i) end\n"
            "os.execute('echo oops >&2')"
        )
        reply, messages = run(kc, code)
        assert reply["content"]["status"] == "ok"
        assert streams(messages, "stdout") == "lua\nsh1\n1\nsh2\n2\nsh3\n3\n"
        assert streams(messages, "stderr") == "oops\n"
    finally:
        stop_kernel_pair(km, kc)
