"""MPI variants: real mpiexec (the mpich wheel), real mpi4py, real jupyter_client.

Kernelspecs are written by ``python -m kernelsdk install KERNEL --mpi N``, as a user would.
The machine may have fewer cores than ranks (4 ranks on 2 cores is part of the point).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS_DIR, JupyterEnv, start_kernel_pair, stop_kernel_pair
from jupyter_client.blocking.client import BlockingKernelClient

from kernelsdk import ExecutionError
from kernelsdk.mpi import OutputMode, _Execution, _Labeller

TIMEOUT = 60  # only reached when something hangs


def _install(env: JupyterEnv, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "kernelsdk", "install", *args, "--prefix", str(env.prefix)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
    )
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.split()[2]  # "Installed kernelspec NAME (KERNEL) in DIR"
    spec: dict[str, Any] = json.loads((env.kernels_dir / name / "kernel.json").read_text())
    return spec


@pytest.fixture(scope="module")
def mpi_env(jupyter_env: JupyterEnv) -> JupyterEnv:
    probe = ["--env", f"PYTHONPATH={TESTS_DIR}"]
    _install(jupyter_env, "echo", "--mpi", "2", "--replace")
    _install(jupyter_env, "echo", "--mpi", "4", "--replace")
    _install(
        jupyter_env, "kernels_for_tests:ProbeKernel", "--mpi", "2", "--name", "probe-mpi2", *probe
    )
    for mode in ("rank0", "grouped"):
        _install(
            jupyter_env,
            "echo",
            "--mpi",
            "2",
            "--mpi-output",
            mode,
            "--name",
            f"echo-mpi2-{mode}",
        )
    return jupyter_env


def run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Execute and return the reply and the cell's IOPub outputs (not status/execute_input)."""
    outputs: list[dict[str, Any]] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] not in ("status", "execute_input"):
            outputs.append(msg)

    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=keep, allow_stdin=False)
    return reply, outputs


def stdout(outputs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in outputs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


# -- the kernelspec ---------------------------------------------------------------------------


def test_install_writes_a_launcher_kernelspec(mpi_env: JupyterEnv) -> None:
    spec = json.loads((mpi_env.kernels_dir / "echo-mpi2" / "kernel.json").read_text())
    launcher = Path(spec["argv"][0])
    assert launcher.name == "mpiexec" and launcher.is_absolute()
    assert spec["argv"][1:3] == ["-n", "2"]
    assert spec["argv"][3:8] == [sys.executable, "-m", "kernelsdk", "run", "echo"]
    assert "--mpi" in spec["argv"]
    assert spec["interrupt_mode"] == "message"
    assert spec["display_name"] == "Echo (MPI, 2 ranks)"


def test_install_with_launcher_args_and_srun(jupyter_env: JupyterEnv, tmp_path: Path) -> None:
    fake_srun = tmp_path / "srun"
    fake_srun.write_text("#!/bin/sh\n")
    fake_srun.chmod(0o755)
    spec = _install(
        jupyter_env,
        "echo",
        "--mpi",
        "8",
        "--launcher",
        str(fake_srun),
        "--launcher-arg=--cpu-bind=cores",
        "--name",
        "echo-srun",
    )
    assert spec["argv"][:4] == [str(fake_srun), "-n", "8", "--cpu-bind=cores"]


def test_install_without_a_launcher_is_a_clear_error(jupyter_env: JupyterEnv) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "kernelsdk", "install", "echo", "--mpi", "2"),
            *("--launcher", "no-such-mpiexec", "--prefix", str(jupyter_env.prefix)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no MPI launcher 'no-such-mpiexec'" in proc.stderr
    assert "pip install mpich mpi4py" in proc.stderr


# -- running ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ranks", [2, 4])
def test_output_from_every_rank(mpi_env: JupyterEnv, ranks: int) -> None:
    km, kc = start_kernel_pair(mpi_env, f"echo-mpi{ranks}")
    try:
        msg_id = kc.kernel_info()
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"]["msg_id"] != msg_id:
            reply = kc.get_shell_msg(timeout=TIMEOUT)
        banner = reply["content"]["banner"]
        assert f"MPI: {ranks} ranks" in banner
        for cell in ("hello", "two\nlines"):
            reply, outputs = run(kc, cell)
            assert reply["content"]["status"] == "ok"
            lines = stdout(outputs).splitlines()
            expected = [f"[rank {r}] {line}" for r in range(ranks) for line in cell.split("\n")]
            assert sorted(lines) == sorted(expected)
            results = [m for m in outputs if m["msg_type"] == "execute_result"]
            assert [m["content"]["data"]["text/plain"] for m in results] == [cell]
    finally:
        stop_kernel_pair(km, kc)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("rank0", "hi\n"),
        ("grouped", "[rank 0] hi\n[rank 1] hi\n"),
    ],
)
def test_output_modes(mpi_env: JupyterEnv, mode: str, expected: str) -> None:
    km, kc = start_kernel_pair(mpi_env, f"echo-mpi2-{mode}")
    try:
        reply, outputs = run(kc, "hi")
        assert reply["content"]["status"] == "ok"
        assert stdout(outputs) == expected
    finally:
        stop_kernel_pair(km, kc)


def test_error_on_one_rank_names_it_and_the_kernel_goes_on(mpi_env: JupyterEnv) -> None:
    km, kc = start_kernel_pair(mpi_env, "probe-mpi2")
    try:
        reply, outputs = run(kc, "rank-error 1")
        content = reply["content"]
        assert content["status"] == "error"
        assert content["ename"] == "ProbeError"
        assert "rank 1" in content["evalue"]
        assert any("--- rank 1: ProbeError" in line for line in content["traceback"])
        assert not any("--- rank 0" in line for line in content["traceback"])
        assert [m["msg_type"] for m in outputs] == ["error"]

        reply, _ = run(kc, "rank-error 0,1")
        assert "ranks 0, 1" in reply["content"]["evalue"]

        reply, outputs = run(kc, "rank")
        assert reply["content"]["status"] == "ok"
        assert sorted(stdout(outputs).splitlines()) == [
            "[rank 0] I am rank 0",
            "[rank 1] I am rank 1",
        ]
    finally:
        stop_kernel_pair(km, kc)


@pytest.mark.parametrize("command", ["asleep 60", "sleep 60"])
def test_interrupt_three_times(mpi_env: JupyterEnv, command: str) -> None:
    """asleep: cancellable Trio code on every rank; sleep: a blocking call in a worker thread."""
    km, kc = start_kernel_pair(mpi_env, "probe-mpi2")
    try:
        for _ in range(3):
            msg_id = kc.execute(f"print started\n{command}")
            seen = ""
            while seen.count("started") < 2:  # both ranks are inside the cell
                msg = kc.get_iopub_msg(timeout=TIMEOUT)
                if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                    seen += msg["content"]["text"]
            km.interrupt_kernel()  # interrupt_mode "message": an interrupt_request on control
            reply = kc.get_shell_msg(timeout=TIMEOUT)
            while reply["parent_header"]["msg_id"] != msg_id:  # a late kernel_info_reply
                reply = kc.get_shell_msg(timeout=TIMEOUT)
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            reply, outputs = run(kc, "rank")
            assert reply["content"]["status"] == "ok"
            assert sorted(stdout(outputs).splitlines()) == [
                "[rank 0] I am rank 0",
                "[rank 1] I am rank 1",
            ]
    finally:
        stop_kernel_pair(km, kc)


def test_input_is_asked_once_for_every_rank(mpi_env: JupyterEnv) -> None:
    km, kc = start_kernel_pair(mpi_env, "probe-mpi2")
    try:
        for answer in ("first", "second"):
            msg_id = kc.execute("input Name? ", allow_stdin=True)
            request = kc.get_stdin_msg(timeout=TIMEOUT)
            assert request["content"]["prompt"] == "Name? "
            kc.input(answer)
            reply = kc.get_shell_msg(timeout=TIMEOUT)
            while reply["parent_header"]["msg_id"] != msg_id:
                reply = kc.get_shell_msg(timeout=TIMEOUT)
            assert reply["content"]["status"] == "ok"
            assert not kc.stdin_channel.msg_ready()  # one prompt for both ranks
            printed: list[str] = []
            while True:
                msg = kc.get_iopub_msg(timeout=TIMEOUT)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    printed += msg["content"]["text"].splitlines()
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            assert sorted(printed) == [f"[rank 0] {answer}", f"[rank 1] {answer}"]
        reply, _ = run(kc, "input refused")  # allow_stdin=False: every rank refuses
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "StdinNotAllowedError"
    finally:
        stop_kernel_pair(km, kc)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_shutdown_leaves_no_process_and_idle_ranks_sleep(mpi_env: JupyterEnv) -> None:
    before = set(mpi_env.kernel_pids())
    km, kc = start_kernel_pair(mpi_env, "echo-mpi4")
    ranks = [p for p in mpi_env.kernel_pids() if p not in before]
    assert len(ranks) >= 4  # the launcher's process is a kernelsdk command line too
    run(kc, "warm up")
    time.sleep(0.5)
    cpu = {p: _cpu_seconds(p) for p in ranks}
    time.sleep(2.0)
    # A rank blocked in an MPI receive would burn a core (2 s of CPU in 2 s); ours sleep.
    used = {p: _cpu_seconds(p) - cpu[p] for p in ranks}
    assert max(used.values()) < 0.5, used
    kc.shutdown()  # on control
    assert kc.control_channel.get_msg(timeout=TIMEOUT)["content"]["status"] == "ok"
    deadline = time.monotonic() + TIMEOUT
    while km.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not km.is_alive()
    while any(Path(f"/proc/{p}").exists() for p in ranks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in ranks if Path(f"/proc/{p}").exists()]
    stop_kernel_pair(km, kc)


def _descendants(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found += [int(entry), *_descendants(int(entry))]
    return found


def test_a_dead_rank_ends_the_job_instead_of_hanging(mpi_env: JupyterEnv) -> None:
    """The launcher ends the job when a rank dies, so the client sees the kernel die (and
    can restart it) rather than waiting forever for the cell."""
    km, kc = start_kernel_pair(mpi_env, "probe-mpi2")
    try:
        launcher = km.provisioner.process.pid  # type: ignore[union-attr]
        ranks = [p for p in _descendants(launcher) if b"PMI_RANK=1" in _environ(p)]
        assert len(ranks) == 1
        kc.execute("asleep 60")
        time.sleep(0.5)
        os.kill(ranks[0], signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while km.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not km.is_alive()
    finally:
        stop_kernel_pair(km, kc)


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


@pytest.mark.parametrize(
    ("kernel", "profile"),
    [("echo-mpi2", "echo"), ("probe-mpi2", f"{TESTS_DIR}/test_conformance.py:ProbeProfile")],
)
def test_conformance_suite_passes_on_mpi_variants(
    mpi_env: JupyterEnv, kernel: str, profile: str
) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "kernelsdk", "conformance", kernel),
            *("--profile", profile, "--format", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
    )
    report = json.loads(proc.stdout)
    failed = [r for r in report["results"] if r["status"] == "fail"]
    assert not failed, failed
    assert proc.returncode == 0
    passed = {r["name"] for r in report["results"] if r["status"] == "pass"}
    assert {"security", "ordering", "shutdown", "restart", "schema"} <= passed
    if kernel == "probe-mpi2":
        assert {"interrupt", "stdin", "stop_on_error", "display"} <= passed


# -- rank 0's bookkeeping, in memory -------------------------------------------------------------


def test_labeller_prefixes_lines_across_chunks() -> None:
    lab = _Labeller()
    assert lab.label(1, "stdout", "a\nb") == "[rank 1] a\n[rank 1] b"
    assert lab.label(1, "stdout", "c\n") == "c\n"  # continues the unfinished line
    assert lab.label(1, "stderr", "e\n") == "[rank 1] e\n"  # streams are separate
    assert lab.label(2, "stdout", "x\n") == "[rank 2] x\n"


class _Ctx:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []

    def _publish(self, msg_type: str, content: dict[str, Any], metadata: Any, buffers: Any) -> None:
        self.sent.append((msg_type, content, metadata))


def test_other_ranks_results_become_labelled_displays() -> None:
    ctx = _Ctx()
    run = _Execution(ctx, 2, OutputMode.ALL)  # type: ignore[arg-type]
    bundle = {"data": {"text/plain": "1"}, "metadata": {}, "execution_count": 3}
    run.publish(1, "execute_result", bundle, None, [])
    run.publish(0, "display_data", {"data": {}, "metadata": {}}, {"a": 1}, [])
    assert ctx.sent[0][0] == "display_data"
    assert "execution_count" not in ctx.sent[0][1]
    assert ctx.sent[0][2] == {"kernelsdk": {"rank": 1}}
    assert ctx.sent[1][2] == {"a": 1, "kernelsdk": {"rank": 0}}


def test_error_of_rank0_alone_on_one_rank_is_unchanged() -> None:
    run = _Execution(_Ctx(), 1, OutputMode.ALL)  # type: ignore[arg-type]
    run.errors[0] = {"ename": "E", "evalue": "v", "traceback": ["tb"]}
    error = run.error()
    assert isinstance(error, ExecutionError)
    assert (error.ename, error.evalue, list(error.traceback)) == ("E", "v", ["tb"])
    assert _Execution(_Ctx(), 2, OutputMode.ALL).error() is None  # type: ignore[arg-type]


def test_mpi_module_api_and_lazy_import() -> None:
    """kernelsdk.mpi exports what __all__ says, and importing it does not start MPI."""
    code = (
        "import sys, kernelsdk.mpi as m; "
        "assert 'mpi4py' not in sys.modules; "
        "print(sorted(m.__all__))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import kernelsdk.mpi

    assert proc.stdout.strip() == str(sorted(kernelsdk.mpi.__all__))
    for name in kernelsdk.mpi.__all__:
        assert getattr(kernelsdk.mpi, name) is not None
