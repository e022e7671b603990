"""The Python half of Lua's ``mpi`` table: collectives over mpi4py, for Lua code.

Lua calls ``host("mpi_<name>", payload, n)`` from the cell's worker thread; the reply is a
string the driver fetches: ``V`` and a Lua literal (the value), ``E`` and a message (Lua raises
it), or ``I`` (interrupted: Lua stops the cell). Payloads are made by the driver: ``V`` and a
Lua literal of the value (``E`` and a message when the value cannot be sent), for allreduce
``V<op> n|t <numbers>``. A rank whose value is invalid still takes part in the collective, so
every rank learns about the error instead of waiting forever for it.

The collectives run on a duplicate of ``COMM_WORLD`` made at startup (kernelsdk's own messages
travel on ``COMM_WORLD``) as non-blocking MPI collectives, waited for with ``Test`` and short
sleeps: an idle rank does not burn a core, and an interrupt stops the wait.

MPI cannot cancel a collective: a rank that abandoned one (interrupted) is out of step with the
others on that communicator, and so is a rank that completed collectives another rank never
entered (some MPIs let a broadcast's root finish before the receivers arrive; they were then
interrupted before reaching it). MPI matches collectives by their order on a communicator, so
the next one would pair with a stale message of another kind and size. So the first collective
of each cell starts with an agreement, by point-to-point messages tagged with the cell's number
on a second duplicate (the *parent*): if any rank has abandoned a collective, or the ranks have
completed different numbers of them, every rank switches to a fresh duplicate of the parent
(``Idup``). Every rank runs every cell, so cell numbers agree; stale messages of an interrupted
agreement carry an older tag and never match. Only an interrupt during that switch itself
leaves the ranks out of step for good (collectives then fail, saying to restart the kernel).

Without ``--mpi`` there is no communicator: rank 0 of 1, and the same code answers locally.
"""

from __future__ import annotations

import math
import os
import time
from array import array
from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = ["Collectives"]

_SPIN: Final = 0.01  # seconds of yielding before sleeping
_MAX_SLEEP: Final = 0.005
OUT_OF_STEP: Final = (
    "an interrupted collective left this rank out of step with the others "
    "(MPI cannot cancel a collective); restart the kernel to use mpi again"
)
_OPS: Final[dict[str, Callable[[Iterable[Any]], Any]]] = {"sum": sum, "min": min, "max": max}


class _Interrupted(Exception):
    pass


class _AllOf:
    """Several requests, tested together like one."""

    def __init__(self, requests: list[Any], testall: Callable[[list[Any]], bool]) -> None:
        self.requests, self.testall = requests, testall

    def Test(self) -> bool:  # named like mpi4py's Request.Test
        return self.testall(self.requests)


def lua_number(x: int | float) -> str:
    """A Lua literal for a number (integers wrap to 64 bits, as Lua's arithmetic does)."""
    if isinstance(x, int):
        x = (x + 2**63) % 2**64 - 2**63
        return "(-9223372036854775807-1)" if x == -(2**63) else str(x)
    if math.isnan(x):
        return "(0/0)"
    if math.isinf(x):
        return "(1/0)" if x > 0 else "(-1/0)"
    return repr(x)


def _parse_number(token: str) -> int | float:
    return float(token) if any(c in token for c in ".eEni") else int(token)


class Collectives:
    """MPI collectives for one Lua state.

    Args:
        parent: a duplicate of ``COMM_WORLD``, made on every rank at startup (the collectives
            run on duplicates of it); None without MPI (rank 0 of 1).
    """

    def __init__(self, parent: Any | None) -> None:
        #: for the agreements and for making fresh communicators; a duplicate of COMM_WORLD
        self.parent: Any = parent
        #: for the collectives (a collective call on every rank: at startup, or agreed)
        self.comm = parent.Dup() if parent is not None else None
        self.rank: int = parent.Get_rank() if parent is not None else 0
        self.size: int = parent.Get_size() if parent is not None else 1
        self.cell = 0  # the number of the running cell: the same on every rank
        self._agreed_cell = 0
        self.abandoned = False  # this rank abandoned a collective on self.comm
        self.completed = 0  # collectives this rank completed on self.comm
        self.out_of_step = False  # the switch to a fresh communicator was interrupted
        self._tag_cycle = 1 << 15  # MPI guarantees tags up to 32767
        # Abandoned requests (they hold their buffers, which MPI may still write to) and
        # communicators: kept for good, or freeing them would let MPI write to freed memory.
        self._abandoned: list[Any] = []

    def new_cell(self) -> None:
        """Call at the start of every cell (every rank runs every cell, in the same order)."""
        self.cell += 1

    def call(
        self, name: str, payload: bytes, number: int, interrupted: Callable[[], bool]
    ) -> bytes:
        """Run collective ``name`` for Lua; returns the reply (``V...``, ``E...`` or ``I``)."""
        if self.out_of_step:
            return b"E" + OUT_OF_STEP.encode()
        try:
            if self.parent is not None and self._agreed_cell != self.cell:
                self._agreed_cell = self.cell
                self._agree(interrupted)
            if self.abandoned:
                return b"Ethis rank abandoned a collective in this cell (interrupted)"
            reply = self._run(name, payload, number, interrupted)
        except _Interrupted:
            self.abandoned = True
            return b"I"
        self.completed += 1
        return reply

    def _run(
        self, name: str, payload: bytes, number: int, interrupted: Callable[[], bool]
    ) -> bytes:
        if name == "barrier":
            self._barrier(interrupted)
            return b"Vnil"
        if name == "bcast":
            return self._bcast(payload, number, interrupted)
        if name == "gather":
            return self._gather(payload, number, interrupted)
        if name == "allreduce":
            return self._allreduce(payload, interrupted)
        return b"Eunknown collective " + name.encode()

    # -- the collectives, on bytes ---------------------------------------------------------

    def _wait(self, request: Any, interrupted: Callable[[], bool], *buffers: Any) -> None:
        """Wait for ``request``; on interrupt abandon it, keeping its ``buffers`` for good.

        The caller names the buffers because mpi4py's requests do not always hold them
        (``Iallgatherv`` does not): MPI writes to them after Python would have freed them.
        """
        started = time.monotonic()
        while not request.Test():
            if interrupted():
                self._abandoned.append((request, buffers))
                raise _Interrupted
            idle = time.monotonic() - started
            if idle < _SPIN:
                os.sched_yield()
            else:
                time.sleep(min(_MAX_SLEEP, idle / 20))

    def _wait_all(self, requests: list[Any], interrupted: Callable[[], bool], buffers: Any) -> None:
        from mpi4py import MPI

        try:
            self._wait(_AllOf(requests, MPI.Request.Testall), interrupted, buffers)
        except _Interrupted:
            for request in requests:  # receives: must not match a later message
                request.Cancel()
            raise

    def _agree(self, interrupted: Callable[[], bool]) -> None:
        """Whether the ranks are out of step on self.comm; if so, every rank takes a fresh one."""
        from mpi4py import MPI

        parent, tag = self.parent, 1 + self.cell % self._tag_cycle
        # Abandoned or not, and how many collectives completed (-1: abandoned).
        mine = array("q", [-1 if self.abandoned else self.completed])
        if self.rank == 0:
            states = [array("q", [0]) for _ in range(self.size)]
            self._wait_all(
                [
                    parent.Irecv([states[r], MPI.INT64_T], source=r, tag=tag)
                    for r in range(1, self.size)
                ],
                interrupted,
                states,
            )
            states[0] = mine
            verdict = array("q", [int(len({s[0] for s in states}) > 1 or mine[0] < 0)])
            # Small messages: sent eagerly, so these complete at once.
            MPI.Request.Waitall(
                [parent.Isend([verdict, MPI.INT64_T], dest=r, tag=tag) for r in range(1, self.size)]
            )
        else:
            verdict = array("q", [0])
            receive = parent.Irecv([verdict, MPI.INT64_T], source=0, tag=tag)
            MPI.Request.Waitall([parent.Isend([mine, MPI.INT64_T], dest=0, tag=tag)])
            self._wait_all([receive], interrupted, verdict)
        if verdict[0]:
            comm, request = parent.Idup()
            try:
                self._wait(request, interrupted)
            except _Interrupted:
                self._abandoned.append(comm)  # MPI would still write its handle
                self.out_of_step = True
                raise
            self._abandoned.append(self.comm)
            self.comm, self.abandoned, self.completed = comm, False, 0

    def _barrier(self, interrupted: Callable[[], bool]) -> None:
        if self.comm is not None:
            self._wait(self.comm.Ibarrier(), interrupted)

    def _bcast(self, payload: bytes, root: int, interrupted: Callable[[], bool]) -> bytes:
        if self.comm is None:
            return payload
        from mpi4py import MPI

        length = array("q", [len(payload) if self.rank == root else 0])
        self._wait(self.comm.Ibcast([length, MPI.INT64_T], root), interrupted, length)
        data = bytearray(payload) if self.rank == root else bytearray(length[0])
        self._wait(self.comm.Ibcast([data, MPI.BYTE], root), interrupted, data)
        if data[:1] == b"E" and self.rank != root:
            return b"E" + f"rank {root}: ".encode() + bytes(data[1:])
        return bytes(data)

    def _gather_bytes(
        self, payload: bytes, root: int | None, interrupted: Callable[[], bool]
    ) -> list[bytes] | None:
        """Every rank's payload, on root (on every rank if root is None); None elsewhere."""
        if self.comm is None:
            return [payload]
        from mpi4py import MPI

        comm, size = self.comm, self.size
        mine = array("q", [len(payload)])
        lengths = array("q", [0] * size)
        receives = root is None or self.rank == root
        if root is None:
            request = comm.Iallgather([mine, MPI.INT64_T], [lengths, MPI.INT64_T])
        else:
            recv = [lengths, MPI.INT64_T] if receives else None
            request = comm.Igather([mine, MPI.INT64_T], recv, root)
        self._wait(request, interrupted, mine, lengths)
        counts = list(lengths) if receives else [0] * size
        displs = [sum(counts[:i]) for i in range(size)]
        data = bytearray(sum(counts))
        send = [bytearray(payload), MPI.BYTE]
        recv_all = [data, (counts, displs), MPI.BYTE]
        if root is None:
            request = comm.Iallgatherv(send, recv_all)
        else:
            request = comm.Igatherv(send, recv_all if receives else None, root)
        self._wait(request, interrupted, send, recv_all)
        if not receives:
            return None
        return [bytes(data[d : d + c]) for d, c in zip(displs, counts, strict=True)]

    # -- what Lua asked for ------------------------------------------------------------------

    def _gather(self, payload: bytes, root: int, interrupted: Callable[[], bool]) -> bytes:
        payloads = self._gather_bytes(payload, root, interrupted)
        if payload[:1] != b"V":
            return payload  # this rank's value could not be sent: its error
        if payloads is None:
            return b"Vnil"
        for rank, item in enumerate(payloads):
            if item[:1] != b"V":
                return b"E" + f"rank {rank}: ".encode() + item[1:]
        fields = (f"[{rank + 1}]=".encode() + item[1:] for rank, item in enumerate(payloads))
        return b"V{" + b",".join(fields) + b"}"

    def _allreduce(self, payload: bytes, interrupted: Callable[[], bool]) -> bytes:
        payloads = self._gather_bytes(payload, None, interrupted)
        assert payloads is not None
        try:
            return b"V" + _reduce([p.decode("utf-8", "replace") for p in payloads]).encode()
        except ValueError as exc:
            return b"E" + str(exc).encode()


def _reduce(payloads: list[str]) -> str:
    """Every rank's ``V<op> n|t <numbers>`` (or ``E<message>``) -> the result as a Lua literal.

    Raises:
        ValueError: naming the ranks whose value or op is wrong; the same on every rank.
    """
    bad = [(rank, p[1:]) for rank, p in enumerate(payloads) if not p.startswith("V")]
    if bad:
        ranks = ", ".join(str(rank) for rank, _ in bad)
        if len(payloads) == 1:
            raise ValueError(bad[0][1])
        raise ValueError(f"{bad[0][1]} (on rank{'s' if len(bad) > 1 else ''} {ranks})")
    parsed = []
    for p in payloads:
        op, kind, *tokens = p[1:].split(" ")
        parsed.append((op, kind, [_parse_number(t) for t in tokens if t]))
    op, kind, first = parsed[0]
    for rank, (other_op, other_kind, values) in enumerate(parsed):
        if other_op != op:
            raise ValueError(f"rank 0 reduces with {op!r}, rank {rank} with {other_op!r}")
        if other_kind != kind:
            raise ValueError(f"rank 0 sends a {_what(kind)}, rank {rank} a {_what(other_kind)}")
        if len(values) != len(first):
            raise ValueError(f"rank 0 sends {len(first)} numbers, rank {rank} sends {len(values)}")
    reduce = _OPS[op]
    result = [lua_number(reduce(column)) for column in zip(*(v for _, _, v in parsed), strict=True)]
    if kind == "n":
        return result[0]
    return "{" + ",".join(result) + "}"


def _what(kind: str) -> str:
    return "number" if kind == "n" else "table"
