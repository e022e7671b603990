"""Run any :class:`~kernelsdk.BaseKernel` across the ranks of an MPI job.

Theory of operation
-------------------
The launcher (``mpiexec -n N`` or ``srun``) starts ``python -m kernelsdk run KERNEL --mpi`` on
every rank. Every rank creates the same kernel class; :func:`run_mpi_kernel` gives each its
role.

* **Rank 0** serves the Jupyter protocol as usual, with the kernel wrapped in
  :class:`RootKernel` (``_root``). Completion, inspection, history and ``is_complete`` are
  answered by rank 0 alone. An execution is sent to every other rank, runs on all ranks at
  once, and ends when every rank has reported back: the reply is ``ok`` only if every rank
  succeeded, otherwise one ``error`` names the failing ranks with their tracebacks.
* **Other ranks** run :func:`serve_worker` (``_worker``): wait for a command from rank 0, run
  it, report. Their output travels to rank 0 while the cell runs and is published there,
  labelled by rank (see :class:`OutputMode`).

Everything between ranks is MPI point-to-point messages (``_wire``: typed commands and
reports that mpi4py pickles), each carrying the execution's sequence number so a late report
of an interrupted cell can never be mistaken for the next one's. No rank ever blocks in an MPI
call: waiting is ``improbe`` polled from Trio with a backoff, so idle ranks use almost no CPU
(a blocking receive busy-polls a core in MPICH) and every rank stays interruptible.

Interrupts are messages too (the kernelspec says ``interrupt_mode: message``): rank 0 sends
an interrupt command, each rank cancels its running ``do_execute`` and calls the kernel's
``do_interrupt`` hook. No signal reaches the launcher, which MPICH and Open MPI handle
differently (Open MPI dies on the first SIGINT, MPICH aborts the job on the second).

mpi4py is imported only when a kernel is run with ``--mpi``.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .._exceptions import ConfigError, KernelSDKError
from .._kernel import BaseKernel
from ._root import SHUTDOWN_GRACE, OutputMode, RootKernel
from ._worker import serve_worker

if TYPE_CHECKING:
    from mpi4py import MPI

__all__ = ["OutputMode", "RootKernel", "run_mpi_kernel", "serve_worker", "world"]

_world: MPI.Intracomm | None = None  # set by run_mpi_kernel


def world() -> MPI.Intracomm | None:
    """The job's ``MPI.COMM_WORLD`` when this process runs a kernel with ``--mpi``, else None.

    Set on every rank before the kernel is created, so a kernel's ``__init__`` can learn its
    rank and the number of ranks. A kernel that makes MPI calls of its own should make them on
    a duplicate created in ``__init__`` (``world().Dup()``: every rank creates its kernel once,
    at startup), so they can never match the messages kernelsdk sends on ``COMM_WORLD``.
    """
    return _world


def _comm_world() -> MPI.Intracomm:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ConfigError(
            f"running a kernel with --mpi needs mpi4py and an MPI library ({exc}); "
            "pip install mpi4py mpich"
        ) from None
    return MPI.COMM_WORLD


def run_mpi_kernel(
    kernel_factory: Callable[[], BaseKernel],
    connection_file: str,
    *,
    packer: str = "json",
    log_level: str = "WARNING",
    output: OutputMode = OutputMode.ALL,
    watch_parent: bool = False,
    capture_output: bool = True,
) -> None:
    """Run on every rank: rank 0 serves the kernel, the others serve rank 0.

    With ``watch_parent``, rank 0 watches the frontend (see :func:`kernelsdk.run_kernel`);
    when it dies, rank 0 shuts down and tells every rank to, as on a shutdown request.

    With ``capture_output`` (the default), what each rank's native code and subprocesses
    write to descriptors 1 and 2 while a cell runs is that rank's output of the cell,
    labelled like the rest; a launcher would otherwise print it, unlabelled, on its terminal.
    """
    global _world
    comm = _world = _comm_world()
    if comm.Get_rank() == 0:
        from .._runtime import run_kernel

        roots: list[RootKernel] = []

        def root() -> BaseKernel:
            roots.append(RootKernel(kernel_factory(), comm, output))
            return roots[0]

        try:
            run_kernel(
                root,
                connection_file,
                packer=packer,
                log_level=log_level,
                watch_parent=watch_parent,
                capture_output=capture_output,
            )
        except KernelSDKError as exc:
            # Rank 0 cannot serve (a port taken, a bad connection file). The other ranks would
            # wait for its commands forever, and MPI_Finalize at exit waits for them: the job
            # would hang instead of dying, and the client would never learn why. End it.
            print(f"kernelsdk: error: {exc}", file=sys.stderr, flush=True)
            comm.Abort(2)
        stuck = roots[0].end_job() if roots else []
        if stuck:
            print(
                f"kernelsdk: error: ranks {stuck} did not stop within {SHUTDOWN_GRACE} s "
                "of shutdown: aborting the job",
                file=sys.stderr,
                flush=True,
            )
            comm.Abort(1)
        return
    from .._runtime import log_stream

    # MPICH's launcher forwards a SIGINT to every rank: that must not kill one of them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.WARNING),
        stream=log_stream(),
        format=f"[kernelsdk rank {comm.Get_rank()} %(levelname)s] %(message)s",
    )
    trio.run(_serve_worker_process, kernel_factory(), comm, capture_output)


async def _serve_worker_process(kernel: BaseKernel, comm: MPI.Intracomm, capture: bool) -> None:
    """A worker rank's process: its descriptors captured (if asked) while it serves."""
    from .._runtime import native_output

    with native_output(kernel, capture) as captured:
        await serve_worker(kernel, comm, native_output=captured)
