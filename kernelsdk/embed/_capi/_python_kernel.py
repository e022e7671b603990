"""The python kind of ``ksdk_create``: kernelsdk.embed's PythonKernel plus the host's data.

After each cell, numbers a cell bound to a writable scalar's name are written through to the
host (``source = 2`` steers the simulation) and every rebound host view is put back; what
could not be written is said on the cell's stderr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._python import PythonKernel
from ._host_data import HostData

if TYPE_CHECKING:
    from ..._context import ExecuteContext, MimeBundle


class HostPythonKernel(PythonKernel):
    """A PythonKernel whose namespace holds views of a C host's memory."""

    def __init__(self, data: HostData) -> None:
        super().__init__()
        self.host_data = data

    async def do_execute(self, code: str, ctx: ExecuteContext) -> MimeBundle | str | None:
        try:
            return await super().do_execute(code, ctx)
        finally:
            for warning in self.host_data.sync(self.namespace):
                ctx.stderr(f"warning: {warning}\n")


def host_python_kernel(data: HostData) -> HostPythonKernel:
    return HostPythonKernel(data)
