"""The request loop: the tasks and queues that serve a :class:`~kernelsdk.BaseKernel` over a
transport. It schedules requests and moves bytes; what a request does is
:mod:`kernelsdk._handlers`', and every message is built by :mod:`kernelsdk._protocol`.

Theory of operation
-------------------
One Trio nursery holds a task per channel:

* the **shell reader** decodes every shell message as soon as it arrives. Requests are queued
  for the **shell worker**, which runs them strictly one at a time; comm messages are queued
  for the **comm worker**, which handles them in order too, but never behind a request, so
  widgets keep working while a cell runs (ipykernel and xeus freeze here). A comm message
  gets busy/idle only when the shell has nothing to do: otherwise it would flip the
  frontend's status to idle mid-execution. The shell worker starts a request only once the
  comm messages that arrived before it have been handled: a widget change made before
  running a cell is seen by that cell.
* a kernel that claims **subshells** (JEP 91, ``BaseKernel.concurrent_subshells``) has one
  more worker per subshell, started by ``create_subshell_request`` (on control) and stopped by
  ``delete_subshell_request`` once it has handled what was queued for it. The shell reader
  routes each request by the subshell its header names: requests of one subshell run in
  order, those of different subshells concurrently. A request for a subshell that does not
  exist is answered at once with an error reply (between its busy and idle), the kernel
  untouched. Comm messages go to the comm worker whatever their subshell, as before. A
  ``kernel_info_request`` on the main shell is answered at once while a shell is busy (a
  new client asks it first, e.g. JupyterLab's subshell console before creating its subshell).
* the **control reader** runs control requests one at a time, even while the shell worker
  is busy: interrupt, shutdown and kernel_info always answer. ``debug_request`` goes to the
  **debug worker**, which answers them in order: a debugger busy with its runtime (a cell
  stopped at a breakpoint) never holds up the other control requests.
* the **stdin reader** passes each ``input_reply`` to the ``input_request`` it answers (its
  parent; a reply without one answers the oldest waiting request). A request is dropped when
  its execution is interrupted or ends: a late reply to it is ignored, and a worker thread
  waiting for it gets :class:`~kernelsdk.InputInterrupted` at once.
* the **ordered writer** sends, from one FIFO, everything published on IOPub *and* the shell
  replies: a request's busy, outputs, reply and idle leave in the order they were queued.
  Control replies skip the queue: they must not wait behind queued output.
* the **IOPub reader** answers each subscription with ``iopub_welcome``.

Invalid messages are logged and dropped before anything else sees them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._events import Channel, InputReply, InvalidMessage, Outgoing, Output, Request
from ._exceptions import InputInterrupted
from ._executor import Executor
from ._handlers import Execution, OnShutdown, RequestHandlers
from ._kernel import BaseKernel
from ._message import Message
from ._protocol import COMM_MESSAGES, KernelProtocol
from ._stream_merge import merge_streams
from ._transport import Transport

if TYPE_CHECKING:
    from ._captured_output import CapturedOutput

log = logging.getLogger("kernelsdk")

#: At most this many messages, or bytes, are built before the ordered writer sends them.
_MAX_BATCH = 64
_MAX_BATCH_BYTES = 64 << 10

#: What the ordered writer's queue holds: an output to build, a built message (a welcome, a
#: shell reply), or a flush marker to set once everything before it has been sent.
_Queued = Output | Outgoing | trio.Event


class _PendingInput:
    """An ``input_request`` sent, waiting for its ``input_reply``."""

    def __init__(self, subshell_id: str | None = None) -> None:
        self.subshell_id = subshell_id  # of the execution that asked
        self.reply: InputReply | None = None
        self.answered = trio.Event()

    def answer(self, reply: InputReply) -> None:
        if self.reply is None:
            self.reply = reply
            self.answered.set()


class KernelServer:
    """Serves one kernel instance over one transport until shutdown.

    Args:
        kernel: the kernel instance.
        transport: connected channels (ZeroMQ or in-memory).
        protocol: the sans-IO protocol state for this kernel process.
        subscriber_grace: at most how long after the start shell requests wait for a first
            IOPub subscriber (see :meth:`_wait_for_subscriber`).
        executor: where cells run (see :class:`~kernelsdk.Executor`); None: in the Trio
            task, blocking work in worker threads.
        on_shutdown: ``"stop"`` (serve until a shutdown request) or ``"detach"`` (a kernel
            embedded in a host program: a shutdown request is answered but only ends that
            client's session, :meth:`wait_detached` wakes, and a restart is refused).
        native_output: the process's captured descriptors 1 and 2, if the kernel owns them
            (see :class:`~kernelsdk._captured_output.CapturedOutput`).

    Raises:
        ValueError: ``protocol`` and ``kernel`` disagree on kernel subshells
            (``KernelProtocol(subshells=kernel.concurrent_subshells)``).
    """

    def __init__(
        self,
        kernel: BaseKernel,
        transport: Transport,
        protocol: KernelProtocol,
        *,
        subscriber_grace: float = 1.0,
        executor: Executor | None = None,
        on_shutdown: OnShutdown = "stop",
        native_output: CapturedOutput | None = None,
    ) -> None:
        if protocol.subshells != kernel.concurrent_subshells:
            raise ValueError(
                f"{type(kernel).__name__}.concurrent_subshells is "
                f"{kernel.concurrent_subshells}, but the protocol's subshells is "
                f"{protocol.subshells}: make it KernelProtocol(subshells=...) alike"
            )
        self.kernel = kernel
        self.transport = transport
        self.protocol = protocol
        self._out_send, self._out_recv = trio.open_memory_channel[_Queued](math.inf)
        #: Queue a message for the ordered writer: it leaves after everything queued before.
        #: The channel's own method rather than a method wrapping it: it is called for every
        #: status and output, and the extra call showed in the CPU per request.
        self.queue: Callable[[Output | Outgoing], None] = self._out_send.send_nowait
        # Each request with the seq of the last comm message that arrived before it.
        self._shell_send, self._shell_recv = trio.open_memory_channel[tuple[int, Request]](math.inf)
        # The queue of each subshell's worker, by subshell id (kernel subshells, JEP 91).
        self._subshells: dict[str, trio.MemorySendChannel[tuple[int, Request]]] = {}
        self._nursery: trio.Nursery | None = None
        self._inputs: dict[str, _PendingInput] = {}  # by input_request msg_id, oldest first
        self._comm_send, self._comm_recv = trio.open_memory_channel[Request](math.inf)
        # debug_requests, answered in order by their own worker: a debugger waiting on its
        # language runtime never holds up interrupt, shutdown or kernel_info on control.
        self._debug_send, self._debug_recv = trio.open_memory_channel[Request](math.inf)
        self._shell_pending = 0  # requests queued for or running in the shell worker
        self._last_comm_seq = 0  # seq of the last comm message queued
        self._comm_done_seq = 0  # seq of the last comm message handled
        self._comm_done = trio.lowlevel.ParkingLot()
        self._subscribed = trio.Event()
        self._subscriber_grace = subscriber_grace
        self._shutdown = trio.Event()
        self._stopped = trio.Event()
        self.shutdown_restart: bool | None = None
        #: How many shutdown requests have been answered by detaching (``on_shutdown="detach"``).
        self.detach_count = 0
        self._detaches = trio.lowlevel.ParkingLot()
        self.handlers = RequestHandlers(
            kernel,
            protocol,
            self,
            executor=executor,
            on_shutdown=on_shutdown,
            native_output=native_output,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until a shutdown request has been answered."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ordered_writer)
            nursery.start_soon(self._iopub_reader)
            nursery.start_soon(self._stdin_reader)
            nursery.start_soon(self._control_reader)
            nursery.start_soon(self._shell_reader)
            nursery.start_soon(self._shell_worker, self._shell_recv)
            nursery.start_soon(self._comm_worker)
            nursery.start_soon(self._debug_worker)
            task_status.started()
            await self._shutdown.wait()
            # Let the ordered writer send what is queued (the shutdown broadcast and idle).
            await self._flush()
            nursery.cancel_scope.cancel()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until a shutdown request has been answered and its messages sent."""
        await self._stopped.wait()

    def interrupt(self) -> None:
        """Interrupt the running execution (from SIGINT or ``interrupt_request``)."""
        self.handlers.interrupt()

    async def wait_detached(self) -> None:
        """Wait for the next shutdown request answered by detaching (``on_shutdown="detach"``),
        and for its reply and broadcast to have been sent."""
        await self._detaches.park()
        await self._flush()  # the broadcast was queued before the wake-up

    # -- what the handlers use (the Runtime interface of kernelsdk._handlers) ------------------

    @property
    def ports(self) -> Mapping[str, int]:
        return self.transport.ports

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> None:
        """Queue an IOPub message as it is, outside any request's lifecycle rules."""
        self.queue(Output(msg_type, content, parent, metadata, buffers))

    async def send_reply(self, request: Request, reply: Outgoing) -> None:
        if request.channel is Channel.SHELL:
            # Through the ordered writer's FIFO: the reply leaves after the request's outputs
            # and before its idle, the order ipykernel guarantees and some clients rely on.
            self._out_send.send_nowait(reply)
        else:
            # Control replies go at once: they must not wait behind queued output.
            await self.transport.send(reply.channel, reply.frames)

    def take_shell(self) -> None:
        """Read and queue every shell message that has already arrived, without waiting."""
        while True:
            try:
                frames = self.transport.receive_nowait(Channel.SHELL)
            except trio.WouldBlock:
                return
            self._route_shell(frames)

    async def request_input(self, execution: Execution, prompt: str, password: bool) -> str:
        """Send an ``input_request`` for ``execution`` and wait for its ``input_reply``."""
        if not execution.takes_input:
            raise InputInterrupted("the execution that asked for input was interrupted or ended")
        out = self.protocol.input_request(execution.request.message, prompt, password)
        pending = _PendingInput(self.protocol.subshell_id(execution.request))
        self._inputs[out.msg_id] = pending
        try:
            with execution.waiting_for_input() as scope:
                await self._flush()  # the prompt belongs after what the cell printed
                await self.transport.send(out.channel, out.frames)
                await pending.answered.wait()
        finally:
            del self._inputs[out.msg_id]  # a late reply to it answers nothing
        # Cancelled by stop_input alone: the caller runs outside the execution's scope (a
        # worker thread's request, through trio.from_thread). Had the execution's own scope
        # been cancelled too, its Cancelled would have gone past this scope to that one.
        if scope.cancelled_caught or pending.reply is None:
            raise InputInterrupted("the execution that asked for input was interrupted or ended")
        value = pending.reply.message.content.get("value", "")
        if not isinstance(value, str):
            log.warning("input_reply.value is not a string: treated as empty")
            value = ""
        if value == "\x04":
            raise EOFError("end of input")
        return value

    def stop(self, restart: bool) -> None:
        """Stop serving once what is queued has been sent (a shutdown has been answered)."""
        self.shutdown_restart = restart
        self._shutdown.set()

    def detached(self) -> None:
        """A shutdown request was answered by detaching: wake :meth:`wait_detached`."""
        self.detach_count += 1
        self._detaches.unpark_all()

    def open_subshell(self, subshell_id: str) -> None:
        """Start the worker of a subshell just created: from now on the requests for it go
        to its queue."""
        assert self._nursery is not None, "open_subshell before serve"
        send, recv = trio.open_memory_channel[tuple[int, Request]](math.inf)
        self._subshells[subshell_id] = send
        self._nursery.start_soon(self._shell_worker, recv)

    def close_subshell(self, subshell_id: str) -> None:
        """A subshell was deleted: requests for it are refused from now on, and its worker
        ends once it has handled what was queued before (a running cell runs on; an
        interrupt stops it)."""
        send = self._subshells.pop(subshell_id, None)
        if send is not None:
            send.close()

    # -- the ordered writer -----------------------------------------------------------------

    async def _ordered_writer(self) -> None:
        # What is queued is built first, then sent back to back, yielding once per batch. A
        # cell's outputs, reply and idle usually leave together: sent in one burst they reach
        # libzmq's I/O thread before it has gone back to sleep, so it is woken once per batch
        # rather than once per message (see docs/performance.md).
        batch: list[tuple[Channel, Sequence[bytes]]] = []
        size = 0  # bytes in batch
        # The loop runs for every message sent: outputs, the commonest item, are tested for
        # first, and the methods it calls are looked up once.
        build, send_batch, take_queued = self._build, self._send_batch, self._take_queued
        async for first in self._out_recv:
            for item in take_queued(first):
                if isinstance(item, Output):
                    out = build(item)
                    if out is None:
                        continue
                elif isinstance(item, Outgoing):
                    out = item
                else:
                    # A flush marker: set once everything queued before it has been sent.
                    await send_batch(batch)
                    item.set()
                    continue
                frames = out.frames
                size = (size if batch else 0) + sum(map(len, frames))
                batch.append((out.channel, frames))
                if len(batch) >= _MAX_BATCH or size >= _MAX_BATCH_BYTES:
                    await send_batch(batch)  # big output leaves as soon as built
            await send_batch(batch)

    def _take_queued(self, first: _Queued) -> Iterator[_Queued]:
        """``first``, then what else is queued now, adjacent stream outputs merged."""

        def queued() -> Iterator[_Queued]:
            yield first
            while True:
                try:
                    yield self._out_recv.receive_nowait()
                except trio.WouldBlock:
                    return

        return merge_streams(queued())

    async def _send_batch(self, batch: list[tuple[Channel, Sequence[bytes]]]) -> None:
        sent = self.transport.send_batch_nowait(batch)
        for channel, frames in batch[sent:]:  # only when a socket cannot take more now
            await self.transport.send(channel, frames)
        batch.clear()

    def _build(self, item: Output) -> Outgoing | None:
        """The frames to send for a queued output (None if it cannot be encoded)."""
        try:
            return self.protocol.publish_output(item)
        except Exception:  # content the packer cannot encode: lose it, not the kernel
            log.exception("dropped an unsendable %s message", item.msg_type)
            return None

    async def _flush(self) -> None:
        """Wait until everything queued so far has been sent."""
        done = trio.Event()
        self._out_send.send_nowait(done)
        await done.wait()

    # -- readers and workers ----------------------------------------------------------------

    async def _iopub_reader(self) -> None:
        while True:
            event = self.protocol.receive_subscription(await self.transport.receive(Channel.IOPUB))
            if isinstance(event, InvalidMessage):
                log.warning("dropped invalid message on iopub: %s", event.reason)
            elif event.subscribed:
                self.queue(self.protocol.welcome(event))
                if not self._subscribed.is_set():
                    # "starting" follows the first welcome instead of preceding it: libzmq
                    # adds a subscriber as soon as its subscription arrives, before this task
                    # reads it, so anything sent in between reaches the subscriber before its
                    # welcome (JEP 65 promises the welcome first).
                    self.queue(self.protocol.starting())
                    self._subscribed.set()

    def _request(self, channel: Channel, frames: list[bytes]) -> Request | None:
        """The request in ``frames`` (None, logged, when they hold none)."""
        event = self.protocol.receive_request(channel, frames)
        if isinstance(event, InvalidMessage):
            log.warning("dropped invalid message on %s: %s", channel, event.reason)
            return None
        return event

    async def _shell_reader(self) -> None:
        # One message per checkpoint: with a long pipeline queued, the worker starts on the
        # first request at once instead of after everything has been read and decoded. The
        # reader never holds a message across a checkpoint (wait_readable, then take it), so
        # take_shell, run by a failed execution, sees every message that has arrived.
        while True:
            await self.transport.wait_readable(Channel.SHELL)
            try:
                frames = self.transport.receive_nowait(Channel.SHELL)
            except trio.WouldBlock:
                continue  # take_shell took it
            self._route_shell(frames)

    def _route_shell(self, frames: list[bytes]) -> None:
        req = self._request(Channel.SHELL, frames)
        if req is None:
            return
        if req.msg_type in COMM_MESSAGES:
            self._last_comm_seq = req.seq
            self._comm_send.send_nowait(req)
            return
        subshell_id = self.protocol.subshell_id(req)
        if subshell_id is None and req.msg_type == "kernel_info_request" and self.subshells_busy:
            # JupyterLab's subshell console asks for kernel_info on the main shell before it
            # creates its subshell: answered at once, not after a running cell (it reads
            # nothing a cell changes), or the console could not start until the cell ends.
            assert self._nursery is not None
            self._nursery.start_soon(self.handlers.handle, req)
            return
        if subshell_id is None:
            queue = self._shell_send
        elif (found := self._subshells.get(subshell_id)) is not None:
            queue = found
        else:
            self._refuse(req)
            return
        self._shell_pending += 1
        queue.send_nowait((self._last_comm_seq, req))

    @property
    def subshells_busy(self) -> bool:
        """The kernel claims subshells and a shell request is queued or running."""
        return self.protocol.subshells and self._shell_pending > 0

    def _refuse(self, req: Request) -> None:
        """Answer a request for a subshell that does not exist: busy, an error reply, idle."""
        log.warning(
            "refused %s %r: unknown subshell_id %r",
            req.msg_type,
            req.message.msg_id,
            req.message.header.subshell_id,
        )
        protocol = self.protocol
        self.queue(protocol.begin(req))
        self.queue(protocol.unknown_subshell_reply(req))
        self.queue(protocol.end(req))

    async def _wait_for_subscriber(self) -> None:
        """Give a client's IOPub connection a moment to catch up with its shell connection.

        A client connects all its sockets at once, but each connection is retried on its own
        timer when the kernel has not bound yet; shell can win by a reconnect interval
        (100 ms). Clients that do not wait for ``iopub_welcome`` (``jupyter console``) then
        lose the first request's busy/idle and hang waiting for it. ipykernel hides this by
        starting slowly; we hold shell requests until the first subscription instead, at most
        the grace after the start (control requests are never held).
        """
        with trio.move_on_after(self._subscriber_grace):
            await self._subscribed.wait()

    async def _shell_worker(self, requests: trio.MemoryReceiveChannel[tuple[int, Request]]) -> None:
        """Handle the requests of one shell (the main one, or a subshell) one at a time."""
        await self._wait_for_subscriber()
        async for comms_before, req in requests:
            try:
                # Comm messages sent before this request are handled before it runs.
                while self._comm_done_seq < comms_before:
                    await self._comm_done.park()
                await self.handlers.handle(req)
            finally:
                self._shell_pending -= 1

    async def _comm_worker(self) -> None:
        async for req in self._comm_recv:
            try:
                if self._shell_pending:
                    await self.handlers.handle_comm_now(req)
                else:
                    await self.handlers.handle(req)
            finally:
                self._comm_done_seq = req.seq
                self._comm_done.unpark_all()

    async def _control_reader(self) -> None:
        while True:
            req = self._request(Channel.CONTROL, await self.transport.receive(Channel.CONTROL))
            if req is None:
                continue
            if req.msg_type == "debug_request":
                self._debug_send.send_nowait(req)
            else:
                await self.handlers.handle(req)

    async def _debug_worker(self) -> None:
        async for req in self._debug_recv:
            await self.handlers.handle(req)

    async def _stdin_reader(self) -> None:
        while True:
            event = self.protocol.receive_input(await self.transport.receive(Channel.STDIN))
            if isinstance(event, InvalidMessage):
                log.warning("dropped invalid message on stdin: %s", event.reason)
            else:
                self._route_input_reply(event)

    def _route_input_reply(self, reply: InputReply) -> None:
        pending = self._pending_input_for(reply)
        if pending is None:
            log.warning("dropped an input_reply that answers no waiting input_request")
            return
        pending.answer(reply)

    def _pending_input_for(self, reply: InputReply) -> _PendingInput | None:
        parent = reply.message.parent_header
        if parent is not None and parent.msg_type == "input_request":
            return self._inputs.get(parent.msg_id)
        # jupyter_client's BlockingKernelClient.input sends no parent: the oldest waiting one,
        # of the subshell the reply names if one waits there (JEP 91: stdin messages carry
        # the subshell_id too).
        waiting = [p for p in self._inputs.values() if p.reply is None]
        subshell_id = reply.message.header.subshell_id
        same = (p for p in waiting if p.subshell_id == subshell_id)
        return next(same, None) or next(iter(waiting), None)
