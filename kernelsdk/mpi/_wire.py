"""What rank 0 and the other ranks say to each other, and how they wait for it.

Rank 0 sends *commands* (tag ``TAG_COMMAND``) to every other rank; each other rank sends
*reports* (tag ``TAG_REPORT``) back to rank 0. Both are point-to-point MPI messages that
mpi4py pickles, so the classes are small, flat and frozen: match on their class. Every one
carries ``seq``, the number of the execution it belongs to, so a late report of an interrupted
cell can never be taken for the next one's.

No rank ever blocks in an MPI call: sends are ``isend``, and waiting is ``improbe`` polled
from Trio with a backoff (:func:`receive_command`, :func:`receive_report`), so idle ranks use
almost no CPU (a blocking receive busy-polls a core in MPICH) and every rank stays
interruptible.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Final, final

import attrs
import trio

if TYPE_CHECKING:
    from mpi4py import MPI

TAG_COMMAND: Final = 17  # rank 0 -> other ranks
TAG_REPORT: Final = 18  # other ranks -> rank 0
#: Polling: only yield for this long after the last message, then sleep at most this long.
SPIN: Final = 0.01
MAX_POLL_SLEEP: Final = 0.005

# -- commands: rank 0 -> every other rank ---------------------------------------------------


@final
@attrs.frozen
class ExecuteCommand:
    """Run a cell, as rank 0's ``execute_request`` asks."""

    seq: int
    code: str
    execution_count: int
    silent: bool
    store_history: bool
    allow_stdin: bool


@final
@attrs.frozen
class InputReplyCommand:
    """The answer to one rank's :class:`InputRequestReport`: a value, or why there is none
    (``"EOFError: ..."``, or another exception as ``"Name: message"``)."""

    seq: int
    value: str | None
    error: str | None


@final
@attrs.frozen
class InterruptCommand:
    """Stop the running cell (if it is still ``seq``) and call the kernel's ``do_interrupt``."""

    seq: int


@final
@attrs.frozen
class ShutdownCommand:
    """Call the kernel's ``do_shutdown`` and leave (answered by a :class:`ByeReport`)."""

    seq: int
    restart: bool


Command = ExecuteCommand | InputReplyCommand | InterruptCommand | ShutdownCommand

# -- reports: every other rank -> rank 0 ----------------------------------------------------


@final
@attrs.frozen
class OutputReport:
    """One IOPub output of a cell on ``rank`` (``stream``, ``display_data``, ...)."""

    seq: int
    rank: int
    msg_type: str
    content: dict[str, Any]
    metadata: dict[str, Any] | None
    buffers: tuple[bytes, ...]


@final
@attrs.frozen
class InputRequestReport:
    """A cell on ``rank`` called ``input()``: rank 0 prompts (or reuses a prompt's answer)."""

    seq: int
    rank: int
    prompt: str
    password: bool


@final
@attrs.frozen
class DoneReport:
    """The cell has ended on ``rank``: ``error`` is its error content, None if it succeeded."""

    seq: int
    rank: int
    error: dict[str, Any] | None


@final
@attrs.frozen
class ByeReport:
    """``rank`` has shut its kernel down and is about to leave the job."""

    seq: int
    rank: int


Report = OutputReport | InputRequestReport | DoneReport | ByeReport


def send(comm: MPI.Intracomm, message: Command | Report, dest: int) -> MPI.Request:
    """Start sending ``message`` to rank ``dest``; the caller keeps the request until it is
    done. Non-blocking: a large cell must not block rank 0's event loop until every rank
    reads it."""
    tag = TAG_REPORT if isinstance(message, Report) else TAG_COMMAND
    return comm.isend(message, dest=dest, tag=tag)


class Nudge:
    """Lets a rank wait for commands with long sleeps and still get one at once when a local
    event says it is coming: a simulation's worker idles between steps for long stretches
    (each wake-up costs CPU the simulation could use), and its host thread knows, in its
    collective poll, when rank 0 has sent it a cell.

    Args:
        max_sleep: the longest sleep between two looks for a message while a cell runs (how
            late an interrupt may reach the rank).
        idle_max_sleep: the longest between cells, where every command that matters (a cell,
            the end) is announced by a :meth:`wake` (default: ``max_sleep``).
    """

    def __init__(self, max_sleep: float, idle_max_sleep: float | None = None) -> None:
        self.max_sleep = max_sleep
        self.idle_max_sleep = max_sleep if idle_max_sleep is None else idle_max_sleep
        self._event = trio.Event()

    def wake(self) -> None:
        """Look for a message now (call on the Trio thread)."""
        self._event.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; whether :meth:`wake` ended it."""
        with trio.move_on_after(seconds):
            await self._event.wait()
        if self._event.is_set():
            self._event = trio.Event()
            return True
        return False


async def receive_command(
    comm: MPI.Intracomm, nudge: Nudge | None = None, *, between_cells: bool = False
) -> Command:
    """The next command from rank 0 (on a rank other than 0). ``between_cells``: no cell
    runs on this rank, so a ``nudge`` may sleep up to its ``idle_max_sleep``."""
    command: Command = await _poll(comm, 0, TAG_COMMAND, nudge, between_cells)
    return command


async def receive_report(comm: MPI.Intracomm) -> Report:
    """The next report from any other rank (on rank 0)."""
    report: Report = await _poll(comm, _any_source(), TAG_REPORT)
    return report


def receive_report_nowait(comm: MPI.Intracomm) -> Report | None:
    """A report from any other rank if one has arrived, else None."""
    message = comm.improbe(source=_any_source(), tag=TAG_REPORT)
    if message is None:
        return None
    report: Report = message.recv()
    return report


async def _poll(
    comm: MPI.Intracomm,
    source: int,
    tag: int,
    nudge: Nudge | None = None,
    between_cells: bool = False,
) -> Any:
    """Receive one message without blocking the thread: improbe, yielding in between.

    Messages come in bursts (a cell's command, then its reports), so for a short while after
    the last one it only yields to other tasks; then it sleeps, longer the longer it has
    been idle. Trio cannot sleep less than about a millisecond, which would otherwise be
    added to every hop between ranks. A ``nudge``'s wake means a message is on its way
    (perhaps not here yet): the wait starts over, yielding first.
    """
    started = time.monotonic()
    while True:
        message = comm.improbe(source=source, tag=tag)
        if message is not None:
            return message.recv()
        idle = time.monotonic() - started
        if idle < SPIN:
            # Let other processes run first: ranks often outnumber cores.
            os.sched_yield()
            await trio.lowlevel.checkpoint()
        elif nudge is None:
            await trio.sleep(min(MAX_POLL_SLEEP, idle / 20))
        else:
            longest = nudge.idle_max_sleep if between_cells else nudge.max_sleep
            if await nudge.sleep(min(longest, idle / 20)):
                started = time.monotonic()


def _any_source() -> int:
    from mpi4py import MPI

    return int(MPI.ANY_SOURCE)
