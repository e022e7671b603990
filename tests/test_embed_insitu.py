"""In-situ MPI embedding (issue 11): kernelsdk.embed._mpi on real mpiexec ranks (the mpich
wheel), driven through real jupyter_client clients.

Cells run inside the simulation's collective poll, on every rank at the same step, so what a
test reads back (the step, the total heat) follows from the run itself, never from timing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import JupyterEnv
from jupyter_client.blocking.client import BlockingKernelClient

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "insitu"
BIN = Path(sys.executable).parent
TIMEOUT = 90  # only reached when something hangs

pytestmark = [
    pytest.mark.skipif(not (BIN / "mpicc").exists(), reason="no mpicc (pip install mpich)"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler"),
]


def run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Execute; the reply and the cell's outputs (not status/execute_input)."""
    outputs: list[dict[str, Any]] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] not in ("status", "execute_input"):
            outputs.append(msg)

    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=keep, allow_stdin=False)
    return reply, outputs


def printed(kc: BlockingKernelClient, code: str) -> dict[int, str]:
    """Run a cell that must succeed; what each rank printed (labelled ``[rank N] ``)."""
    reply, outputs = run(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    by_rank: dict[int, str] = {}
    for msg in outputs:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            for line in msg["content"]["text"].splitlines():
                label, _, text = line.partition("] ")
                rank = int(label.removeprefix("[rank "))
                by_rank[rank] = by_rank.get(rank, "") + text
    return by_rank


def steps(kc: BlockingKernelClient, code: str = "print(int(step))") -> int:
    """The step at which a cell ran: the same on every rank."""
    seen = {int(text.split()[0]) for text in printed(kc, code).values()}
    assert len(seen) == 1, seen
    return seen.pop()


def test_a_python_host_on_two_ranks(jupyter_env: JupyterEnv) -> None:
    """The MPI layer without C: a Python step loop (tests/embed_mpi_host.py) whose cells run
    on both ranks at one step, are interrupted without ending the loop, and end it."""
    name = f"pyhost-{uuid.uuid4().hex[:8]}"
    script = Path(__file__).parent / "embed_mpi_host.py"
    proc = subprocess.Popen(
        [str(BIN / "mpiexec"), "-n", "2", sys.executable, str(script), name],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        connection_file = Path(proc.stdout.readline().strip())
        kc = BlockingKernelClient(connection_file=str(connection_file))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        try:
            out = printed(kc, "print(state['step'], comm.allreduce(rank + 1), size)")
            assert len({text for text in out.values()}) == 1  # one step, one sum
            assert out[0].split()[1:] == ["3", "2"]
            msg_id = kc.execute("print('started', state['step'])\nwhile True:\n    pass")
            seen = ""
            while seen.count("started") < 2:
                msg = kc.get_iopub_msg(timeout=TIMEOUT)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                    seen += msg["content"]["text"]
            kc.control_channel.send(kc.session.msg("interrupt_request", {}))
            reply = kc.get_shell_msg(timeout=TIMEOUT)
            while reply["parent_header"]["msg_id"] != msg_id:
                reply = kc.get_shell_msg(timeout=TIMEOUT)
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            started = int(seen.split()[-1])
            end = steps(kc, "state['end'] = state['step'] + 5\nprint(state['end'])")
            assert end > started + 5  # the loop went on after the interrupt
        finally:
            kc.stop_channels()
        assert proc.wait(timeout=TIMEOUT) == 0
        assert f"done after {end} steps" in proc.stdout.read()
        assert not connection_file.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
