"""A stand-in frontend for tests/test_parent_death.py: starts a kernel, says which, then waits
to be killed (as a crashed server or a CI job killed at its timeout would be).

    python parent_launcher.py kernel NAME   start kernelspec NAME through jupyter_client's
                                            KernelManager (which sets JPY_PARENT_PID)
    python parent_launcher.py embedded DIR  start a host process that serves an echo kernel
                                            in-process (open_kernel), with JPY_PARENT_PID set
                                            to this launcher, as jupyter_client would
    python parent_launcher.py host FILE     (the host itself) serve an echo kernel through
                                            open_kernel, writing its connection file to FILE
    python parent_launcher.py watch HOW     start a child that only waits for this launcher to
                                            die, as the run command's kernels do; HOW is
                                            VARIABLE-WAY: JPY_PARENT_PID this launcher's pid
                                            (frontend), unset (absent) or a dead pid (stale);
                                            the wait through a pidfd (pidfd) or polling (poll)
    python parent_launcher.py watcher WAY   (that child)

The launcher prints one JSON line, {"pid": ..., "connection_file": ...} once the kernel's
connection file exists ({"pid": ..., "watching": ...} for a watcher), then sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path


def _announce(pid: int, **about: str) -> None:
    print(json.dumps({"pid": pid, **about}), flush=True)


def _sleep_until_killed() -> None:
    while True:
        time.sleep(3600)


def launch_kernel(name: str) -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=name)
    # Announced only once it answers, checked through the manager (is the process alive?):
    # a client without one judges by the heartbeat, which an MPI job still starting on a
    # loaded machine may not answer yet ("Kernel died before replying to kernel_info").
    # Started once more if it died at startup: jupyter_client's released-port race.
    for attempt in (1, 2):
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            break
        except RuntimeError:
            if attempt == 2 or km.is_alive():
                raise
            km.cleanup_resources()
        finally:
            kc.stop_channels()
    pid = km.provisioner.process.pid  # type: ignore[union-attr]
    _announce(pid, connection_file=km.connection_file)
    _sleep_until_killed()


def launch_embedded(directory: str) -> None:
    connection_file = Path(directory) / "embedded.json"
    host = subprocess.Popen(
        [sys.executable, __file__, "host", str(connection_file)],
        env={**os.environ, "JPY_PARENT_PID": str(os.getpid())},
        start_new_session=True,  # as jupyter_client starts kernels
    )
    while not connection_file.exists():
        time.sleep(0.05)
    _announce(host.pid, connection_file=str(connection_file))
    _sleep_until_killed()


def launch_watcher(how: str) -> None:
    variable, way = how.split("-")
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    if variable == "frontend":
        env["JPY_PARENT_PID"] = str(os.getpid())
    elif variable == "stale":
        gone = subprocess.Popen([sys.executable, "-c", ""])
        gone.wait()
        env["JPY_PARENT_PID"] = str(gone.pid)
    watcher = subprocess.Popen(
        [sys.executable, __file__, "watcher", way], env=env, stdout=subprocess.PIPE, text=True
    )
    assert watcher.stdout is not None
    _announce(watcher.pid, watching=watcher.stdout.readline().strip())
    _sleep_until_killed()


def watch(way: str) -> None:
    import trio

    from kernelsdk._parent import ParentWatch

    parent = ParentWatch.from_environment()
    assert parent is not None
    print(parent.description, flush=True)
    trio.run(parent.wait_for_exit if way == "pidfd" else parent._poll)


def serve_embedded(connection_file: str) -> None:
    import trio
    from kernelsdk_echo import EchoKernel

    from kernelsdk import ConnectionInfo, open_kernel

    async def main() -> None:
        info = ConnectionInfo(key=str(uuid.uuid4()))  # ports chosen by the kernel
        partial = connection_file + ".tmp"
        async with open_kernel(EchoKernel(), info, connection_file=partial) as server:
            os.replace(partial, connection_file)  # appears complete, for the launcher
            await server.wait_stopped()

    trio.run(main)


if __name__ == "__main__":
    mode, arg = sys.argv[1:3]
    modes = {
        "kernel": launch_kernel,
        "embedded": launch_embedded,
        "host": serve_embedded,
        "watch": launch_watcher,
        "watcher": watch,
    }
    modes[mode](arg)
