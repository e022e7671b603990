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
import zmq
from conftest import TESTS_DIR, JupyterEnv, start_kernel_pair, stop_kernel_pair
from jupyter_client.blocking.client import BlockingKernelClient

from kernelsdk import ConnectionInfo, ExecutionError
from kernelsdk.mpi import OutputMode
from kernelsdk.mpi._root import ExecutionRelay, RankLabeller
from kernelsdk.mpi._wire import OutputReport

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


def lines(kc: BlockingKernelClient, code: str) -> list[str]:
    """Run a cell that must succeed; its stdout lines, sorted."""
    reply, outputs = run(kc, code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return sorted(stdout(outputs).splitlines())


def _interrupt(km: Any, kc: BlockingKernelClient, code: str, ranks: int = 2) -> None:
    """Run ``code`` (which prints "started" on every rank first), interrupt it once every rank
    has started, and check the reply."""
    msg_id = kc.execute(code)
    seen = ""
    while seen.count("started") < ranks:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
    km.interrupt_kernel()  # interrupt_mode "message": an interrupt_request on control
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    while reply["parent_header"]["msg_id"] != msg_id:  # a late kernel_info_reply
        reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"


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
        # Echo claims subshells; across ranks cells run in one order, so the variant does not.
        assert "kernel subshells" not in reply["content"]["supported_features"]
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


@pytest.mark.skipif(not zmq.has("curve"), reason="this pyzmq's libzmq has no CURVE (libsodium)")
def test_mpi_variant_serves_encrypted(mpi_env: JupyterEnv) -> None:
    """The MPI variant's kernelspec declares CurveZMQ; rank 0's sockets are CURVE servers
    (JEP 145), so jupyter_client's required mode starts it and every rank's output arrives,
    while a client without the key hears nothing."""
    spec = json.loads((mpi_env.kernels_dir / "echo-mpi2" / "kernel.json").read_text())
    assert spec["metadata"]["supported_encryption"] == ["curve"]
    km, kc = start_kernel_pair(mpi_env, "echo-mpi2", transport_encryption="required")
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        assert km.curve_publickey is not None
        assert lines(kc, "secret") == ["[rank 0] secret", "[rank 1] secret"]
        info = km.get_connection_info()
        plain = ctx.socket(zmq.SUB)
        plain.linger = 0
        plain.subscribe(b"")
        plain.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
        assert lines(kc, "unheard") == ["[rank 0] unheard", "[rank 1] unheard"]
        assert not plain.poll(1000)
        assert kc.hb_channel.is_beating()
    finally:
        ctx.destroy(linger=0)  # closes the plain SUB too, even after a failed assertion
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
            _interrupt(km, kc, f"print started\n{command}")
            assert lines(kc, "rank") == ["[rank 0] I am rank 0", "[rank 1] I am rank 1"]
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


def test_rank0_that_cannot_bind_ends_the_whole_job(mpi_env: JupyterEnv, tmp_path: Path) -> None:
    """A taken port (jupyter_client's released-port race) must end the MPI job with an error,
    not leave the other ranks and the launcher waiting: the client then sees the kernel die."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        info = ConnectionInfo(key="k", shell_port=taken.getsockname()[1])
        info.write(tmp_path / "conn.json")
        spec = json.loads((mpi_env.kernels_dir / "echo-mpi2" / "kernel.json").read_text())
        argv = [a.replace("{connection_file}", str(tmp_path / "conn.json")) for a in spec["argv"]]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert proc.returncode != 0
    assert time.monotonic() - started < 60
    assert "kernelsdk: error: cannot bind shell_port" in proc.stderr, proc.stderr


# -- the Lua kernel's `mpi` table -----------------------------------------------------------------


def test_conformance_suite_passes_on_lua_mpi_variant(lua_mpi_env: JupyterEnv) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "kernelsdk", "conformance", "lua54-mpi2"),
            *("--profile", "lua", "--format", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, [r for r in report["results"] if r["status"] != "pass"]
    skipped = {r["name"] for r in report["results"] if r["status"] == "skip"}
    # user_expressions: the Lua kernel evaluates none; sigint_idle: interrupt_mode is message;
    # the six subshell checks: MPI variants claim no kernel subshells (every rank runs the
    # cells in one order), though the Lua kernel alone does.
    subshell_checks = {
        "subshells",
        "subshell_parents",
        "subshell_unknown",
        "subshell_order",
        "subshell_concurrency",
        "subshell_interrupt",
    }
    assert skipped <= {"user_expressions", "sigint_idle", *subshell_checks}, report["results"]
    assert subshell_checks <= skipped, report["results"]
    # The debugger is rank 0's: a breakpoint stops rank 0's cell, continue ends the cell on
    # every rank (issue 14).
    passed = {r["name"] for r in report["results"] if r["status"] == "pass"}
    assert {"debugger_info", "debugger_session", "debugger_breakpoint"} <= passed


@pytest.fixture(scope="module")
def lua_mpi_env(mpi_env: JupyterEnv) -> JupyterEnv:
    pytest.importorskip("kernelsdk_lua")
    _install(mpi_env, "lua54", "--mpi", "2", "--replace")
    _install(mpi_env, "lua54", "--mpi", "4", "--replace")
    return mpi_env


def test_lua_collectives_on_two_ranks(lua_mpi_env: JupyterEnv) -> None:
    km, kc = start_kernel_pair(lua_mpi_env, "lua54-mpi2")
    try:
        assert lines(kc, "print(mpi.rank, mpi.size)") == ["[rank 0] 0\t2", "[rank 1] 1\t2"]
        assert lines(kc, 'print(mpi.allreduce(mpi.rank + 1, "sum"))') == [
            "[rank 0] 3",
            "[rank 1] 3",
        ]
        code = """
        local mx = mpi.allreduce({mpi.rank, 10 - mpi.rank, 0.5}, "max")
        local mn = mpi.allreduce({mpi.rank, 10 - mpi.rank, 0.5}, "min")
        local s = mpi.allreduce({mpi.rank, 2.5})
        print(table.concat(mx, " "), table.concat(mn, " "), table.concat(s, " "))
        """
        expected = "1 10 0.5\t0 9 0.5\t1 5.0"
        assert lines(kc, code) == [f"[rank 0] {expected}", f"[rank 1] {expected}"]
        code = """
        local t = mpi.bcast(mpi.rank == 0 and {msg = "hi", n = {1, 2}} or "ignored", 0)
        print(t.msg, t.n[2], mpi.bcast(mpi.rank * 7, 1))
        """
        assert lines(kc, code) == ["[rank 0] hi\t2\t7", "[rank 1] hi\t2\t7"]
        code = 'local g = mpi.gather("r" .. mpi.rank) print(g and table.concat(g, ",") or "nil")'
        assert lines(kc, code) == ["[rank 0] r0,r1", "[rank 1] nil"]
        assert lines(kc, 'mpi.barrier() print("after")') == ["[rank 0] after", "[rank 1] after"]

        # A bad value on one rank: every rank still takes part, and all of them raise.
        reply, _ = run(kc, 'mpi.allreduce(mpi.rank == 1 and "x" or 1)')
        assert reply["content"]["status"] == "error"
        assert "ranks 0, 1" in reply["content"]["evalue"]
        assert "got a string value (on rank 1)" in reply["content"]["evalue"]

        # An error on one rank only: one error reply naming it, then the kernel goes on.
        reply, outputs = run(kc, 'if mpi.rank == 1 then error("boom") end')
        content = reply["content"]
        assert content["status"] == "error"
        assert content["ename"] == "LuaError"
        assert "boom" in content["evalue"] and "(on rank 1)" in content["evalue"]
        assert any("--- rank 1: LuaError" in line for line in content["traceback"])
        assert not any("--- rank 0" in line for line in content["traceback"])
        assert [m["msg_type"] for m in outputs] == ["error"]
        assert lines(kc, "print(mpi.allreduce(mpi.rank))") == ["[rank 0] 1", "[rank 1] 1"]
    finally:
        stop_kernel_pair(km, kc)


def test_lua_interrupt_three_times(lua_mpi_env: JupyterEnv) -> None:
    km, kc = start_kernel_pair(lua_mpi_env, "lua54-mpi2")
    try:
        for _ in range(3):
            _interrupt(km, kc, 'print("started") while true do end')
            assert lines(kc, "print(mpi.allreduce(1))") == ["[rank 0] 2", "[rank 1] 2"]
    finally:
        stop_kernel_pair(km, kc)


def test_lua_interrupting_collectives(lua_mpi_env: JupyterEnv) -> None:
    """An interrupt stops ranks waiting in a collective (here, for a rank that failed before
    it, or in an endless loop of them); the next cell's collectives work on every rank."""
    km, kc = start_kernel_pair(lua_mpi_env, "lua54-mpi2")
    try:
        cells = [
            'print("started") if mpi.rank == 1 then error("boom") end mpi.barrier()',
            'print("started") if mpi.rank == 0 then mpi.barrier() end',
            'print("started") while true do mpi.allreduce({1, 2}) mpi.bcast("x", 1) end',
        ]
        for code in cells:
            _interrupt(km, kc, code)
            assert lines(kc, "print(mpi.allreduce(1))") == ["[rank 0] 2", "[rank 1] 2"]
            code = "print(mpi.bcast(mpi.rank, 1), mpi.gather(mpi.rank) ~= nil) mpi.barrier()"
            assert lines(kc, code) == ["[rank 0] 1\ttrue", "[rank 1] 1\tfalse"]
    finally:
        stop_kernel_pair(km, kc)


@pytest.mark.parametrize("ranks", [2, 4])
def test_lua_collectives_survive_random_interrupts(mpi_env: JupyterEnv, ranks: int) -> None:
    """Hundreds of cells of collectives interrupted at random moments, on mpiexec -n RANKS
    (no kernel around them: the race needs many tries)."""
    pytest.importorskip("kernelsdk_lua")
    spec = json.loads((mpi_env.kernels_dir / "echo-mpi2" / "kernel.json").read_text())
    script = TESTS_DIR / "lua_collectives_stress.py"
    proc = subprocess.run(
        [spec["argv"][0], "-n", str(ranks), sys.executable, str(script), "1", "300"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(f"rank {r} ok" in proc.stdout for r in range(ranks)), proc.stdout


def test_lua_allreduce_on_four_ranks(lua_mpi_env: JupyterEnv) -> None:
    km, kc = start_kernel_pair(lua_mpi_env, "lua54-mpi4")
    try:
        code = 'print(mpi.allreduce(mpi.rank + 1), table.concat(mpi.allreduce({mpi.rank, 1}), ","))'
        assert lines(kc, code) == [f"[rank {r}] 10\t6,4" for r in range(4)]
        code = "local g = mpi.gather(mpi.rank, 3) if g then print(#g, g[4]) end"
        assert lines(kc, code) == ["[rank 3] 4\t3"]
    finally:
        stop_kernel_pair(km, kc)


def test_lua_mpi_without_mpi_is_one_rank() -> None:
    """Without --mpi, Lua's `mpi` is rank 0 of 1 and its collectives answer locally."""
    pytest.importorskip("kernelsdk_lua")
    import trio
    from kernelsdk_lua import LuaKernel

    from kernelsdk.testing import open_test_kernel

    cells = {
        "mpi.rank, mpi.size": "0, 1",
        'mpi.allreduce({1, 2.5}, "max"), mpi.allreduce(3, "min")': "{1, 2.5}, 3",
        'mpi.bcast({s = "a\\0b", f = 1.0, i = math.mininteger})': (
            '{f = 1.0, i = -9223372036854775808, s = "a\\000b"}'
        ),
        "mpi.gather(7), mpi.barrier()": "{7}",
    }
    errors = {
        "mpi.bcast(print)": "mpi.bcast: cannot send a function value",
        'mpi.allreduce(1, "prod")': 'op must be "sum", "min" or "max", got "prod"',
        'mpi.allreduce({1, "a"})': "element 2 is a string value, not a number",
        "mpi.gather(1, 1)": "root must be a rank from 0 to 0, got 1",
    }

    async def main() -> None:
        async with open_test_kernel(LuaKernel()) as client:
            for code, shown in cells.items():
                result = await client.execute(code)
                assert result.reply.content["status"] == "ok", result.reply.content
                assert result.outputs[-1].content["data"]["text/plain"] == shown
            for code, message in errors.items():
                result = await client.execute(code)
                assert message in result.reply.content["evalue"]

    trio.run(main)


# -- rank 0's bookkeeping, in memory -------------------------------------------------------------


def test_labeller_prefixes_lines_across_chunks() -> None:
    lab = RankLabeller()
    assert lab.label(1, "stdout", "a\nb") == "[rank 1] a\n[rank 1] b"
    assert lab.label(1, "stdout", "c\n") == "c\n"  # continues the unfinished line
    assert lab.label(1, "stderr", "e\n") == "[rank 1] e\n"  # streams are separate
    assert lab.label(2, "stdout", "x\n") == "[rank 2] x\n"


class _Ctx:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []

    def publish(self, msg_type: str, content: dict[str, Any], metadata: Any, buffers: Any) -> None:
        self.sent.append((msg_type, content, metadata))


def test_other_ranks_results_become_labelled_displays() -> None:
    ctx = _Ctx()
    run = ExecutionRelay(ctx, 2, OutputMode.ALL)  # type: ignore[arg-type]
    bundle = {"data": {"text/plain": "1"}, "metadata": {}, "execution_count": 3}
    run.publish_report(OutputReport(1, 1, "execute_result", bundle, None, ()))
    run.publish_local("display_data", {"data": {}, "metadata": {}}, {"a": 1}, [])
    assert ctx.sent[0][0] == "display_data"
    assert "execution_count" not in ctx.sent[0][1]
    assert ctx.sent[0][2] == {"kernelsdk": {"rank": 1}}
    assert ctx.sent[1][2] == {"a": 1, "kernelsdk": {"rank": 0}}


def test_error_of_rank0_alone_on_one_rank_is_unchanged() -> None:
    run = ExecutionRelay(_Ctx(), 1, OutputMode.ALL)  # type: ignore[arg-type]
    run.errors[0] = {"ename": "E", "evalue": "v", "traceback": ["tb"]}
    error = run.error()
    assert isinstance(error, ExecutionError)
    assert (error.ename, error.evalue, list(error.traceback)) == ("E", "v", ["tb"])
    assert ExecutionRelay(_Ctx(), 2, OutputMode.ALL).error() is None  # type: ignore[arg-type]


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
    assert kernelsdk.mpi.world() is None  # not running with --mpi
    for name in kernelsdk.mpi.__all__:
        assert getattr(kernelsdk.mpi, name) is not None


def test_wire_messages_survive_pickling_and_are_frozen() -> None:
    """Commands and reports travel pickled by mpi4py: each comes back equal, and none can be
    changed on the way."""
    import pickle

    import attrs

    from kernelsdk.mpi import _wire

    messages = [
        _wire.ExecuteCommand(1, "print(1)", 3, False, True, True),
        _wire.InputReplyCommand(1, "answer", None),
        _wire.InterruptCommand(1),
        _wire.ShutdownCommand(1, restart=True),
        _wire.OutputReport(1, 2, "stream", {"name": "stdout", "text": "x"}, None, (b"\0",)),
        _wire.InputRequestReport(1, 2, "name? ", False),
        _wire.DoneReport(1, 2, {"ename": "E", "evalue": "v", "traceback": []}),
        _wire.ByeReport(1, 2),
    ]
    for message in messages:
        assert pickle.loads(pickle.dumps(message, pickle.HIGHEST_PROTOCOL)) == message
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            message.seq = 2  # type: ignore[misc]
