"""Kernels as Slurm jobs through the kernelsdk-slurm provisioner, on a real single-node Slurm
cluster (tests/slurm_cluster.py: munged, slurmctld and slurmd started here), with jupyter_client's
KernelManager: echo and Lua, Lua on 2 ranks, a job that stays pending, a refused job, interrupt,
restart, shutdown, a job cancelled from outside, the walltime warning and the idle limit.

Skipped, with the reason, where Debian's slurm-wlm and munge are not installed (.ci/run
installs them) or not as root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import JupyterEnv
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from slurm_cluster import SlurmCluster, missing

from kernelsdk.slurm._sbatch import (
    CONNECTION_VAR,
    IDLE_COMMENT,
    RESTART_STATUS,
    SlurmError,
    batch_script,
    has_option,
    parse_time_left,
)

TIMEOUT = 60

# (name, install arguments): every kernelspec the tests use, installed once.
SPECS: dict[str, list[str]] = {
    "echo-slurm": ["echo", "--slurm"],
    "lua54-slurm": ["lua54", "--slurm"],
    "lua54-slurm-mpi2": ["lua54", "--slurm", "--mpi", "2"],
    "echo-held": ["echo", "--slurm", "--partition", "held", "--start-timeout", "4"],
    "echo-nopart": ["echo", "--slurm", "--partition", "nosuchpartition"],
    "echo-idle": ["echo", "--slurm", "--idle-timeout", "3"],
    "echo-walltime": ["echo", "--slurm", "--time", "10", "--walltime-warning", "3600"],
}


@pytest.fixture(scope="session")
def slurm(jupyter_env: JupyterEnv) -> Iterator[SlurmCluster]:
    """The cluster, and the kernelspecs of :data:`SPECS` in the session's JUPYTER_PATH."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    for name, args in SPECS.items():
        extra = [] if name.startswith(args[0] + "-slurm") else ["--name", name]
        install(jupyter_env, *args, *extra)
    with SlurmCluster() as cluster:
        yield cluster
        leftover = cluster.jobs()
    assert not leftover, f"jobs left in squeue: {leftover}"


def install(env: JupyterEnv, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "kernelsdk", "install", *args, "--prefix", str(env.prefix)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll until ``predicate`` holds (pytest-timeout bounds the wait)."""
    while not predicate():
        time.sleep(0.2)


@pytest.fixture
def start(slurm: SlurmCluster) -> Iterator[Callable[[str], tuple[KernelManager, Any]]]:
    """Start a kernelspec through the provisioner; everything is shut down afterwards."""
    started: list[tuple[KernelManager, BlockingKernelClient]] = []

    def start(name: str) -> tuple[KernelManager, BlockingKernelClient]:
        km = KernelManager(kernel_name=name)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        started.append((km, kc))
        kc.wait_for_ready(timeout=TIMEOUT)
        return km, kc

    yield start
    for km, kc in started:
        kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=False)
        km.cleanup_resources()
    wait_until(lambda: not slurm.jobs())


def reconnect(km: KernelManager, kc: BlockingKernelClient) -> BlockingKernelClient:
    """A client of the restarted kernel: it listens at new ports (in a new job, or in the same
    one), and a KernelClient keeps the address it was made with (JupyterLab's server
    reconnects by itself)."""
    kc.stop_channels()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    return kc


def job_of(km: KernelManager) -> str:
    job_id = getattr(km.provisioner, "job_id", None)
    assert isinstance(job_id, str)
    return job_id


def run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Execute; the reply and the cell's stream text by stream name."""
    streams: dict[str, str] = {"stdout": "", "stderr": ""}

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            streams[msg["content"]["name"]] += msg["content"]["text"]

    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=keep, allow_stdin=False)
    return reply["content"], streams


# -- without a cluster ------------------------------------------------------------------------


def test_install_writes_a_provisioner_kernelspec(jupyter_env: JupyterEnv, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kernelsdk",
            "install",
            "lua54",
            "--slurm",
            "--mpi",
            "4",
            "--partition",
            "debug",
            "--time",
            "30",
            "--nodes",
            "2",
            "--account",
            "m1234",
            "--slurm-arg=--constraint=cpu",
            "--slurm-arg=--overcommit",
            "--idle-timeout",
            "1800",
            "--start-timeout",
            "600",
            "--prefix",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    spec_file = tmp_path / "share" / "jupyter" / "kernels" / "lua54-slurm-mpi4" / "kernel.json"
    spec = json.loads(spec_file.read_text())
    assert spec["display_name"] == "Lua 5.4 (Slurm, 4 ranks)"
    assert spec["interrupt_mode"] == "message"
    assert spec["metadata"]["supported_encryption"] == ["curve"]
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "kernelsdk-slurm",
        "config": {
            "sbatch_args": [
                "--partition=debug",
                "--time=30",
                "--nodes=2",
                "--account=m1234",
                "--ntasks=4",
                "--constraint=cpu",
                "--overcommit",
            ],
            "idle_timeout": 1800.0,
            "start_timeout": 600.0,
        },
    }
    argv = spec["argv"]
    assert argv[0].endswith("mpiexec") and argv[1:3] == ["-n", "4"]
    assert "{connection_file}" in argv and "--mpi" in argv
    # list shows it with the kernel it runs; remove removes it.
    listed = subprocess.run(
        [sys.executable, "-m", "kernelsdk", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JUPYTER_PATH": str(tmp_path / "share" / "jupyter")},
    )
    assert "lua54-slurm-mpi4" in listed.stdout


def test_slurm_options_need_slurm(jupyter_env: JupyterEnv) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kernelsdk", "install", "echo", "--partition", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--partition only apply with --slurm" in proc.stderr


def test_batch_script_keeps_secrets_off_command_lines() -> None:
    script = batch_script(["/x/python", "-m", "kernelsdk", "run", "a b", "-f", "{connection_file}"])
    assert f"printf '%s' \"${CONNECTION_VAR}\"" in script
    assert f"unset {CONNECTION_VAR}" in script
    assert "\n    /x/python -m kernelsdk run 'a b' -f \"$kernel_dir/connection.json\"\n" in script
    # The kernel runs in a loop: a restart (its distinct status) starts a fresh one.
    assert f'[ "$status" -eq {RESTART_STATUS} ] || exit "$status"' in script
    assert has_option(["--output=x"], "--output", "-o")
    assert has_option(["-ox"], "--output", "-o")
    assert not has_option(["--outputs"], "--output")
    assert parse_time_left("1-02:03:04") == 93784
    assert parse_time_left("4:05") == 245
    assert parse_time_left("UNLIMITED") is None


# -- through the provisioner ------------------------------------------------------------------


def test_echo_in_a_job_encrypted_with_no_secret_in_sight(
    slurm: SlurmCluster, start: Callable[[str], tuple[KernelManager, Any]]
) -> None:
    km, kc = start("echo-slurm")
    job = job_of(km)
    assert slurm.squeue("-j", job, "-o", "%T %j").split() == ["RUNNING", "jupyter-echo-slurm"]
    reply, streams = run(kc, "hello")
    assert reply["status"] == "ok"
    assert streams["stdout"] == "hello\n"
    assert streams["stderr"] == ""  # no time limit: no walltime warning
    info = km.get_connection_info()
    assert info["curve_secretkey"] and info["curve_publickey"]
    # The kernel's process: no secret on any command line, none in its environment, and its
    # connection file private.
    key = km.session.key.decode()
    secrets = [key, str(info["curve_secretkey"])]
    kernel_pid = None
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert not any(s in cmdline for s in secrets), cmdline
        if "kernelsdk\0run\0echo" in cmdline and f"SLURM_JOB_ID={job}".encode() in environ:
            kernel_pid = pid
            connection_file = Path(cmdline.split("\0-f\0")[1].split("\0")[0])
            assert CONNECTION_VAR.encode() not in environ
    assert kernel_pid is not None
    assert connection_file.stat().st_mode & 0o777 == 0o600
    assert connection_file.parent.stat().st_mode & 0o777 == 0o700


def test_shutdown_leaves_no_job(
    slurm: SlurmCluster, start: Callable[[str], tuple[KernelManager, Any]]
) -> None:
    km, kc = start("echo-slurm")
    job = job_of(km)
    kc.stop_channels()
    km.shutdown_kernel()
    assert not km.is_alive()
    wait_until(lambda: job not in slurm.jobs())
    # A clean end keeps no job output behind.
    assert not (
        Path(os.environ["JUPYTER_DATA_DIR"]) / "kernelsdk-slurm" / f"kernel-{job}.log"
    ).exists()


def test_lua_in_a_job(start: Callable[[str], tuple[KernelManager, Any]]) -> None:
    km, kc = start("lua54-slurm")
    reply, streams = run(kc, 'print(1 + 1, os.getenv("SLURM_JOB_ID"))')
    assert reply["status"] == "ok"
    assert streams["stdout"] == f"2\t{job_of(km)}\n"


def test_lua_on_two_ranks_with_allreduce(
    slurm: SlurmCluster, start: Callable[[str], tuple[KernelManager, Any]]
) -> None:
    km, kc = start("lua54-slurm-mpi2")
    job = job_of(km)
    assert slurm.squeue("-j", job, "-o", "%C").split() == ["2"]
    reply, streams = run(
        kc,
        'print(mpi.rank, mpi.size, mpi.allreduce(mpi.rank + 1, "sum"), '
        'os.getenv("SLURMD_NODENAME"), os.getenv("SLURM_JOB_ID"))',
    )
    assert reply["status"] == "ok", reply
    assert sorted(streams["stdout"].splitlines()) == [
        f"[rank 0] 0\t2\t3\t{slurm.node}\t{job}",
        f"[rank 1] 1\t2\t3\t{slurm.node}\t{job}",
    ]


def test_interrupt(start: Callable[[str], tuple[KernelManager, Any]]) -> None:
    km, kc = start("lua54-slurm")
    for _ in range(2):
        msg_id = kc.execute("print('started')\nwhile true do end")
        while True:
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                break
        km.interrupt_kernel()  # interrupt_mode "message": an interrupt_request
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert run(kc, "print(6 * 7)")[1]["stdout"] == "42\n"


@pytest.mark.parametrize(
    ("name", "set_global", "read_global", "fresh"),
    [
        # The echo kernel has no variables: its execution count is what a fresh kernel resets.
        ("echo-slurm", "one", "two", None),
        (
            "lua54-slurm-mpi2",
            "x = mpi.rank + 1",
            'print(x, os.getenv("SLURM_JOB_ID"))',
            ["[rank 0] nil\t{job}", "[rank 1] nil\t{job}"],
        ),
    ],
)
def test_restart_keeps_the_job(
    slurm: SlurmCluster,
    start: Callable[[str], tuple[KernelManager, Any]],
    name: str,
    set_global: str,
    read_global: str,
    fresh: list[str] | None,
) -> None:
    km, kc = start(name)
    job = job_of(km)
    assert run(kc, set_global)[0]["execution_count"] == 1
    before = km.get_connection_info()
    km.restart_kernel()
    # The same job, alone in squeue, runs a fresh kernel (all its ranks) at new ports.
    assert job_of(km) == job
    assert slurm.jobs() == [job]
    after = km.get_connection_info()
    assert after["shell_port"] != before["shell_port"] or after["hb_port"] != before["hb_port"]
    kc = reconnect(km, kc)
    reply, streams = run(kc, read_global)
    assert reply["status"] == "ok", reply
    assert reply["execution_count"] == 1
    if fresh is not None:
        assert sorted(streams["stdout"].splitlines()) == [line.format(job=job) for line in fresh]
    # Again: the job keeps its allocation across restarts.
    km.restart_kernel()
    assert job_of(km) == job
    kc = reconnect(km, kc)
    assert run(kc, set_global)[0]["execution_count"] == 1
    kc.stop_channels()
    # Shutdown after a restart leaves no job.
    km.shutdown_kernel()
    assert not km.is_alive()
    wait_until(lambda: job not in slurm.jobs())
    assert not slurm.jobs()


def test_restart_of_a_job_gone_meanwhile_submits_a_new_one(
    slurm: SlurmCluster,
    start: Callable[[str], tuple[KernelManager, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    km, kc = start("echo-slurm")
    job = job_of(km)
    # restart_kernel() is these two steps; the job is cancelled between them.
    km.shutdown_kernel(restart=True)
    assert job_of(km) == job  # kept for the restart in the job
    subprocess.run(["scancel", job], check=True, env=slurm.env)
    wait_until(lambda: job not in slurm.jobs())
    km.start_kernel()
    assert job_of(km) != job
    assert f"did not restart in its Slurm job, submitting a new job: Slurm job {job}" in (
        caplog.text
    )
    kc = reconnect(km, kc)
    assert run(kc, "again")[1]["stdout"] == "again\n"
    kc.stop_channels()


def test_a_job_cancelled_from_outside_is_dead_and_stays_so(
    slurm: SlurmCluster, start: Callable[[str], tuple[KernelManager, Any]]
) -> None:
    km, kc = start("echo-slurm")
    job = job_of(km)
    subprocess.run(["scancel", job], check=True, env=slurm.env)
    wait_until(lambda: not km.is_alive())
    # What jupyter_client's automatic restarter does to a dead kernel: a kill and a restart.
    # A cancelled job is not resubmitted...
    km.restart_kernel(now=True)
    assert not km.is_alive()
    assert job_of(km) == job
    wait_until(lambda: not slurm.jobs())
    # ... until the user restarts it: a new job.
    km.restart_kernel()
    assert job_of(km) != job
    kc = reconnect(km, kc)
    assert run(kc, "again")[1]["stdout"] == "again\n"
    kc.stop_channels()


def test_pending_job_times_out_with_its_reason(slurm: SlurmCluster) -> None:
    km = KernelManager(kernel_name="echo-held")
    with pytest.raises(SlurmError) as raised:
        km.start_kernel()
    message = str(raised.value)
    job = message.split("Slurm job ")[1].split()[0]
    assert job.isdigit()
    assert "did not start within 4 s" in message
    assert "still pending (reason: PartitionDown)" in message
    assert "has been cancelled" in message
    assert "--start-timeout SECONDS" in message and "start_timeout" in message
    assert not km.has_kernel
    wait_until(lambda: job not in slurm.jobs())


def test_a_refused_job_shows_sbatchs_error(slurm: SlurmCluster) -> None:
    km = KernelManager(kernel_name="echo-nopart")
    with pytest.raises(SlurmError) as raised:
        km.start_kernel()
    message = str(raised.value)
    assert "Slurm refused the job for kernel 'Echo (Slurm)'" in message
    assert "sbatch: error: invalid partition specified: nosuchpartition" in message
    assert not slurm.jobs()


def test_walltime_warning(start: Callable[[str], tuple[KernelManager, Any]]) -> None:
    km, kc = start("echo-walltime")
    _, streams = run(kc, "one")
    assert streams["stdout"] == "one\n"
    assert f"Warning: Slurm job {job_of(km)} reaches its time limit in 9 min" in streams["stderr"]
    # Once.
    assert run(kc, "two")[1] == {"stdout": "two\n", "stderr": ""}


def test_idle_limit_ends_the_job(
    slurm: SlurmCluster, start: Callable[[str], tuple[KernelManager, Any]]
) -> None:
    km, kc = start("echo-idle")
    job = job_of(km)
    assert run(kc, "busy")[1]["stdout"] == "busy\n"
    wait_until(lambda: not km.is_alive())
    end = getattr(km.provisioner, "_end", None)
    assert end is not None and IDLE_COMMENT in end.comment, end
    assert end.state == "CANCELLED"
    wait_until(lambda: job not in slurm.jobs())


# -- JupyterLab in Chromium -------------------------------------------------------------------

_E2E_SKIP = ""
try:
    # The JupyterLab server, browser and page fixtures of the JupyterLab tests (the module
    # skips itself where Chromium or Playwright is missing).
    from test_e2e_jupyterlab import (  # noqa: F401 (fixtures)
        KERNEL_TIMEOUT,
        Lab,
        Scenario,
        browser,
        lab,
        open_new_notebook,
        page,
    )
except pytest.skip.Exception as exc:
    _E2E_SKIP = str(exc)


@pytest.mark.timeout(300)
def test_jupyterlab_starts_lua_on_two_ranks_in_a_job(
    slurm: SlurmCluster, request: pytest.FixtureRequest
) -> None:
    """From the launcher, a notebook on "Lua 5.4 (Slurm, 2 ranks)"; a cell prints each rank's
    host and job id. (slurm first: the JupyterLab server must see the cluster's SLURM_CONF.)"""
    if _E2E_SKIP:
        pytest.skip(_E2E_SKIP)
    from playwright.sync_api import expect

    lab_server: Lab = request.getfixturevalue("lab")
    the_page = request.getfixturevalue("page")
    scenario = Scenario(
        kernel="lua54-slurm-mpi2",
        display_name="Lua 5.4 (Slurm, 2 ranks)",
        print_source='print(mpi.rank, os.getenv("SLURMD_NODENAME"), os.getenv("SLURM_JOB_ID"))',
        printed="",
    )
    nb = open_new_notebook(the_page, lab_server, scenario)
    (job,) = slurm.jobs()
    nb.screenshot("slurm-started")
    cell, count = nb.run(scenario.print_source)
    assert count == 1
    stdout = cell.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
    for rank in (0, 1):
        expect(stdout.first).to_contain_text(
            re.compile(rf"\[rank {rank}\] {rank}\s+{slurm.node}\s+{job}\b"),
            timeout=KERNEL_TIMEOUT,
        )
    nb.screenshot("slurm-ranks")
