"""A kernel whose frontend dies exits; an embedded kernel, whose host decides, does not.

Each test starts a stand-in frontend (tests/parent_launcher.py: jupyter_client's
KernelManager, which puts its pid in the kernel's environment as JPY_PARENT_PID), checks
that the kernel answers, SIGKILLs the frontend and watches the kernel's processes. Real
processes, real sockets; the deadline is generous and only reached when a kernel is
orphaned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import STARTUP_TIMEOUT, TESTS_DIR, JupyterEnv
from jupyter_client.blocking.client import BlockingKernelClient

DEADLINE = 20.0  # seconds a kernel may take to go after its frontend died
LAUNCHER = TESTS_DIR / "parent_launcher.py"


def _with_tests_on_path() -> dict[str, str]:
    """The environment, with tests/ first on PYTHONPATH (keeping a kernelsdk under test)."""
    paths = [str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


class Frontend:
    """A launcher process holding one kernel (or watcher): what it announced about it."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), *args],
            stdout=subprocess.PIPE,
            text=True,
            env=_with_tests_on_path(),
        )
        assert self.process.stdout is not None
        try:
            self.announced: dict[str, Any] = json.loads(self.process.stdout.readline())
        except ValueError:
            self.kill()
            raise
        self.kernel_pid: int = self.announced["pid"]

    @property
    def connection_file(self) -> str:
        return str(self.announced["connection_file"])

    def client(self) -> BlockingKernelClient:
        kc = BlockingKernelClient(connection_file=self.connection_file)
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        return kc

    def kill(self) -> None:
        """Die as a crashed frontend does: no shutdown request, no signal to the kernel."""
        self.process.kill()  # nothing if it is already dead
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _wait_gone(pids: list[int]) -> float:
    """Seconds until every pid has exited (at most DEADLINE); fails with the survivors."""
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE:
        if not any(_alive(p) for p in pids):
            return time.monotonic() - started
        time.sleep(0.05)
    survivors = [p for p in pids if _alive(p)]
    assert not survivors, f"still running {DEADLINE} s after the frontend died: {survivors}"
    return DEADLINE


@contextlib.contextmanager
def _reaping(pids: list[int]) -> Iterator[None]:
    """Whatever the outcome, no kernel process outlives the test."""
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launch() -> Iterator[Callable[..., Frontend]]:
    """Starts frontends; any still alive at the end of the test (it failed) is killed."""
    started: list[Frontend] = []

    def start(*args: str) -> Frontend:
        started.append(Frontend(*args))
        return started[-1]

    yield start
    for frontend in started:
        frontend.kill()


def _orphan(frontend: Frontend, pids: list[int], code: str | None, ranks: int = 0) -> float:
    """Check the kernel answers (and start ``code`` running), kill the frontend, time the rest.

    The kernel's processes are ``pids`` plus, for an MPI job, everything below the first (the
    ranks, ``ranks`` of them, exist once the kernel answers)."""
    with _reaping(pids):
        kc = frontend.client()
        try:
            pids += _descendants(pids[0])
            assert sum(b"PMI_RANK=" in b"".join(_environ(p)) for p in pids) == ranks, pids
            reply = kc.execute_interactive("print hello", timeout=STARTUP_TIMEOUT)
            assert reply["content"]["status"] == "ok"
            if code is not None:
                kc.execute(code)
                time.sleep(0.5)
            frontend.kill()
            return _wait_gone(pids)
        finally:
            kc.stop_channels()


@pytest.mark.parametrize(("spec", "code"), [("echo", None), ("probe", "spin 600")])
def test_kernel_exits_when_its_frontend_is_killed(
    jupyter_env: JupyterEnv, launch: Callable[..., Frontend], spec: str, code: str | None
) -> None:
    frontend = launch("kernel", spec)
    took = _orphan(frontend, [frontend.kernel_pid], code)
    print(f"{spec} exited {took:.2f} s after its frontend died")


@pytest.mark.parametrize("way", ["pidfd", "poll"])
@pytest.mark.parametrize("variable", ["frontend", "absent", "stale"])
def test_the_watch_ends_when_the_frontend_dies(
    launch: Callable[..., Frontend], variable: str, way: str
) -> None:
    """JPY_PARENT_PID naming the frontend, missing, or naming a process long gone (then the
    parent is watched); waiting on a pidfd or, where there is none, polling."""
    frontend = launch("watch", f"{variable}-{way}")
    with _reaping([frontend.kernel_pid]):
        watching = frontend.announced["watching"]
        expected = "the frontend" if variable == "frontend" else "the parent process"
        assert watching.startswith(expected), watching
        time.sleep(0.2)
        assert _alive(frontend.kernel_pid)
        frontend.kill()
        _wait_gone([frontend.kernel_pid])


def _install_mpi(env: JupyterEnv, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kernelsdk", "install", *args, "--prefix", str(env.prefix)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_with_tests_on_path(),
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def mpi_specs(jupyter_env: JupyterEnv) -> JupyterEnv:
    pytest.importorskip("mpi4py")
    _install_mpi(jupyter_env, "echo", "--mpi", "2", "--replace")
    _install_mpi(
        jupyter_env,
        "kernels_for_tests:ProbeKernel",
        *("--mpi", "2", "--name", "probe-mpi2", "--replace"),
        *("--env", f"PYTHONPATH={_with_tests_on_path()['PYTHONPATH']}"),
    )
    return jupyter_env


@pytest.mark.parametrize(("spec", "code"), [("echo-mpi2", None), ("probe-mpi2", "asleep 600")])
def test_every_rank_exits_when_the_frontend_of_an_mpi_kernel_is_killed(
    mpi_specs: JupyterEnv, launch: Callable[..., Frontend], spec: str, code: str | None
) -> None:
    frontend = launch("kernel", spec)
    job = [frontend.kernel_pid]  # mpiexec; _orphan adds its proxy and the ranks
    took = _orphan(frontend, job, code, ranks=2)
    print(f"{spec}: the job ({len(job)} processes) exited {took:.2f} s after its frontend died")


def test_embedded_kernel_keeps_serving_when_jpy_parent_pid_is_dead(
    jupyter_env: JupyterEnv, launch: Callable[..., Frontend], tmp_path: Path
) -> None:
    """open_kernel belongs to its host: JPY_PARENT_PID naming a dead process (the host's
    launcher, killed; the host reparented) must not stop it."""
    frontend = launch("embedded", str(tmp_path))
    host = frontend.kernel_pid
    with _reaping([host]):
        frontend.kill()  # first thing: no way for the host to leak it
        time.sleep(3.0)  # well past the moment a kernel that watched would have gone
        assert _alive(host)
        kc = frontend.client()
        try:
            reply: dict[str, Any] = kc.execute_interactive("still here", timeout=STARTUP_TIMEOUT)
            assert reply["content"]["status"] == "ok"
            kc.shutdown()
            assert kc.get_control_msg(timeout=STARTUP_TIMEOUT)["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
        _wait_gone([host])


def test_a_rank_that_cannot_stop_is_ended_by_aborting_the_job(
    mpi_specs: JupyterEnv, launch: Callable[..., Frontend]
) -> None:
    """Rank 1 frozen (SIGSTOP: it can neither hear the shutdown nor answer): rank 0 must not
    wait for it forever in MPI_Finalize, but end the job."""
    frontend = launch("kernel", "echo-mpi2")
    job = [frontend.kernel_pid]
    with _reaping(job):
        job += _descendants(job[0])
        frontend.client().stop_channels()  # up and answering
        rank1 = [p for p in job if b"PMI_RANK=1" in _environ(p)]
        assert len(rank1) == 1, job
        os.kill(rank1[0], signal.SIGSTOP)
        frontend.kill()
        took = _wait_gone(job)
    print(f"the job with a frozen rank exited {took:.2f} s after its frontend died")
