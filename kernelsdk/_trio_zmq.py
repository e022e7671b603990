"""Drive a plain (non-asyncio) pyzmq socket from Trio.

Theory of operation
===================

A ZeroMQ socket is not a file descriptor. ``ZMQ_FD`` is the fd of the socket's internal
*command mailbox*: it becomes readable when libzmq has commands for the socket (a peer pipe
got messages, a full pipe drained, a peer connected, ...) and stops being readable as soon
as *any* call on the socket (send, recv, or reading ``ZMQ_EVENTS``) processes them. The
socket's real state is ``ZMQ_EVENTS``: ``POLLIN`` (a message can be received now) and
``POLLOUT`` (a message can be sent now). So the fd is *edge-triggered*: it says, once, that
EVENTS may have changed, and whichever call touches the socket first eats that signal.
Hence the rules this module follows:

1. Try the operation with NOBLOCK first. On EAGAIN read EVENTS, and wait on the fd only if
   our flag is clear. A set flag produces no further edge (the messages are already
   queued), so waiting would hang.
2. Touching the socket can eat the edge another waiting task counts on: a send can consume
   the signal that a message arrived. So after every successful send/recv, and before
   going to sleep, a task that sees a flag some waiter wants (from the EVENTS it just read)
   wakes the waiters; they re-check for themselves. A waiter whose flag is clear in a fresh
   EVENTS may keep sleeping: libzmq has just processed every pending command, so the next
   change of that flag comes with a new edge on the fd.
3. Trio allows one task per fd in ``wait_readable`` (a second raises BusyResourceError).
   The first waiter becomes the *watcher* and waits on the fd inside a private cancel
   scope; later waiters park in a ParkingLot. Waking the watcher means cancelling that
   scope. Whenever the watcher leaves (fd readable, woken, cancelled, socket closed) it
   unparks everybody, so someone re-checks EVENTS and takes over the fd: parked tasks never
   sleep without a watcher.
4. EAGAIN while our flag is *set* does happen: with ROUTER_MANDATORY, POLLOUT means "some
   peer has room", not necessarily the peer we address, and no edge is promised when that
   peer drains. Such a retry checkpoints first, then sleeps with a short capped backoff:
   it never spins without yielding and never waits forever on an edge that may not come.
5. ``close()`` calls ``trio.lowlevel.notify_closing(fd)`` first, so the watcher gets
   ClosedResourceError instead of sleeping on an fd that libzmq is about to close; parked
   tasks are unparked and find the socket closed.

Every operation is a Trio checkpoint: ``checkpoint_if_cancelled`` before (a cancelled
operation did not happen) and, when it succeeded without having to wait,
``cancel_shielded_checkpoint`` after (busy loops stay fair, and a completed operation is never
reported as cancelled); an operation that waited has yielded already. The common case, an
operation that succeeds immediately with nobody else waiting, costs one NOBLOCK call plus
those two checkpoints.

Like the zmq socket itself, a TrioSocket belongs to one thread (one Trio run). Any number of
tasks of that run may send and receive on it concurrently. Wrap a zmq socket only once, and
close it only through its TrioSocket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Final, cast, final

import trio
import zmq

from kernelsdk._exceptions import TransportError

__all__ = ["TrioSocket"]

# Plain ints, not pyzmq's enum members: combining or testing IntFlag members runs Python-level
# enum code (about 1.5 us per operation on the project's machine), and pyzmq's
# send_multipart/recv_multipart do that once per frame. This module has its own frame loops
# (_send_frames, _recv_frames) that pass ints straight to the Cython socket methods.
_NOBLOCK: Final = int(zmq.NOBLOCK)
_MORE_NOBLOCK: Final = int(zmq.SNDMORE | zmq.NOBLOCK)
_EVENTS: Final = int(zmq.EVENTS)
_RCVMORE: Final = int(zmq.RCVMORE)
_POLLIN: Final = int(zmq.POLLIN)
_POLLOUT: Final = int(zmq.POLLOUT)

# Sleeps for rule 4, indexed by how many times in a row the retry found its flag set.
_BACKOFF: Final = (0.0, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005)


def _send_frames(sock: zmq.Socket[Any], frames: Sequence[bytes]) -> None:
    """``sock.send_multipart(frames, NOBLOCK)`` without pyzmq's per-frame enum arithmetic."""
    send = sock.send
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        send(frame, _MORE_NOBLOCK if i < last else _NOBLOCK)


def _recv_frames(sock: zmq.Socket[Any]) -> list[bytes]:
    """``sock.recv_multipart(NOBLOCK)`` reading RCVMORE as a plain int."""
    recv, get = sock.recv, sock.get
    frames = [recv(_NOBLOCK)]
    while get(_RCVMORE):
        frames.append(recv(_NOBLOCK))
    return frames


@final
class TrioSocket:
    """A zmq socket whose send/recv are Trio checkpoints that wait without blocking."""

    __slots__ = ("_closed", "_fd", "_lot", "_readers", "_sock", "_watcher", "_writers")

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self._sock = sock
        self._fd = cast(int, sock.getsockopt(zmq.FD))
        self._lot = trio.lowlevel.ParkingLot()
        self._watcher: trio.CancelScope | None = None  # scope of the task in wait_readable
        self._readers = 0  # tasks waiting for POLLIN (watcher or parked)
        self._writers = 0  # tasks waiting for POLLOUT (watcher or parked)
        self._closed = False

    @property
    def socket(self) -> zmq.Socket[Any]:
        """The wrapped zmq socket (for options; do not send/recv/close it directly)."""
        return self._sock

    @property
    def closed(self) -> bool:
        return self._closed

    async def send_multipart(self, frames: Sequence[bytes]) -> None:
        """Send one multipart message, waiting while the socket cannot accept it."""
        await trio.lowlevel.checkpoint_if_cancelled()
        spins = 0
        waited = False  # _wait always yields: a checkpoint has happened
        while True:
            try:
                # libzmq accepts the rest of a multipart message once the first frame is
                # in, so a NOBLOCK EAGAIN always means "nothing sent".
                _send_frames(self._sock, frames)
                break
            except zmq.Again:
                spins = await self._wait(_POLLOUT, spins)
                waited = True
            except zmq.ZMQError as exc:
                raise self._error(exc) from exc
        if self._readers or self._writers:
            self._wake_ready()
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def send_multipart_nowait(self, frames: Sequence[bytes], *, wake: bool = True) -> None:
        """Send one multipart message if the socket can take it now.

        With ``wake=False`` the caller sends several messages in a row and calls
        :meth:`wake_waiters` once after the last, before its task yields (rule 2 only needs
        the waiters woken before anyone else runs).

        Raises:
            trio.WouldBlock: the socket cannot take it without waiting (nothing was sent).
        """
        try:
            _send_frames(self._sock, frames)
        except zmq.Again:
            if self._readers or self._writers:
                self._wake_ready()
            raise trio.WouldBlock from None
        except zmq.ZMQError as exc:
            raise self._error(exc) from exc
        if wake and (self._readers or self._writers):
            self._wake_ready()

    def wake_waiters(self) -> None:
        """Wake the tasks waiting for a flag that is now set (after ``wake=False`` sends)."""
        if self._readers or self._writers:
            self._wake_ready()

    async def recv_multipart(self) -> list[bytes]:
        """Receive one multipart message, waiting until one is available."""
        await trio.lowlevel.checkpoint_if_cancelled()
        spins = 0
        waited = False  # _wait always yields: a checkpoint has happened
        while True:
            try:
                frames = _recv_frames(self._sock)
                break
            except zmq.Again:
                spins = await self._wait(_POLLIN, spins)
                waited = True
            except zmq.ZMQError as exc:
                raise self._error(exc) from exc
        if self._readers or self._writers:
            self._wake_ready()
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return frames

    def recv_multipart_nowait(self) -> list[bytes]:
        """Receive one multipart message that has already arrived.

        Raises:
            trio.WouldBlock: no message is waiting.
        """
        try:
            frames = _recv_frames(self._sock)
        except zmq.Again:
            # The call processed pending commands, perhaps an edge a waiter counts on.
            if self._readers or self._writers:
                self._wake_ready()
            raise trio.WouldBlock from None
        except zmq.ZMQError as exc:
            raise self._error(exc) from exc
        if self._readers or self._writers:
            self._wake_ready()
        return frames

    async def wait_readable(self) -> None:
        """Wait until a message can be received, without receiving it.

        A message waiting here belongs to nobody yet: whichever task calls
        :meth:`recv_multipart_nowait` first takes it. (A task inside :meth:`recv_multipart`
        holds its message across the final checkpoint, where others cannot see it.)
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        spins = 0
        waited = False  # _wait always yields: a checkpoint has happened
        while True:
            try:
                events = cast(int, self._sock.get(_EVENTS))
            except zmq.ZMQError as exc:
                raise self._error(exc) from exc
            self._wake(events)  # reading EVENTS may have eaten another waiter's edge
            if events & _POLLIN:
                break
            spins = await self._wait(_POLLIN, spins)
            waited = True
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def close(self, linger: int | None = None) -> None:
        """Close the socket; tasks waiting on it get trio.ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        # Outside trio.run notify_closing raises RuntimeError; no task can be waiting then.
        with contextlib.suppress(RuntimeError):
            trio.lowlevel.notify_closing(self._fd)
        self._lot.unpark_all()  # parked tasks retry and see the socket closed
        self._sock.close(linger=linger)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    # -- slow path -------------------------------------------------------------------

    async def _wait(self, flag: int, spins: int) -> int:
        """Sleep until it is worth retrying an operation that got EAGAIN.

        Returns the new count of consecutive retries that found ``flag`` already set.
        """
        try:
            events = cast(int, self._sock.get(_EVENTS))
        except zmq.ZMQError as exc:
            raise self._error(exc) from exc
        # Reading EVENTS processed pending commands: it may have eaten an edge that the
        # watcher is waiting for (rule 2).
        self._wake(events)
        if events & flag:
            # Rule 4 (or a command that arrived just now): retry, yielding first.
            await trio.sleep(_BACKOFF[min(spins, len(_BACKOFF) - 1)])
            return spins + 1
        if flag == _POLLIN:
            self._readers += 1
        else:
            self._writers += 1
        try:
            if self._watcher is None:
                await self._watch()
            else:
                await self._lot.park()
        finally:
            if flag == _POLLIN:
                self._readers -= 1
            else:
                self._writers -= 1
        return 0

    async def _watch(self) -> None:
        with trio.CancelScope() as scope:
            # Another task cancels this scope to wake us. A cancellation of an enclosing
            # scope is not swallowed here: Trio lets it propagate.
            self._watcher = scope
            try:
                await trio.lowlevel.wait_readable(self._fd)
            finally:
                self._watcher = None
                # Whatever happened, the parked tasks must re-check EVENTS and one of them
                # must take over the fd (rule 3).
                self._lot.unpark_all()

    def _wake_ready(self) -> None:
        """After a successful operation, wake the waiters whose flag is now set."""
        try:
            events = cast(int, self._sock.get(_EVENTS))
        except zmq.ZMQError:
            events = _POLLIN | _POLLOUT  # let the waiters find out what is wrong
        self._wake(events)

    def _wake(self, events: int) -> None:
        if (events & _POLLIN and self._readers) or (events & _POLLOUT and self._writers):
            if self._watcher is not None:
                self._watcher.cancel()
            self._lot.unpark_all()

    def _error(self, exc: zmq.ZMQError) -> Exception:
        if self._closed or self._sock.closed or exc.errno == zmq.ENOTSOCK:
            return trio.ClosedResourceError("the zmq socket was closed")
        return TransportError(f"zmq error {exc.errno}: {exc.strerror}")
