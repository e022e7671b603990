"""Embedded kernels' connection files and the attach provisioner (issue 11).

The file helpers are tested on a private runtime dir (``JUPYTER_RUNTIME_DIR`` under
``tmp_path``); "dead" hosts are real processes that have exited and been reaped.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.ioloop import IOLoopKernelRestarter
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from kernelsdk._cli import main
from kernelsdk._connection import ConnectionInfo
from kernelsdk._exceptions import ConfigError, KernelNotFoundError
from kernelsdk._install import attach_kernelspec, install_attach, kernel_of
from kernelsdk.embed._attach import AttachProvisioner
from kernelsdk.embed._files import (
    EmbeddedRecord,
    connection_file_path,
    find_embedded,
    host_alive,
    read_record,
    remove_connection_file,
    validate_name,
    write_connection_file,
)

INFO = ConnectionInfo(
    shell_port=5001,
    iopub_port=5002,
    stdin_port=5003,
    control_port=5004,
    hb_port=5005,
    key="k3y",
)


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(directory))
    return directory


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


# -- connection files ----------------------------------------------------------------------------


def test_write_is_a_private_connection_file_in_a_private_runtime_dir(runtime_dir: Path) -> None:
    path = write_connection_file(INFO, "sim", started=123.5, host="heat")
    assert path == runtime_dir / f"kernelsdk-embed-sim-{os.getpid()}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["kernel_name"] == "attach-sim"
    assert data["kernelsdk_embed"] == {
        "name": "sim",
        "pid": os.getpid(),
        "started": 123.5,
        "host": "heat",
    }
    assert [p.name for p in runtime_dir.iterdir()] == [path.name]  # no temp file left


def test_extra_keys_are_accepted_by_kernelsdk_and_jupyter_client(runtime_dir: Path) -> None:
    path = write_connection_file(INFO, "sim")
    assert ConnectionInfo.from_file(path) == ConnectionInfo.from_dict(
        {**INFO.to_dict(), "kernel_name": "attach-sim"}
    )
    km = KernelManager()
    km.load_connection_file(str(path))
    assert (km.shell_port, km.hb_port, km.session.key) == (5001, 5005, b"k3y")
    client = BlockingKernelClient()
    client.load_connection_file(str(path))
    assert (client.iopub_port, client.control_port, client.ip) == (5002, 5004, "127.0.0.1")


def test_rewrite_replaces_the_file(runtime_dir: Path) -> None:
    write_connection_file(INFO, "sim")
    path = write_connection_file(INFO.with_ports(shell_port=6001), "sim")
    assert ConnectionInfo.from_file(path).shell_port == 6001
    assert len(list(runtime_dir.iterdir())) == 1


def test_explicit_path(runtime_dir: Path, tmp_path: Path) -> None:
    path = write_connection_file(INFO, "sim", path=tmp_path / "mine.json")
    assert path == tmp_path / "mine.json"
    assert read_record(path).name == "sim"
    assert find_embedded("sim") == []  # only the runtime dir is searched


def test_remove_is_idempotent(runtime_dir: Path) -> None:
    path = write_connection_file(INFO, "sim")
    remove_connection_file(path)
    assert not path.exists()
    remove_connection_file(path)


@pytest.mark.parametrize("name", ["", "a b", "../x", "x/y", "é", "a" * 65, ".", "..", "sim\n", 3])
def test_bad_names_are_refused_with_a_clear_error(name: object, runtime_dir: Path) -> None:
    with pytest.raises(ValueError, match="embedded kernel"):
        validate_name(name)
    with pytest.raises(ValueError, match="embedded kernel"):
        write_connection_file(INFO, name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embedded kernel"):
        find_embedded(name)  # type: ignore[arg-type]
    assert not runtime_dir.exists() or not list(runtime_dir.iterdir())


@pytest.mark.parametrize("name", ["sim", "Heat_2D.v1", "a" * 64, "-x", "0"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


def test_unwritable_place_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="cannot write the connection file of embedded kernel"):
        write_connection_file(INFO, "sim", path=tmp_path / "a-file" / "f.json")


# -- finding live kernels -------------------------------------------------------------------------


def test_find_newest_live_first_dead_and_others_skipped(runtime_dir: Path) -> None:
    me, parent, now = os.getpid(), os.getppid(), time.time()
    old = write_connection_file(INFO, "sim", pid=parent, started=now)
    new = write_connection_file(INFO.with_ports(shell_port=7001), "sim", pid=me, started=now + 1)
    dead = write_connection_file(INFO, "sim", pid=dead_pid(), started=now + 2)
    write_connection_file(INFO, "sim-2", started=now + 3)  # a longer name the glob also matches
    write_connection_file(INFO, "other", started=now + 4)
    (runtime_dir / "kernelsdk-embed-sim-1.json").write_text("{not json")
    (runtime_dir / "kernelsdk-embed-sim-2.json").write_text('{"shell_port": 1}')
    found = find_embedded("sim")
    assert [r.path for r in found] == [new, old]
    assert found[0] == EmbeddedRecord(
        path=new,
        pid=me,
        started=now + 1,
        name="sim",
        host=os.path.basename(sys.argv[0]),
        info=ConnectionInfo.from_file(new),
    )
    assert found[0].info.shell_port == 7001
    assert dead.exists()  # skipped, not deleted
    assert find_embedded("nothing") == []


def test_find_in_a_missing_runtime_dir(runtime_dir: Path) -> None:
    assert find_embedded("sim") == []


def test_host_alive() -> None:
    assert host_alive(os.getpid())
    assert not host_alive(dead_pid())
    assert not host_alive(2**40)


def test_a_reused_pid_is_not_the_host(runtime_dir: Path) -> None:
    # The parent started before this process; a file claiming it started long before that
    # (at the epoch) was written by a host that died, whose pid the parent now has.
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("needs Linux's /proc")
    assert not host_alive(os.getpid(), started=1.0)
    write_connection_file(INFO, "sim", started=1.0)
    assert find_embedded("sim") == []


def test_zombie_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Wait for the exit without reaping: waitid with WNOWAIT leaves the zombie.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        assert not host_alive(proc.pid)
    finally:
        proc.wait()


def test_read_record_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_record(tmp_path / "none.json")
    plain = tmp_path / "plain.json"
    INFO.write(plain)
    with pytest.raises(ConfigError, match="not the connection file of an embedded kernel"):
        read_record(plain)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**INFO.to_dict(), "kernelsdk_embed": {"name": "x", "pid": True}}))
    with pytest.raises(ConfigError, match="bad 'kernelsdk_embed'"):
        read_record(bad)
    assert connection_file_path("x", 42).name == "kernelsdk-embed-x-42.json"


# -- install --attach -----------------------------------------------------------------------------


def test_install_attach_writes_a_kernelspec_jupyter_client_finds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "p"
    assert main(["install", "--attach", "Sim.2", "--prefix", str(prefix)]) == 0
    dest = prefix / "share" / "jupyter" / "kernels" / "attach-sim.2"
    assert str(dest) in capsys.readouterr().out
    ksm = KernelSpecManager(kernel_dirs=[str(dest.parent)])
    spec = ksm.get_kernel_spec("attach-sim.2")
    assert spec.display_name == "Attach: Sim.2"
    assert spec.language == "python"
    assert spec.metadata["kernel_provisioner"] == {
        "provisioner_name": "kernelsdk-attach",
        "config": {"name": "Sim.2"},
    }
    assert KernelProvisionerFactory.instance().is_provisioner_available(spec)
    # The placeholder argv, if anything runs it, fails with a message saying why.
    proc = subprocess.run(spec.argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "kernelsdk-attach provisioner" in proc.stderr and "'Sim.2'" in proc.stderr

    assert main(["list"]) == 0  # shown in its own section, not as an unavailable kernel
    assert main(["remove", "attach-sim.2", "--prefix", str(prefix)]) == 0
    assert not dest.exists()


def test_install_attach_options(tmp_path: Path) -> None:
    prefix = str(tmp_path / "p")
    argv = ["install", "--attach", "sim", "--prefix", prefix, "--name", "heat"]
    assert main([*argv, "--display-name", "Heat run", "--language", "c"]) == 0
    spec = json.loads((tmp_path / "p/share/jupyter/kernels/heat/kernel.json").read_text())
    assert (spec["display_name"], spec["language"]) == ("Heat run", "c")
    assert kernel_of(tmp_path / "p/share/jupyter/kernels/heat") == "--attach sim"
    assert main(argv) == 2  # exists
    assert main([*argv, "--replace"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attach", "a b"], "invalid embedded kernel name 'a b'"),
        (["--attach", "sim", "echo"], "--attach NAME takes no KERNEL"),
        (["--attach", "sim", "--mpi", "2"], "--attach NAME takes no KERNEL, --mpi"),
    ],
)
def test_install_attach_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", *argv, "--prefix", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "share").exists()


def test_attach_kernelspec_refuses_bad_names() -> None:
    with pytest.raises(ConfigError, match="invalid embedded kernel name"):
        attach_kernelspec("../x")


# -- attaching to a real embedded kernel ----------------------------------------------------------

# A host program: embeds the probe kernel (tests/kernels_for_tests.py) as NAME, prints
# "READY <connection file>", and runs until its stdin closes, then stops the kernel and exits.
HOST = """
import sys

sys.path.insert(0, sys.argv[2])
from kernels_for_tests import ProbeKernel

from kernelsdk.embed import start_kernel

with start_kernel(ProbeKernel(), name=sys.argv[1]) as handle:
    print("READY", handle.connection_file, flush=True)
    sys.stdin.read()
"""


class Host:
    """One host program embedding a kernel, as a subprocess."""

    def __init__(self, script: Path, name: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), name, str(Path(__file__).parent)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("READY "), f"the host did not start: {log.read_text()}"
        self.connection_file = Path(line.split(" ", 1)[1].strip())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def quit(self) -> int:
        """End the host as a program ends: it stops its kernel, which removes the file."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        status = self.proc.wait(timeout=60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return status

    def kill(self) -> None:
        """End the host as a crash does: its connection file stays behind."""
        self.proc.kill()
        self.proc.wait(timeout=60)
        for pipe in (self.proc.stdin, self.proc.stdout):
            assert pipe is not None
            pipe.close()


class Attach:
    """A private Jupyter: runtime dir, the kernelspec ``attach-sim``, and host programs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.script = root / "host.py"
        self.script.write_text(HOST, encoding="utf-8")
        self.hosts: list[Host] = []
        self.managers: list[KernelManager] = []

    def host(self, name: str = "sim") -> Host:
        host = Host(self.script, name, self.root / f"host-{len(self.hosts)}.log")
        self.hosts.append(host)
        return host

    def attach(self, kernel_name: str = "attach-sim") -> tuple[KernelManager, BlockingKernelClient]:
        km = KernelManager(kernel_name=kernel_name)
        km.start_kernel()
        self.managers.append(km)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return km, kc

    def close(self) -> None:
        for km in self.managers:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        for host in self.hosts:
            if host.alive():
                host.quit()


@pytest.fixture
def attach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Attach]:
    prefix = tmp_path / "p"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("KERNELSDK_NO_ENCRYPTION_WARNING", "1")
    install_attach("sim", prefix=prefix)
    env = Attach(tmp_path)
    try:
        yield env
    finally:
        env.close()


def run(kc: BlockingKernelClient, code: str) -> tuple[str, str]:
    """Run a cell; its reply status and its stdout."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
    return reply["content"]["status"], "".join(out)


def test_attach_runs_cells_detaches_and_attaches_again(attach: Attach) -> None:
    host = attach.host()
    km, kc = attach.attach()
    assert isinstance(km.provisioner, AttachProvisioner)
    assert km.provisioner.record is not None and km.provisioner.record.pid == host.pid
    assert km.is_alive()
    assert run(kc, "print hello from the notebook") == ("ok", "hello from the notebook\n")
    kc.stop_channels()
    km.shutdown_kernel()  # a detach: the host and its kernel run on
    assert not km.is_alive()
    assert host.alive() and host.connection_file.exists()

    km2, kc2 = attach.attach()
    assert run(kc2, "print again") == ("ok", "again\n")
    # A restart is a detach and a new attach: the same host, which runs on.
    km2.restart_kernel()
    assert km2.is_alive() and host.alive()
    assert run(kc2, "print after restart") == ("ok", "after restart\n")
    km2.shutdown_kernel(now=True)  # kill: a detach too, no signal
    assert host.alive()
    kc2.stop_channels()
    assert host.quit() == 0
    assert not host.connection_file.exists()


def started(kc: BlockingKernelClient, code: str) -> str:
    """Send a cell and return once it runs (its execute_input is published); its msg_id."""
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["msg_type"] == "execute_input" and msg["parent_header"]["msg_id"] == msg_id:
            return msg_id


def test_provisioner_info_attaches_again(attach: Attach) -> None:
    host = attach.host()
    km, kc = attach.attach()
    assert isinstance(km.provisioner, AttachProvisioner)
    saved = run_sync(km.provisioner.get_provisioner_info)()
    assert saved["connection_file"] == str(host.connection_file)
    restored = AttachProvisioner(kernel_id=saved["kernel_id"], kernel_spec=km.kernel_spec)
    run_sync(restored.load_provisioner_info)(json.loads(json.dumps(saved)))
    assert restored.has_process and run_sync(restored.poll)() is None
    assert restored.record is not None and restored.record.pid == host.pid
    kc.stop_channels()
    host.kill()
    assert run_sync(restored.poll)() == 1
    restored = AttachProvisioner(kernel_id=saved["kernel_id"], kernel_spec=km.kernel_spec)
    run_sync(restored.load_provisioner_info)(saved)
    assert not restored.has_process  # the host is gone: nothing to attach to


def test_interrupt_reaches_the_cell_and_no_signal_reaches_the_host(attach: Attach) -> None:
    host = attach.host()
    km, kc = attach.attach()
    msg_id = started(kc, "asleep 600")
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=60)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
        km.signal_kernel(signum)
    assert run(kc, "print still here") == ("ok", "still here\n")
    assert host.alive()
    kc.stop_channels()
    km.shutdown_kernel()
    assert host.quit() == 0


def test_the_newest_live_kernel_is_chosen_and_dead_ones_skipped(attach: Attach) -> None:
    older = attach.host()
    newer = attach.host()
    attach.host("other")  # another name: never chosen
    km, kc = attach.attach()
    assert km.provisioner is not None
    assert km.provisioner.connection_info["shell_port"] == (
        ConnectionInfo.from_file(newer.connection_file).shell_port
    )
    newer.kill()  # its file stays behind
    assert newer.connection_file.exists()
    assert not km.is_alive()
    # The manager's restart (what a restarter does for a dead kernel) attaches to the other.
    km.restart_kernel(now=True)
    assert km.is_alive()
    kc.stop_channels()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    assert run(kc, "print the older one") == ("ok", "the older one\n")
    assert isinstance(km.provisioner, AttachProvisioner)
    assert km.provisioner.record is not None and km.provisioner.record.pid == older.pid
    kc.stop_channels()
    km.shutdown_kernel()
    assert older.alive()


def test_no_live_kernel_is_a_clear_error(attach: Attach) -> None:
    attach.host().kill()  # a dead host's file, skipped
    km = KernelManager(kernel_name="attach-sim")
    with pytest.raises(KernelNotFoundError) as info:
        km.start_kernel()
    message = str(info.value)
    assert "no embedded kernel named 'sim' is running" in message
    assert str(attach.root / "runtime") in message


def test_an_ipc_kernel_is_refused_with_the_reason(attach: Attach) -> None:
    ipc = ConnectionInfo(transport="ipc", ip=str(attach.root / "k"), shell_port=1, key="k")
    write_connection_file(ipc, "sim")  # "embedded" in this process, which is alive
    km = KernelManager(kernel_name="attach-sim")
    with pytest.raises(ConfigError, match="serves over ipc, which cannot be attached"):
        km.start_kernel()
    assert not km.has_kernel


def test_the_kernel_is_gone_when_the_host_exits(attach: Attach) -> None:
    crashing = attach.host()
    km, kc = attach.attach()
    crashing.kill()
    assert not km.is_alive()
    kc.stop_channels()
    km.shutdown_kernel()  # nothing to wait for: returns at once, no error

    ending = attach.host()
    km, kc = attach.attach()
    assert ending.quit() == 0  # a normal exit: the kernel stops, its file goes
    assert not km.is_alive()
    kc.stop_channels()
    km.shutdown_kernel()


def test_the_restarter_reports_a_kernel_whose_host_exited_dead(attach: Attach) -> None:
    host = attach.host()
    km, kc = attach.attach()
    kc.stop_channels()
    host.kill()
    # What a server's restarter does every few seconds, here called by hand: each restart
    # finds no live kernel and keeps the dead one, until the restarter gives up.
    restarter = IOLoopKernelRestarter(kernel_manager=km, restart_limit=2)
    events: list[str] = []
    restarter.add_callback(lambda: events.append("restart"), "restart")
    restarter.add_callback(lambda: events.append("dead"), "dead")
    for _ in range(3):
        restarter.poll()
    assert events == ["restart", "restart", "dead"]
    assert not km.is_alive()
    # A restart a user asks for says why it cannot.
    with pytest.raises(KernelNotFoundError, match="no embedded kernel named 'sim'"):
        km.restart_kernel()
    # Once a host runs again, a restart attaches to it.
    attach.host()
    km.restart_kernel(now=True)
    assert km.is_alive()
    km.shutdown_kernel()


def test_nbclient_runs_a_notebook_through_the_attach_kernelspec(attach: Attach) -> None:
    host = attach.host()
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print first"), nbformat.v4.new_code_cell("print second")]
    )
    for _ in range(2):  # each run attaches, then detaches when it ends
        NotebookClient(nb, kernel_name="attach-sim", timeout=60).execute()
        assert [c.outputs[0]["text"] for c in nb.cells] == ["first\n", "second\n"]
        assert host.alive()
    assert host.quit() == 0
