"""A Python host for tests/test_embed_insitu.py: a step loop on every MPI rank with a kernel
embedded by kernelsdk.embed._mpi (run under mpiexec; MPI initialized by mpi4py, as a host's).

Cells are Python run by a small kernel of this file on the host's thread; they see ``state``
(``step``; ``end``: set it to stop the loop; ``pause``: seconds the next step lasts, a slow
step during which cells wait for the next poll) and ``comm``, ``rank``, ``size``.

    mpiexec -n N python embed_mpi_host.py NAME
"""

from __future__ import annotations

import sys
import time
from typing import Any

import mpi4py

mpi4py.rc.thread_level = "multiple"
from mpi4py import MPI  # noqa: E402

from kernelsdk import BaseKernel, ExecuteContext  # noqa: E402
from kernelsdk.embed import start_mpi_kernel  # noqa: E402


class CellKernel(BaseKernel):
    implementation = "embed-mpi-host"
    language = "python"

    def __init__(self) -> None:
        super().__init__()
        self.namespace: dict[str, Any] = {}

    async def do_execute(self, code: str, ctx: ExecuteContext) -> None:
        self.namespace["print"] = ctx.print
        await ctx.run_blocking(exec, code, self.namespace)


def main() -> None:
    comm = MPI.COMM_WORLD
    handle = start_mpi_kernel(CellKernel(), sys.argv[1])
    if comm.rank == 0:
        print(handle.connection_file, flush=True)
    state = {"step": 0, "end": 10**9}
    handle.kernel.namespace["state"] = state  # type: ignore[attr-defined]
    while state["step"] < state["end"]:
        state["step"] += 1
        if handle.poll(0.0):
            state["end"] = comm.bcast(state["end"], root=0)
        time.sleep(state.pop("pause", 0.002))
    handle.stop()
    if comm.rank == 0:
        print(f"done after {state['step']} steps", flush=True)


if __name__ == "__main__":
    main()
