"""DescriptorCapture on the process's real descriptors 1 and 2 (no kernel involved).

pytest itself points descriptors 1 and 2 at temporary files while a test runs, and points
them there again between a fixture's setup and the test: so each test installs its capture
itself (``capturing``). The capture stacks on top of pytest's and gives the descriptors back
on uninstall, which is checked too.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kernelsdk._fdcapture import DescriptorCapture


class Collected:
    """A sink that keeps what it is given, per stream, in order."""

    def __init__(self) -> None:
        self.pieces: list[tuple[str, bytes]] = []
        self.sizes = {"stdout": 0, "stderr": 0}
        self.lock = threading.Lock()
        self.keep = True

    def __call__(self, name: str, data: bytes) -> None:
        with self.lock:
            self.sizes[name] += len(data)
            if self.keep:
                self.pieces.append((name, data))

    def text(self, name: str) -> str:
        return b"".join(d for n, d in self.pieces if n == name).decode()


@contextmanager
def capturing() -> Iterator[tuple[DescriptorCapture, Collected]]:
    sink = Collected()
    capture = DescriptorCapture(sink)
    before = {fd: os.fstat(fd) for fd in (1, 2)}
    capture.install()
    try:
        yield capture, sink
    finally:
        capture.uninstall()
    for fd in (1, 2):  # the descriptors are what they were before
        after = os.fstat(fd)
        assert (after.st_dev, after.st_ino) == (before[fd].st_dev, before[fd].st_ino)


def test_writes_from_python_c_and_subprocesses_reach_the_sink() -> None:
    with capturing() as (capture, sink):
        os.write(1, b"raw fd write\n")
        libc = ctypes.CDLL(None)
        libc.printf(b"printf from C %d\n", ctypes.c_int(42))  # buffered in C until drain
        subprocess.run(["sh", "-c", "echo from a shell; echo to stderr >&2"], check=True)
        capture.drain()
        assert sink.text("stdout") == "raw fd write\nprintf from C 42\nfrom a shell\n"
        assert sink.text("stderr") == "to stderr\n"


def test_a_hundred_mebibytes_from_a_subprocess_arrive_whole() -> None:
    with capturing() as (capture, sink):
        sink.keep = False  # count only
        size = 100 << 20
        # The writer blocks whenever the pipe is full: it ends only because the reader reads.
        subprocess.run(["head", "-c", str(size), "/dev/zero"], check=True)
        capture.drain()
        assert sink.sizes == {"stdout": size, "stderr": 0}


def test_a_background_process_holding_stdout_does_not_block_drain_or_uninstall() -> None:
    with capturing() as (capture, sink):
        # The child inherits the pipe and keeps it open long after its "cell" is over.
        holder = subprocess.Popen(
            [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
        )
        try:
            while "started" not in sink.text("stdout"):
                capture.drain()
                os.sched_yield()
            capture.drain()  # returns although a writer still has the pipe open
            capture.uninstall()  # and so does this (capturing's own uninstall is then a no-op)
            assert not capture.installed
            assert holder.poll() is None  # still running, still holding the old pipe
        finally:
            holder.kill()
            holder.wait()


def test_original_descriptors_stay_reachable_for_the_log() -> None:
    with capturing() as (capture, sink):
        original = capture.original(2)
        assert original != 2
        os.write(original, b"")  # writable, and nothing of it reaches the sink
        capture.drain()
        assert sink.pieces == []


def test_install_twice_is_an_error() -> None:
    with capturing() as (capture, _), pytest.raises(RuntimeError, match="already installed"):
        capture.install()


# -- CapturedOutput: the Trio side -------------------------------------------------------------


def test_captured_output_goes_to_the_running_cell_then_to_the_log(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import trio

    from kernelsdk._captured_output import CapturedOutput

    cell: list[tuple[str, str]] = []
    routed = CapturedOutput()

    async def main() -> None:
        routed.bind(trio.lowlevel.current_trio_token())
        with routed.into(lambda name, text: cell.append((name, text))):
            # A UTF-8 character split across two writes arrives whole.
            os.write(1, b"caf" + "é".encode()[:1])
            os.write(1, "é".encode()[1:] + b"\n")
            subprocess.run(["sh", "-c", "echo oops >&2"], check=True)
            await trio.sleep(0)
        # Leaving the cell flushed it: everything is there before the "reply" would be sent.
        # (Pieces may arrive merged or split: only their concatenation per stream is fixed.)
        assert "".join(t for n, t in cell if n == "stdout") == "café\n"
        assert "".join(t for n, t in cell if n == "stderr") == "oops\n"
        os.write(2, b"between cells\n")  # no cell runs: the kernel's log (original stderr)
        routed.flush()

    routed.install()
    try:
        trio.run(main)
    finally:
        routed.uninstall()
    assert "between cells" not in "".join(t for _, t in cell)
    assert "between cells\n" in capfd.readouterr().err
