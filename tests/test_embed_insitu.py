"""The in-situ reference (issue 11): examples/insitu/heat.c, a C heat-diffusion simulation on 2
and 4 MPI ranks (mpicc and mpiexec of the mpich wheel) with a Python kernel inside, driven
through real jupyter_client clients and nbclient (through the attach kernelspec).

Cells run inside the simulation's collective poll, on every rank at the same step, so what a
test reads back (the step, the total heat) follows from the run itself, never from timing.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import JupyterEnv
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "insitu"
BIN = Path(sys.executable).parent
TIMEOUT = 90  # only reached when something hangs

pytestmark = [
    pytest.mark.skipif(not (BIN / "mpicc").exists(), reason="no mpicc (pip install mpich)"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler"),
]


@pytest.fixture(scope="module")
def heat_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("insitu-build")
    proc = subprocess.run(
        [str(EXAMPLE / "build"), str(build)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # -Wall -Wextra: the example compiles without a warning.
    assert "warning" not in proc.stderr, proc.stderr
    return Path(proc.stdout.split()[-1])


class Heat:
    """One run of the simulation under mpiexec, with its kernel named ``name``."""

    def __init__(self, binary: Path, ranks: int, env: JupyterEnv, *args: str) -> None:
        self.binary = binary
        self.ranks = ranks
        self.name = f"heat{ranks}-{uuid.uuid4().hex[:8]}"
        self.stderr = env.root / f"{self.name}.err"
        argv = [
            *(str(BIN / "mpiexec"), "-n", str(ranks), str(binary)),
            *("--name", self.name, "--nx", "64", "--ny", "64", "--sleep-ms", "2", *args),
        ]
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
            )
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()
        assert self.banner.startswith(f"heat: {ranks} ranks"), self.banner + self.errors()
        self.connection_file = Path(self.proc.stdout.readline().strip())
        assert self.connection_file.is_file(), self.errors()

    def errors(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""

    def client(self) -> BlockingKernelClient:
        kc = BlockingKernelClient(connection_file=str(self.connection_file))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        return kc

    def wait(self) -> tuple[int, str]:
        """The launcher's exit status and the rest of rank 0's output, once the run ends."""
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read()
        return self.proc.wait(timeout=TIMEOUT), rest

    def rank_pids(self) -> list[int]:
        """Live processes running this binary (the ranks)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmdline[0] == str(self.binary).encode() and self.name.encode() in cmdline:
                    found.append(int(entry))
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module", params=[2, 4], ids=["2ranks", "4ranks"])
def sim(
    request: pytest.FixtureRequest, jupyter_env: JupyterEnv, heat_binary: Path
) -> Iterator[Heat]:
    heat = Heat(heat_binary, request.param, jupyter_env)
    try:
        yield heat
    finally:
        heat.kill()


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


def test_every_rank_prints_at_the_same_step(sim: Heat) -> None:
    kc = sim.client()
    try:
        out = printed(kc, "print(int(step), float(T.mean()), rank, size, T.shape)")
        assert sorted(out) == list(range(sim.ranks))
        fields = {rank: text.split(" ", 4) for rank, text in out.items()}
        assert len({f[0] for f in fields.values()}) == 1  # one step on every rank
        assert all(f[2:4] == [str(rank), str(sim.ranks)] for rank, f in fields.items())
        # The strips of rows: 64 rows shared out, 64 columns each.
        rows = [int(f[4].strip("()").split(",")[0]) for _, f in sorted(fields.items())]
        assert sum(rows) == 64
        assert all(f[4].endswith(", 64)") for f in fields.values())
        later = steps(kc)
        assert later > int(fields[0][0])  # the simulation went on between the two cells
    finally:
        kc.stop_channels()


TOTAL_HEAT = "total = comm.allreduce(float(T.sum()))\nprint(int(step), repr(total))"


def test_writing_source_steers_the_run(sim: Heat) -> None:
    kc = sim.client()
    try:

        def total() -> tuple[int, float]:
            out = printed(kc, TOTAL_HEAT)
            assert len(set(out.values())) == 1  # an allreduce: the same on every rank
            step, value = out[0].split()
            return int(step), float(value)

        # Without a source the plate only loses heat through its cold border.
        assert printed(kc, "source = 0.0\nprint(float(source))")[0] == "0.0"
        (s1, t1), (s2, t2) = total(), total()
        assert s2 > s1
        assert t2 <= t1 * (1 + 1e-12)
        # A strong source heats it up, step after step.
        assert printed(kc, "source = 1e4\nprint(float(source))")[0] == "10000.0"
        (s3, t3), (s4, t4) = total(), total()
        assert s4 > s3
        assert t4 > t3 > t2
        printed(kc, "source = 1.0\nprint(float(source))")
    finally:
        kc.stop_channels()


GATHER_AND_PLOT = """
import numpy as np
strips = comm.gather(np.array(T), root=0)
if rank == 0:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    field = np.vstack(strips)
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(field, cmap="inferno")
    ax.set_title(f"step {int(step)}")
    display(fig)
    plt.close(fig)
    print("gathered", field.shape, field.max() > 0)
"""


def test_a_collective_cell_gathers_the_field_and_shows_an_image(sim: Heat) -> None:
    kc = sim.client()
    try:
        reply, outputs = run(kc, GATHER_AND_PLOT)
        assert reply["content"]["status"] == "ok", reply["content"]
        images = [m for m in outputs if "image/png" in m["content"].get("data", {})]
        assert len(images) == 1
        png = base64.b64decode(images[0]["content"]["data"]["image/png"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert images[0]["metadata"]["kernelsdk"] == {"rank": 0}  # rank 0's display
        text = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
        assert "[rank 0] gathered (64, 64) True" in text
    finally:
        kc.stop_channels()


def test_an_interrupted_cell_does_not_stop_the_simulation(sim: Heat) -> None:
    kc = sim.client()
    try:
        msg_id = kc.execute("print('started', int(step))\nwhile True:\n    pass")
        seen = ""
        while seen.count("started") < sim.ranks:
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                seen += msg["content"]["text"]
        started = {int(line.split()[-1]) for line in seen.splitlines()}
        assert len(started) == 1  # every rank runs it at one step
        kc.control_channel.send(kc.session.msg("interrupt_request", {}))
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"]["msg_id"] != msg_id:
            reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert steps(kc) > started.pop()  # the simulation went on
        assert sim.proc.poll() is None
    finally:
        kc.stop_channels()


def test_detach_and_reattach(sim: Heat) -> None:
    kc = sim.client()
    printed(kc, "mark = int(step)")
    kc.shutdown(restart=True)  # an embedded kernel cannot be restarted: refused, it runs on
    reply = kc.control_channel.get_msg(timeout=TIMEOUT)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "RestartRefused"
    kc.shutdown()  # detaches
    assert kc.control_channel.get_msg(timeout=TIMEOUT)["content"]["status"] == "ok"
    kc.stop_channels()
    assert sim.proc.poll() is None
    again = sim.client()  # the simulation kept running; another client attaches
    try:
        out = printed(again, "print(int(step) > mark, mark)")
        assert sorted(out) == list(range(sim.ranks))
        assert all(text.startswith("True ") for text in out.values())
    finally:
        again.stop_channels()


def _install_attach(env: JupyterEnv, name: str) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "kernelsdk", "install", "--attach", name),
            *("--replace", "--prefix", str(env.prefix)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_end_of_the_simulation_ends_the_kernel_on_every_rank(
    sim: Heat, jupyter_env: JupyterEnv
) -> None:
    """Last on its simulation: a cell moves the end of the run near; the host stops the kernel
    (collectively), every rank exits, and the client attached through the attach kernelspec
    sees the kernel gone."""
    _install_attach(jupyter_env, sim.name)
    km = KernelManager(kernel_name=f"attach-{sim.name}")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        ranks = sim.rank_pids()
        assert len(ranks) == sim.ranks
        end = steps(kc, "nsteps = int(step) + 20\nprint(int(step) + 20)")
        status, rest = sim.wait()
        assert status == 0, sim.errors()
        assert f"heat: done after {end} steps" in rest  # rank 0's value, on every rank
        assert not sim.connection_file.exists()
        deadline = time.monotonic() + TIMEOUT
        while km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not km.is_alive()
        assert not [p for p in ranks if Path(f"/proc/{p}").exists()]
    finally:
        kc.stop_channels()
        km.cleanup_resources()


def test_a_notebook_attaches_through_nbclient_and_detaches(
    jupyter_env: JupyterEnv, heat_binary: Path
) -> None:
    import nbformat
    from nbclient import NotebookClient

    heat = Heat(heat_binary, 2, jupyter_env)
    try:
        _install_attach(jupyter_env, heat.name)
        nb = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("print(int(step), float(T.mean()))"),
                nbformat.v4.new_code_cell(GATHER_AND_PLOT),
            ]
        )
        for _ in range(2):  # each run attaches, then detaches as it ends
            NotebookClient(nb, kernel_name=f"attach-{heat.name}", timeout=TIMEOUT).execute()
            text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
            assert sorted(line.split("]")[0] for line in text.splitlines()) == [
                "[rank 0",
                "[rank 1",
            ]
            images = [o for o in nb.cells[1].outputs if "image/png" in o.get("data", {})]
            assert len(images) == 1
            assert heat.proc.poll() is None
        kc = heat.client()
        try:
            printed(kc, "nsteps = int(step) + 1")
        finally:
            kc.stop_channels()
        status, _ = heat.wait()
        assert status == 0, heat.errors()
    finally:
        heat.kill()


def test_a_python_host_on_two_ranks(jupyter_env: JupyterEnv) -> None:
    """The MPI layer without C: a Python step loop (tests/embed_mpi_host.py) whose cells run
    on both ranks at one step, are interrupted without ending the loop (running, or still
    waiting for the step), and end it."""
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
            # A cell interrupted while it waits for the next poll (a slow step) runs on no
            # rank, and the next cell runs on both.
            assert printed(kc, "state['pause'] = 3.0\nprint('pausing')") == {
                0: "pausing",
                1: "pausing",
            }
            waiting = kc.execute("print('never')")
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            while msg["parent_header"].get("msg_id") != waiting or msg["msg_type"] != "status":
                msg = kc.get_iopub_msg(timeout=TIMEOUT)
            assert msg["content"]["execution_state"] == "busy"
            kc.control_channel.send(kc.session.msg("interrupt_request", {}))
            reply = kc.get_shell_msg(timeout=TIMEOUT)
            while reply["parent_header"]["msg_id"] != waiting:
                reply = kc.get_shell_msg(timeout=TIMEOUT)
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            assert printed(kc, "print('next', size)") == {0: "next 2", 1: "next 2"}
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
