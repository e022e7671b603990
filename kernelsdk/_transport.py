"""The I/O boundary: the server reads and writes frames through a :class:`Transport`.

Two implementations exist: ZeroMQ sockets (:mod:`kernelsdk._zmq_transport`) and paired
in-memory queues for tests (:class:`kernelsdk.testing.MemoryTransport`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ._events import Channel


class Transport(Protocol):
    """Frames in and out of the four message channels.

    ``receive(Channel.IOPUB)`` yields XPUB subscription frames. Sends on one channel may come
    from several tasks at once; implementations keep each multipart message whole.
    """

    async def send(self, channel: Channel, frames: Sequence[bytes]) -> None: ...

    def send_batch_nowait(self, messages: Sequence[tuple[Channel, Sequence[bytes]]]) -> int:
        """Send messages in order for as long as each can be sent at once; returns how many
        were sent (the rest, from the first that would block, are not)."""
        ...

    async def receive(self, channel: Channel) -> list[bytes]: ...

    async def wait_readable(self, channel: Channel) -> None:
        """Wait until :meth:`receive_nowait` has a message (it may be taken by another task
        first). A message waited for stays in the transport, visible to every task."""
        ...

    def receive_nowait(self, channel: Channel) -> list[bytes]:
        """A message that has already arrived; raises ``trio.WouldBlock`` if there is none."""
        ...

    @property
    def ports(self) -> dict[str, int]:
        """The bound ports by connection-file name (``shell_port``...), for ``connect_reply``."""
        ...
