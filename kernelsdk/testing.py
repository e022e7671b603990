"""Test a kernel without sockets: the full protocol over paired in-memory queues.

Example::

    async def test_echo():
        async with open_test_kernel(EchoKernel()) as client:
            result = await client.execute("hello")
            assert result.reply.content["status"] == "ok"
            assert result.stdout == "hello\\n"

The client speaks real signed frames through the same
:class:`~kernelsdk.protocol.KernelProtocol` and server as the ZeroMQ runtime; only the sockets
are replaced.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
import trio

from ._client_protocol import CLIENT_REQUESTS, ClientProtocol
from ._clock import UtcClock
from ._events import Channel, InvalidMessage
from ._exceptions import RemoteProtocolError
from ._executor import Executor
from ._handlers import OnShutdown
from ._kernel import BaseKernel
from ._message import Message
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
    """A minimal client: builds signed requests, and collects replies and IOPub per request.

    Messages are built and checked by a :class:`~kernelsdk.protocol.ClientProtocol`
    (:attr:`protocol`); what the kernel sends and a client must not accept (a bad signature,
    a reply of the wrong type, anything but a reply on shell) raises
    :class:`~kernelsdk.RemoteProtocolError` from :meth:`receive`.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, transport: MemoryTransport, session: Session) -> None:
        self.transport = transport
        self.session = session
        self.protocol = ClientProtocol(
            session,
            session_id="test-client",
            clock=UtcClock(),
            username="test",
            # In memory the client stands in for a ROUTER peer: it sends its identity itself.
            identities=(_CLIENT_IDENTITY,),
        )
        self.input_replies: list[str] = []
        # What was read while looking for another request's reply (shell, control) or
        # input_request (stdin), kept for receive() in arrival order.
        self._held = {ch: collections.deque[Message]() for ch in Channel}
        # IOPub messages of requests sent and not collected yet, read while collecting
        # another's (requests of different subshells run at once), kept for their collect().
        self._uncollected: set[str] = set()
        self._held_iopub: dict[str, list[Message]] = {}

    def message(self, msg_type: str, content: dict[str, Any] | None = None) -> Message:
        """An unsent message with a fresh header, to serialize (or tamper with) by hand."""
        return Message(
            self.protocol.header(msg_type), content or {}, identities=self.protocol.identities
        )

    def send(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        channel: Channel = Channel.SHELL,
        *,
        subshell_id: str | None = None,
    ) -> str:
        """Send a request (to the subshell ``subshell_id``, if given); returns its msg_id.

        A type ``channel`` does not carry is sent all the same (signed, untracked), for tests
        of how a kernel refuses it.
        """
        if msg_type in CLIENT_REQUESTS.get(channel, {}):
            out = self.protocol.request(channel, msg_type, content, subshell_id=subshell_id)
        else:
            header = self.protocol.header(msg_type, subshell_id=subshell_id)
            out = self.protocol.unchecked_message(channel, header, content or {})
        self.transport.client_send(channel, out.frames)
        self._uncollected.add(out.msg_id)
        return out.msg_id

    async def receive(self, channel: Channel) -> Message:
        """The next message the kernel sent on ``channel``, whatever its parent.

        Raises:
            RemoteProtocolError: the kernel sent something a client must not accept.
        """
        if self._held[channel]:
            return self._held[channel].popleft()
        return self._decode(channel, await self.transport.client_receive(channel))

    def _decode(self, channel: Channel, frames: Sequence[bytes]) -> Message:
        event = self.protocol.receive(channel, frames)
        if isinstance(event, InvalidMessage):
            raise RemoteProtocolError(event.reason)
        return event.message

    async def input_request_of(self, msg_id: str) -> Message:
        """The next ``input_request`` of the execution ``msg_id``; those of other executions
        (say, an interrupted one's, never answered) stay for :meth:`receive`."""
        return await self._next_of(msg_id, Channel.STDIN)

    async def _next_of(self, msg_id: str, channel: Channel) -> Message:
        """The next message on ``channel`` whose parent is ``msg_id``; the others stay for
        :meth:`receive`."""
        held = self._held[channel]
        for msg in held:
            if _parent_id(msg) == msg_id:
                held.remove(msg)
                return msg
        while True:
            msg = self._decode(channel, await self.transport.client_receive(channel))
            if _parent_id(msg) == msg_id:
                return msg
            held.append(msg)

    def reply_input(self, request: Message, value: str) -> None:
        """Answer the ``input_request`` ``request`` with ``value`` (the reply's parent is the
        request, as JupyterLab sends it)."""
        reply = self.protocol.input_reply(value, parent=request.header)
        self.transport.client_send(Channel.STDIN, reply.frames)

    async def collect(
        self, msg_id: str, channel: Channel = Channel.SHELL, expect_reply: bool = True
    ) -> RequestResult:
        """Wait for the reply to ``msg_id`` and for its ``idle`` status.

        What is read meanwhile for other requests not collected yet is kept for their own
        collect (requests in different subshells run at once); their replies stay for
        :meth:`receive` too.
        """
        self._uncollected.discard(msg_id)
        iopub = self._held_iopub.pop(msg_id, [])
        while not (iopub and _is_idle(iopub[-1])):
            msg = await self.receive(Channel.IOPUB)
            parent = _parent_id(msg)
            if parent == msg_id:
                iopub.append(msg)
            elif parent in self._uncollected:
                self._held_iopub.setdefault(parent, []).append(msg)
        reply = await self._next_of(msg_id, channel) if expect_reply else self.message("none")
        return RequestResult(reply, iopub)

    async def request(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        channel: Channel = Channel.SHELL,
        *,
        subshell_id: str | None = None,
    ) -> RequestResult:
        msg_id = self.send(msg_type, content, channel, subshell_id=subshell_id)
        return await self.collect(msg_id, channel)

    async def execute(
        self, code: str, *, subshell_id: str | None = None, **options: Any
    ) -> RequestResult:
        """Run ``code`` (in the subshell ``subshell_id``, if given); with ``input=[...]``,
        answer its input requests with those values (only this execution's requests:
        another's are left for :meth:`receive`)."""
        answers = list(options.pop("input", []))
        msg_id = self.send(
            "execute_request",
            {"code": code, "silent": False, "allow_stdin": bool(answers), **options},
            subshell_id=subshell_id,
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

    # -- kernel subshells (JEP 91) -------------------------------------------------------

    async def create_subshell(self) -> str:
        """Create a subshell (``create_subshell_request`` on control); returns its id.

        Raises:
            RemoteProtocolError: the kernel refused (it does not claim subshells).
        """
        reply = (await self.request("create_subshell_request", {}, Channel.CONTROL)).reply
        if reply.content.get("status") != "ok":
            raise RemoteProtocolError(f"create_subshell_request refused: {reply.content}")
        return str(reply.content["subshell_id"])

    async def list_subshells(self) -> list[str]:
        """The ids of the kernel's subshells (``list_subshell_request``), oldest first."""
        reply = (await self.request("list_subshell_request", {}, Channel.CONTROL)).reply
        if reply.content.get("status") != "ok":
            raise RemoteProtocolError(f"list_subshell_request refused: {reply.content}")
        return list(reply.content["subshell_id"])

    async def delete_subshell(self, subshell_id: str) -> RequestResult:
        """Delete a subshell (``delete_subshell_request``); the reply says whether it was."""
        content = {"subshell_id": subshell_id}
        return await self.request("delete_subshell_request", content, Channel.CONTROL)


def _parent_id(msg: Message) -> str | None:
    return msg.parent_header.msg_id if msg.parent_header is not None else None


def _is_idle(msg: Message) -> bool:
    return msg.msg_type == "status" and msg.content.get("execution_state") == "idle"


@asynccontextmanager
async def open_test_kernel(
    kernel: BaseKernel,
    *,
    key: bytes = b"kernelsdk-test-key",
    executor: Executor | None = None,
    on_shutdown: OnShutdown = "stop",
) -> AsyncIterator[TestClient]:
    """Serve ``kernel`` over a :class:`MemoryTransport` and yield a client for it.

    ``executor`` and ``on_shutdown`` are :func:`~kernelsdk.open_kernel`'s.
    """
    transport = MemoryTransport()
    protocol = KernelProtocol(
        Session(key),
        session_id="test-kernel",
        clock=UtcClock(),
        subshells=kernel.concurrent_subshells,
    )
    # In memory nothing connects late, so no request waits for an IOPub subscriber.
    server = KernelServer(
        kernel,
        transport,
        protocol,
        subscriber_grace=0,
        executor=executor,
        on_shutdown=on_shutdown,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        client = TestClient(transport, Session(key))
        client.server = server  # type: ignore[attr-defined]
        yield client
        nursery.cancel_scope.cancel()
