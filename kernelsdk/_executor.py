"""Where a cell runs: the seam between the request handlers and the program hosting a kernel.

A kernel served by ``python -m kernelsdk run`` owns its process: a cell runs in the Trio task
that handles its ``execute_request``, and blocking work goes to a worker thread. A kernel
embedded in a host program may have to run cells elsewhere: on the host's own thread, only when
the host says it is safe (a simulation between two time steps). An :class:`Executor` says so.

This module is the Protocol alone, free of Trio, so that the author's namespace can name it
without loading the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Executor(Protocol):
    """Where the cells of one kernel run (pass it to :func:`~kernelsdk.open_kernel`).

    Without one, cells run as they always have: ``do_execute`` in the Trio task, and
    :meth:`~kernelsdk.ExecuteContext.run_blocking` in a Trio worker thread.

    Every method is called on the kernel's Trio thread.
    """

    def cell(self) -> AbstractAsyncContextManager[None]:
        """Entered around each ``do_execute`` (inside the execution's cancel scope: an
        interrupt cancels a cell still waiting to enter)."""
        ...

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)``, blocking, where cells run; what
        :meth:`~kernelsdk.ExecuteContext.run_blocking` calls. ``fn``'s exception is raised
        as it is."""
        ...

    def interrupt(self) -> None:
        """Stop the running blocking work, if any (called on an interrupt, before the kernel's
        ``do_interrupt``). It must not block."""
