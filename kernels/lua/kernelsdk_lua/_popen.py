"""The Python half of the Lua kernel's ``io.popen`` (the Lua half is in ``driver.lua``).

lupa's Lua libraries are built without ``popen``; and a native ``popen`` would leave the
command's stderr (and, in ``"w"`` mode, its stdout) on the kernel's terminal, where notebook
users never see it. So the command starts here, with :class:`subprocess.Popen`; Lua opens
our end of the pipe as ``/dev/fd/N`` (a real Lua file), after which we close our copy. What
the command writes to the streams Lua does not read goes to temporary files, published in the
cell as stdout/stderr when Lua closes the file (a pipe nobody reads could fill up and block
the command, and with it the cell).

Each command runs in its own process group, so that an interrupt can stop it (and with it a
Lua ``read`` blocked on the pipe, which no Lua hook can reach) without signalling the kernel.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO


@dataclass
class _Command:
    process: subprocess.Popen[bytes]
    pipe_fd: int | None  # our end of the pipe, until Lua has opened its own
    captured: dict[str, IO[bytes]] = field(default_factory=dict)  # stream name -> temp file
    interrupts: int = 0


#: Writes captured output into the running cell: (stream name, text).
Write = Callable[[str, str], None]


class Commands:
    """The commands started by ``io.popen`` in one Lua state, by id (ids start at 1)."""

    def __init__(self) -> None:
        self._commands: dict[int, _Command] = {}
        self._ids = itertools.count(1)
        self._forgotten: list[subprocess.Popen[bytes]] = []  # unclosed files: reap later
        #: Ends what Lua left open; runs once, when called (at shutdown) or when this object
        #: is collected (a kernel dropped without a shutdown, as in tests).
        self.end_all = weakref.finalize(self, _end_all, self._commands, self._forgotten)

    def open(self, command: str, write: bool) -> int:
        """Start ``command`` through the shell, like C's popen; returns its id.

        Raises:
            OSError: the command could not be started (e.g. no /bin/sh).
        """
        self._reap()
        # Closed in close() or forget(), after the command: no `with` can span that.
        captured: dict[str, IO[bytes]] = {"stderr": tempfile.TemporaryFile()}  # noqa: SIM115
        if write:
            captured["stdout"] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            process = subprocess.Popen(
                command,
                shell=True,
                stdin=subprocess.PIPE if write else subprocess.DEVNULL,
                stdout=captured["stdout"] if write else subprocess.PIPE,
                stderr=captured["stderr"],
                start_new_session=True,  # its own process group: see interrupt()
            )
        except BaseException:
            for f in captured.values():
                f.close()
            raise
        pipe = process.stdin if write else process.stdout
        assert pipe is not None
        # Lua opens /dev/fd/N itself; the file object must not close N behind its back.
        pipe_fd = os.dup(pipe.fileno())
        pipe.close()
        command_id = next(self._ids)
        self._commands[command_id] = _Command(process, pipe_fd, captured)
        return command_id

    def pipe_fd(self, command_id: int) -> int:
        command = self._commands.get(command_id)
        return -1 if command is None or command.pipe_fd is None else command.pipe_fd

    def release(self, command_id: int) -> None:
        """Lua has opened its own descriptor of the pipe (or failed to): close ours, so that
        the command sees end of input when Lua closes its file."""
        command = self._commands.get(command_id)
        if command is not None and command.pipe_fd is not None:
            os.close(command.pipe_fd)
            command.pipe_fd = None

    def close(self, command_id: int, write_output: Write | None) -> int:
        """Wait for the command (Lua has closed its file); publish what it wrote to the
        captured streams. Returns the exit code, or 256 + the signal number."""
        command = self._commands.pop(command_id, None)
        if command is None:
            return 0
        self.release(command_id)
        if command.pipe_fd is not None:
            os.close(command.pipe_fd)
        returncode = command.process.wait()
        for name, f in command.captured.items():
            f.seek(0)
            data = f.read()
            f.close()
            if data and write_output is not None:
                write_output(name, data.decode("utf-8", "replace"))
        return 256 - returncode if returncode < 0 else returncode

    def forget(self, command_id: int) -> None:
        """Lua collected the file without closing it: reap the command when it ends."""
        command = self._commands.pop(command_id, None)
        if command is None:
            return
        if command.pipe_fd is not None:
            os.close(command.pipe_fd)
        for f in command.captured.values():
            f.close()
        self._forgotten.append(command.process)
        self._reap()

    def _reap(self) -> None:
        self._forgotten[:] = [p for p in self._forgotten if p.poll() is None]

    def interrupt(self) -> None:
        """Stop the running commands (called on interrupt, from another thread): SIGINT to
        each command's process group, SIGKILL from the second interrupt on."""
        for command in list(self._commands.values()):
            if command.process.poll() is not None:
                continue
            command.interrupts += 1
            sig = signal.SIGINT if command.interrupts == 1 else signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.killpg(command.process.pid, sig)


#: How long a command still running when the kernel goes may take to end by itself (its pipe's
#: other end is gone: a reader sees end of input, a writer SIGPIPE) before it is killed.
END_GRACE = 1.0


def _end_all(commands: dict[int, _Command], forgotten: list[subprocess.Popen[bytes]]) -> None:
    """The Lua state is gone, and with it every file of the commands' pipes: close our ends
    and the captured output, and reap the commands (killing those still running after
    ``END_GRACE``), so that no descriptor, temporary file or zombie is left behind."""
    for command in commands.values():
        if command.pipe_fd is not None:
            os.close(command.pipe_fd)
        for f in command.captured.values():
            f.close()
        forgotten.append(command.process)
    commands.clear()
    for process in forgotten:
        try:
            process.wait(END_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    forgotten.clear()
