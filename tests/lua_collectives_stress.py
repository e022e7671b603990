"""Run under ``mpiexec -n N``: Lua's collectives, interrupted at random moments, many times.

Each rank's "interrupt" arrives at its own random moment (as interrupts reach ranks at different
times), inside a collective or between two; the next cell's collective must work. Before the
fix this crashed within a few hundred cells: ``Iallgatherv`` does not keep its buffers alive,
so an abandoned one wrote into memory Python had freed.
"""

import random
import sys
import time

from kernelsdk_lua._mpi import Collectives
from mpi4py import MPI

collectives = Collectives(MPI.COMM_WORLD.Dup())
size = collectives.size
random.seed(int(sys.argv[1]) * 10 + collectives.rank)
for _ in range(int(sys.argv[2])):
    collectives.new_cell()
    deadline = time.monotonic() + random.random() * 0.01

    def interrupted(deadline: float = deadline) -> bool:
        return time.monotonic() > deadline

    while True:  # Lua: while true do mpi.allreduce({1, 2}) mpi.bcast("x", 1) end
        reply = collectives.call("allreduce", b"Vsum t 1 2", 0, interrupted)
        if reply == b"I" or (interrupted() and random.random() < 0.5):
            break  # interrupted inside the collective, or by the hook after it
        assert reply == f"V{{{size},{2 * size}}}".encode(), reply
        reply = collectives.call("bcast", b'V"x"', 1, interrupted)
        if reply == b"I" or (interrupted() and random.random() < 0.5):
            break
        assert reply == b'V"x"', reply
    collectives.new_cell()
    reply = collectives.call("allreduce", b"Vsum n 1", 0, lambda: False)
    assert reply == f"V{size}".encode(), (collectives.rank, reply)
print(f"rank {collectives.rank} ok", flush=True)
