"""Shared fixtures for the tests that run real kernel processes through real Jupyter clients.

* ``jupyter_env`` (session): a private JUPYTER_PATH holding the kernelspecs ``echo``,
  ``echo-msgpack``, ``lua54`` (the Lua kernel), ``probe`` and ``probe-msg``, a private runtime
  dir (connection files, short ipc paths) and private config dirs. At the end of the session
  it checks that no kernel process this session started is still alive (they carry
  ``KSDK_TEST_SESSION`` in their environment).
* ``start_kernel(name, transport)``: a started ``(KernelManager, BlockingKernelClient)``.
* ``probe`` (module scope, tcp and ipc via ``kernel_transport``): a kernel shared by the
  non-destructive tests of a module.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from kernelsdk.protocol import PROTOCOL_VERSION

TESTS_DIR = Path(__file__).resolve().parent
STARTUP_TIMEOUT = 60

KernelPair = tuple[KernelManager, BlockingKernelClient]
MARKER_VAR = "KSDK_TEST_SESSION"


def kernel_argv(spec: str, *, packer: str | None = None) -> list[str]:
    """argv for kernel.json running ``spec`` (an entry-point name or ``module:Class``)."""
    argv = [sys.executable, "-m", "kernelsdk", "run", spec, "-f", "{connection_file}"]
    return argv + (["--packer", packer] if packer else [])


def _write_spec(kernels_dir: Path, name: str, spec: dict[str, Any]) -> None:
    d = kernels_dir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")


def _install(name: str, prefix: Path, kernels_dir: Path) -> dict[str, Any]:
    """``python -m kernelsdk install NAME --prefix PREFIX``; returns the kernel.json written."""
    proc = subprocess.run(
        [sys.executable, "-m", "kernelsdk", "install", name, "--prefix", str(prefix)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    spec_file = kernels_dir / name / "kernel.json"
    if proc.returncode != 0 or not spec_file.exists():
        raise RuntimeError(f"kernelsdk install {name} failed ({proc.returncode}): {proc.stderr}")
    spec: dict[str, Any] = json.loads(spec_file.read_text(encoding="utf-8"))
    return spec


class JupyterEnv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = root / "p"
        self.jupyter_path = self.prefix / "share" / "jupyter"
        self.kernels_dir = self.jupyter_path / "kernels"
        self.runtime_dir = root / "rt"
        self.ipc_dir = root / "ipc"
        self._ipc_names = itertools.count()

    def ipc_prefix(self) -> str:
        """A fresh, short ipc path prefix (ipc paths must stay under 107 bytes)."""
        path = f"{self.ipc_dir}/k{next(self._ipc_names)}"
        assert len(path) + 8 < 107
        return path

    @property
    def marker(self) -> bytes:
        """``KSDK_TEST_SESSION=<root>``: in the environment of every process this session
        starts (kernels inherit it from jupyter_client, nbclient and jupyter console)."""
        return f"{MARKER_VAR}={self.root}".encode()

    def kernel_pids(self) -> list[int]:
        """Live kernel processes started by this session (found by the marker)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:  # gone, or not ours
                continue
            if self.marker in environ and b"kernelsdk" in cmdline and b"pytest" not in cmdline:
                pids.append(int(entry))
        return pids


@pytest.fixture(scope="session")
def jupyter_env() -> Iterator[JupyterEnv]:
    # Short root: ipc endpoints live under it.
    root = Path(tempfile.mkdtemp(prefix="ksdk-", dir="/tmp"))
    env = JupyterEnv(root)
    for d in (env.kernels_dir, env.runtime_dir, env.ipc_dir, root / "cfg", root / "ipy"):
        d.mkdir(parents=True, exist_ok=True)
    saved = dict(os.environ)
    os.environ.update(
        {
            "JUPYTER_PATH": str(env.jupyter_path),
            "JUPYTER_RUNTIME_DIR": str(env.runtime_dir),
            "JUPYTER_CONFIG_DIR": str(root / "cfg"),
            "JUPYTER_DATA_DIR": str(root / "data"),
            "IPYTHONDIR": str(root / "ipy"),
            "JUPYTER_PLATFORM_DIRS": "1",
            MARKER_VAR: str(root),
        }
    )
    os.environ.pop("JUPYTER_PREFER_ENV_PATH", None)
    try:
        echo = _install("echo", env.prefix, env.kernels_dir)
        _install("lua54", env.prefix, env.kernels_dir)  # the Lua kernel (kernels/lua)
        _write_spec(
            env.kernels_dir,
            "echo-msgpack",
            {
                **echo,
                "argv": [*echo["argv"], "--packer", "msgpack"],
                "display_name": "Echo (msgpack)",
            },
        )
        # Keep a PYTHONPATH the session runs with (e.g. a copy of kernelsdk under test).
        pythonpath = os.pathsep.join(p for p in (str(TESTS_DIR), saved.get("PYTHONPATH")) if p)
        for name, cls, mode in (
            ("probe", "ProbeKernel", "signal"),
            ("probe-msg", "ProbeMessageKernel", "message"),
        ):
            _write_spec(
                env.kernels_dir,
                name,
                {
                    "argv": kernel_argv(f"kernels_for_tests:{cls}"),
                    "display_name": f"Probe ({mode})",
                    "language": "probe",
                    "interrupt_mode": mode,
                    "env": {"PYTHONPATH": pythonpath},
                    "kernel_protocol_version": PROTOCOL_VERSION,
                },
            )
        yield env
        # No kernel may outlive the tests that started it.
        deadline = time.monotonic() + 10
        while env.kernel_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        leaked = env.kernel_pids()
        for pid in leaked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leaked, f"kernel processes leaked: {leaked}"
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def start_kernel_pair(
    env: JupyterEnv, name: str, transport: str = "tcp", **km_kwargs: Any
) -> KernelPair:
    """Start kernel ``name`` and a client that has seen it answer (like start_new_kernel).

    A kernel that dies during startup is started once more: jupyter_client picks ports by
    binding and releasing them, so another process can take one before the kernel binds it
    (the kernel then exits with "cannot bind"; kernelsdk cannot prevent that race).
    """
    if transport == "ipc":
        km_kwargs.setdefault("ip", env.ipc_prefix())
    for attempt in (1, 2):
        km = KernelManager(kernel_name=name, transport=transport, **km_kwargs)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
            break
        except RuntimeError:
            died = not km.is_alive()
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            if attempt == 2 or not died:
                raise
    # wait_for_ready drains IOPub; a welcome may still be on its way.
    drain_iopub(kc, 0.2)
    return km, kc


def stop_kernel_pair(km: KernelManager, kc: BlockingKernelClient) -> None:
    kc.stop_channels()
    if km.has_kernel:
        km.shutdown_kernel(now=False)
    km.cleanup_resources()


def drain_iopub(kc: BlockingKernelClient, timeout: float = 0.1) -> list[dict[str, Any]]:
    """Everything IOPub holds, waiting at most ``timeout`` for each next message."""
    msgs = []
    while True:
        try:
            msgs.append(kc.get_iopub_msg(timeout=timeout))
        except queue.Empty:
            return msgs


@pytest.fixture
def start_kernel(
    jupyter_env: JupyterEnv,
) -> Iterator[Callable[..., KernelPair]]:
    """Factory of started kernels, shut down at the end of the test."""
    started: list[KernelPair] = []

    def start(name: str, transport: str = "tcp", **km_kwargs: Any) -> KernelPair:
        pair = start_kernel_pair(jupyter_env, name, transport, **km_kwargs)
        started.append(pair)
        return pair

    yield start
    for km, kc in started:
        stop_kernel_pair(km, kc)


@pytest.fixture(scope="module", params=["tcp", "ipc"])
def kernel_transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def probe(jupyter_env: JupyterEnv, kernel_transport: str) -> Iterator[KernelPair]:
    """A probe kernel shared by the non-destructive tests of a module (tcp and ipc)."""
    km, kc = start_kernel_pair(jupyter_env, "probe", kernel_transport)
    yield km, kc
    stop_kernel_pair(km, kc)
