"""Kernels used by the integration tests (imported by the kernel subprocesses).

``ProbeKernel`` (language "probe") runs cells made of commands, one per line::

    sleep S        time.sleep(S) in a worker thread (blocking, native-like code)
    spin S         a GIL-releasing busy loop (sha256 over 1 MiB) for S seconds in a worker
                   thread; do_interrupt() stops it through a threading.Event
    asleep S       await trio.sleep(S)
    block S        time.sleep(S) on the Trio thread itself: the event loop is blocked (what a
                   naive kernel doing synchronous work in do_execute does)
    gil N          sum(range(N)) on the Trio thread: one C call holding the GIL throughout
                   (N = 2e8 takes a few seconds)
    hold S         a busy loop on the Trio thread that keeps the GIL for S seconds (the switch
                   interval raised past S): what a long C call holding the GIL does, timed
    error          raise ExecutionError("ProbeError", ...)
    input PROMPT   await ctx.input(PROMPT) and print the value
    thread-input P ctx.input_from_thread(P) in a run_blocking worker that holds the kernel's
                   interpreter lock (a stateful interpreter written in Python); the worker
                   prints "worker done" when its input returns or raises, then the value
    password       await ctx.input("Password: ", password=True) and print the value
    display ID TXT display TXT (text/plain) with display_id ID
    update ID TXT  update the display ID to TXT
    display-new T  display T with a display id the kernel picks itself (as languages whose
                   display call returns a handle do)
    update-last T  update the display of the last display-new to T
    html TEXT      display TEXT as text/html (with a text/plain fallback)
    png            display a small PNG image (image/png, with a text/plain fallback)
    clear          ctx.clear_output()
    touch PATH     create the file PATH (the visible side effect of the security tests)
    print TEXT     print TEXT to stdout
    stderr TEXT    print TEXT to stderr
    result TEXT    make TEXT the cell's result (execute_result)
    comm-wait [T]  print "waiting for comm", then block until a comm_msg arrives on a "probe"
                   comm (at most T seconds, default 30) and print what arrived

A cell ending in a backslash is incomplete (is_complete, indent "").

Comm target "probe": on open, the kernel sends {"opened": <open data>}; every comm_msg is
echoed back as {"echo": <data>}.

``ProbeMessageKernel`` is the same kernel with ``interrupt_mode = "message"``;
``SubshellProbeKernel`` (and ``SubshellProbeMessageKernel``) the same claiming kernel
subshells.

``NativeProbeKernel`` runs its cells through a :class:`~kernelsdk.NativeRunner`, the way a
kernel bridging a C runtime does::

    input PROMPT   NativeOutput.input(PROMPT) in the worker; prints the value (or "interrupted")
    print TEXT     print TEXT to stdout from the worker
"""

from __future__ import annotations

import base64
import hashlib
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import trio
import trio.testing

from kernelsdk import (
    BaseKernel,
    Comm,
    ExecuteContext,
    ExecutionError,
    IsComplete,
    NativeOutput,
    NativeRunner,
)
from kernelsdk.protocol import Message

_BUFFER = bytes(1 << 20)  # hashing >= 2 KiB releases the GIL


def _spin(seconds: float, stop: threading.Event) -> int:
    """Busy for ``seconds`` without holding the GIL (most of the time); returns rounds done."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline and not stop.is_set():
        hashlib.sha256(_BUFFER).digest()
        rounds += 1
    return rounds


def _hold_gil(seconds: float) -> None:
    """Spin for ``seconds`` without letting another thread take the GIL."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(seconds + 1.0)  # no thread asks for the GIL before then
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pass
    finally:
        sys.setswitchinterval(saved)


def _png(width: int = 32, height: int = 16) -> bytes:
    """A valid RGB PNG: a plain orange rectangle."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = b"".join(b"\0" + b"\xff\x80\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG_BASE64 = base64.b64encode(_png()).decode("ascii")


def _mpi_rank() -> int:
    """This process's MPI rank when run with --mpi (which imported mpi4py), else 0."""
    mpi = sys.modules.get("mpi4py.MPI")
    return int(mpi.COMM_WORLD.Get_rank()) if mpi is not None else 0


class ProbeKernel(BaseKernel):
    implementation = "probe"
    implementation_version = "0.1"
    language_info = {"name": "probe", "mimetype": "text/plain", "file_extension": ".probe"}
    banner = "probe kernel for the kernelsdk tests"
    display_name = "Probe"

    def __init__(self) -> None:
        super().__init__()
        self._spinning: set[threading.Event] = set()
        self._comm_waiters: set[trio.Event] = set()
        self._last_display_id = ""
        self._interpreter = threading.Lock()  # what a stateful interpreter's state needs
        self.comms.register_target("probe", self._open_probe)

    def _open_probe(self, comm: Comm, msg: Message) -> None:
        comm.on_msg(self._probe_msg)
        comm.send({"opened": msg.content.get("data", {})})

    def _probe_msg(self, comm: Comm, msg: Message) -> None:
        comm.send({"echo": msg.content.get("data", {})})
        for event in list(self._comm_waiters):
            event.set()

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str | None:
        result: str | None = None
        for line in code.splitlines():
            command, _, arg = line.lstrip().partition(" ")
            if not command:
                continue
            if command == "sleep":
                await ctx.run_blocking(time.sleep, float(arg))
            elif command == "spin":
                stop = threading.Event()
                self._spinning.add(stop)
                try:
                    await ctx.run_blocking(_spin, float(arg), stop)
                finally:
                    self._spinning.discard(stop)
            elif command == "asleep":
                await trio.sleep(float(arg))
            elif command == "block":
                time.sleep(float(arg))
            elif command == "hold":
                # Let the IOPub writer send busy and execute_input first. Bounded: under
                # --mpi, the tasks polling the other ranks never stay blocked for 10 ms.
                with trio.move_on_after(0.2):
                    await trio.testing.wait_all_tasks_blocked(0.01)
                _hold_gil(float(arg))
            elif command == "gil":
                ctx.print(f"sum {sum(range(int(float(arg))))}")
            elif command == "error":
                raise ExecutionError("ProbeError", "the probe was asked to fail")
            elif command == "rank-error":
                if _mpi_rank() in {int(r) for r in arg.split(",")}:
                    raise ExecutionError("ProbeError", f"rank {_mpi_rank()} was asked to fail")
            elif command == "rank":
                ctx.print(f"I am rank {_mpi_rank()}")
            elif command == "input":
                ctx.print(await ctx.input(arg))
            elif command == "thread-input":
                ctx.print(await ctx.run_blocking(self._input_in_interpreter, ctx, arg))
            elif command == "password":
                ctx.print(await ctx.input("Password: ", password=True))
            elif command == "display":
                display_id, _, text = arg.partition(" ")
                ctx.display({"text/plain": text}, display_id=display_id)
            elif command == "update":
                display_id, _, text = arg.partition(" ")
                ctx.update_display(display_id, {"text/plain": text})
            elif command == "display-new":
                self._last_display_id = uuid.uuid4().hex
                ctx.display({"text/plain": arg}, display_id=self._last_display_id)
            elif command == "update-last":
                ctx.update_display(self._last_display_id, {"text/plain": arg})
            elif command == "html":
                ctx.display({"text/html": arg, "text/plain": "<html output>"})
            elif command == "png":
                ctx.display({"image/png": PNG_BASE64, "text/plain": "<png image>"})
            elif command == "clear":
                ctx.clear_output()
            elif command == "sh":
                # Native output: the shell writes to the kernel process's descriptors.
                await ctx.run_blocking(_shell, arg)
            elif command == "printf":
                await ctx.run_blocking(_c_printf, arg)
            elif command == "touch":
                Path(arg).touch()
            elif command == "print":
                ctx.print(arg)
            elif command == "stderr":
                ctx.stderr(arg + "\n")
            elif command == "result":
                result = arg
            elif command == "comm-wait":
                event = trio.Event()
                self._comm_waiters.add(event)
                try:
                    ctx.print("waiting for comm")
                    with trio.fail_after(float(arg or 30)):
                        await event.wait()
                finally:
                    self._comm_waiters.discard(event)
                ctx.print("comm received")
            else:
                raise ExecutionError("UnknownCommand", f"unknown probe command {command!r}")
        return result

    async def do_is_complete(self, code: str) -> IsComplete:
        return IsComplete("incomplete" if code.rstrip().endswith("\\") else "complete")

    def _input_in_interpreter(self, ctx: ExecuteContext, prompt: str) -> str:
        with self._interpreter:
            try:
                return ctx.input_from_thread(prompt)
            finally:
                # After an interrupt this worker outlives its cell: this output must not be
                # published after the cell's idle.
                ctx.print("worker done")

    def do_interrupt(self) -> None:
        for stop in list(self._spinning):
            stop.set()


class ProbeMessageKernel(ProbeKernel):
    interrupt_mode = "message"


class SubshellProbeKernel(ProbeKernel):
    """The probe claiming kernel subshells (JEP 91): its cells share nothing a concurrent
    cell could corrupt (Trio runs them on one thread; ``sleep`` and ``spin`` wait in worker
    threads of their own), so subshells run them concurrently."""

    concurrent_subshells = True


class SubshellProbeMessageKernel(SubshellProbeKernel):
    interrupt_mode = "message"


class CapturingProbeKernel(ProbeKernel):
    """The probe with its process's descriptors 1 and 2 captured into cells."""

    capture_native_output = True


def _shell(command: str) -> None:
    subprocess.run(command, shell=True, check=False)


def _c_printf(text: str) -> None:
    """``printf`` from C, called through cffi: buffered by C's stdio, not by Python."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("int printf(const char *format, ...);")
    libc = ffi.dlopen(None)
    libc.printf(b"%s\n", ffi.new("char[]", text.encode()))


class NativeProbeKernel(BaseKernel):
    implementation = "native-probe"
    implementation_version = "0.1"
    language_info = {"name": "probe", "mimetype": "text/plain", "file_extension": ".probe"}
    display_name = "Native probe"

    def __init__(self) -> None:
        super().__init__()
        self.runner = NativeRunner(lambda: None)  # the worker only blocks in input

    async def do_execute(self, code: str, ctx: ExecuteContext) -> None:
        await self.runner.run(self._run, code, ctx=ctx)

    @staticmethod
    def _run(out: NativeOutput, code: str) -> None:
        for line in code.splitlines():
            command, _, arg = line.lstrip().partition(" ")
            if command == "input":
                value = out.input(arg)
                out.write("stdout", f"{'interrupted' if value is None else value}\n")
            elif command == "print":
                out.write("stdout", arg + "\n")
            elif command:
                raise ExecutionError("UnknownCommand", f"unknown command {command!r}")

    def do_interrupt(self) -> None:
        self.runner.interrupt()
