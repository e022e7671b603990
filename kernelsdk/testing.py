"""Test a kernel without sockets: the full protocol over paired in-memory queues.

Example::

    async def test_echo():
        async with open_test_kernel(EchoKernel()) as client:
            result = await client.execute("hello")
            assert result.reply.content["status"] == "ok"
            assert result.stdout == "hello\\n"

The client speaks real signed frames through the same :class:`~kernelsdk.KernelProtocol` and
server as the ZeroMQ runtime; only the sockets are replaced.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
import trio

from ._clock import UtcClock
from ._events import Channel
from ._kernel import BaseKernel
from ._message import Header, Message
from ._protocol import KernelProtocol
from ._server import KernelServer
from ._session import Session

__all__ = ["MemoryTransport", "RequestResult", "TestClient", "open_test_kernel"]

_CLIENT_IDENTITY = b"test-client"


class MemoryTransport:
    """A :class:`~kernelsdk.Transport` over in-memory queues, one pair per channel."""

    def __init__(self) -> None:
        # Towards the kernel, a queue that a waiting task never takes a message out of before
        # it asks for it (a memory channel hands a value to a parked receiver at once), so
        # receive_nowait sees every message that has arrived, as on a zmq socket.
        self._to_kernel = {ch: collections.deque[list[bytes]]() for ch in Channel}
        self._arrived = {ch: trio.lowlevel.ParkingLot() for ch in Channel}
        self._to_client = {ch: trio.open_memory_channel[list[bytes]](math.inf) for ch in Channel}

    @property
    def ports(self) -> dict[str, int]:
        return dict.fromkeys(
            ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"), 0
        )

    # The kernel's side.
    async def send(self, channel: Channel, frames: Sequence[bytes]) -> None:
        self.send_batch_nowait([(channel, frames)])

    def send_batch_nowait(self, messages: Sequence[tuple[Channel, Sequence[bytes]]]) -> int:
        """Deliver every message to the client at once (in memory nothing ever blocks)."""
        for channel, frames in messages:
            self._to_client[channel][0].send_nowait(list(frames))
        return len(messages)

    async def receive(self, channel: Channel) -> list[bytes]:
        while True:
            await self.wait_readable(channel)
            try:
                return self.receive_nowait(channel)
            except trio.WouldBlock:
                continue  # another task took it first

    async def wait_readable(self, channel: Channel) -> None:
        await trio.lowlevel.checkpoint()
        while not self._to_kernel[channel]:
            await self._arrived[channel].park()

    def receive_nowait(self, channel: Channel) -> list[bytes]:
        try:
            return self._to_kernel[channel].popleft()
        except IndexError:
            raise trio.WouldBlock from None

    # The client's side.
    def client_send(self, channel: Channel, frames: Sequence[bytes]) -> None:
        """Deliver raw frames to the kernel (they may be garbage, on purpose)."""
        self._to_kernel[channel].append(list(frames))
        self._arrived[channel].unpark_all()

    async def client_receive(self, channel: Channel) -> list[bytes]:
        return await self._to_client[channel][1].receive()


@final
@attrs.frozen
class RequestResult:
    """A request's reply and the IOPub messages published for it between busy and idle."""

    reply: Message
    iopub: list[Message]

    @property
    def outputs(self) -> list[Message]:
        """IOPub messages other than ``status`` and ``execute_input``."""
        return [m for m in self.iopub if m.msg_type not in ("status", "execute_input")]

    def stream(self, name: str) -> str:
        return "".join(
            m.content["text"]
            for m in self.iopub
            if m.msg_type == "stream" and m.content["name"] == name
        )

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")


class TestClient:
    """A minimal client: builds signed requests, and collects replies and IOPub per request."""

    __test__ = False  # not a pytest test class

    def __init__(self, transport: MemoryTransport, session: Session) -> None:
        self.transport = transport
        self.session = session
        self._count = 0
        self._iopub: dict[str, list[Message]] = {}
        self._replies: dict[str, Message] = {}
        self.input_replies: list[str] = []
        # input_requests read while looking for another execution's, kept for receive().
        self._held_stdin = collections.deque[Message]()
        self._clock = UtcClock()

    def message(self, msg_type: str, content: dict[str, Any] | None = None) -> Message:
        self._count += 1
        header = Header(
            msg_id=f"test-{self._count}",
            msg_type=msg_type,
            session="test-client",
            username="test",
            date=self._clock(),
        )
        return Message(header, content or {}, identities=(_CLIENT_IDENTITY,))

    def send(
        self, msg_type: str, content: dict[str, Any] | None = None, channel: Channel = Channel.SHELL
    ) -> str:
        """Send a request; returns its msg_id."""
        msg = self.message(msg_type, content)
        self.transport.client_send(channel, self.session.serialize(msg))
        return msg.msg_id

    async def receive(self, channel: Channel) -> Message:
        if channel is Channel.STDIN and self._held_stdin:
            return self._held_stdin.popleft()
        return self.session.deserialize(await self.transport.client_receive(channel))

    async def input_request_of(self, msg_id: str) -> Message:
        """The next ``input_request`` of the execution ``msg_id``; those of other executions
        (say, an interrupted one's, never answered) stay for :meth:`receive`."""
        for held in self._held_stdin:
            if _parent_id(held) == msg_id:
                self._held_stdin.remove(held)
                return held
        while True:
            msg = self.session.deserialize(await self.transport.client_receive(Channel.STDIN))
            if _parent_id(msg) == msg_id:
                return msg
            self._held_stdin.append(msg)

    def reply_input(self, request: Message, value: str) -> None:
        """Answer the ``input_request`` ``request`` with ``value`` (the reply's parent is the
        request, as JupyterLab sends it)."""
        msg = self.message("input_reply", {"value": value})
        reply = attrs.evolve(msg, parent_header=request.header)
        self.transport.client_send(Channel.STDIN, self.session.serialize(reply))

    async def collect(
        self, msg_id: str, channel: Channel = Channel.SHELL, expect_reply: bool = True
    ) -> RequestResult:
        """Wait for the reply to ``msg_id`` and for its ``idle`` status."""
        iopub: list[Message] = []
        while True:
            msg = await self.receive(Channel.IOPUB)
            if msg.parent_header is None or msg.parent_header.msg_id != msg_id:
                continue
            iopub.append(msg)
            if msg.msg_type == "status" and msg.content["execution_state"] == "idle":
                break
        reply = await self.receive(channel) if expect_reply else self.message("none")
        return RequestResult(reply, iopub)

    async def request(
        self, msg_type: str, content: dict[str, Any] | None = None, channel: Channel = Channel.SHELL
    ) -> RequestResult:
        return await self.collect(self.send(msg_type, content, channel), channel)

    async def execute(self, code: str, **options: Any) -> RequestResult:
        """Run ``code``; with ``input=[...]``, answer its input requests with those values
        (only this execution's requests: another's are left for :meth:`receive`)."""
        answers = list(options.pop("input", []))
        msg_id = self.send(
            "execute_request",
            {"code": code, "silent": False, "allow_stdin": bool(answers), **options},
        )
        if not answers:
            return await self.collect(msg_id)
        async with trio.open_nursery() as nursery:

            async def answer() -> None:
                for value in answers:
                    self.reply_input(await self.input_request_of(msg_id), value)

            nursery.start_soon(answer)
            result = await self.collect(msg_id)
            nursery.cancel_scope.cancel()
        return result


def _parent_id(msg: Message) -> str | None:
    return msg.parent_header.msg_id if msg.parent_header is not None else None


@asynccontextmanager
async def open_test_kernel(
    kernel: BaseKernel, *, key: bytes = b"kernelsdk-test-key"
) -> AsyncIterator[TestClient]:
    """Serve ``kernel`` over a :class:`MemoryTransport` and yield a client for it."""
    transport = MemoryTransport()
    protocol = KernelProtocol(Session(key), session_id="test-kernel", clock=UtcClock())
    # In memory nothing connects late, so no request waits for an IOPub subscriber.
    server = KernelServer(kernel, transport, protocol, subscriber_grace=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        client = TestClient(transport, Session(key))
        client.server = server  # type: ignore[attr-defined]
        yield client
        nursery.cancel_scope.cancel()
