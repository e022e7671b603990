"""The request loop: drives a :class:`~kernelsdk.BaseKernel` over a transport.

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
* the **control reader** runs control requests one at a time, even while the shell worker
  is busy: interrupt, shutdown and kernel_info always answer.
* the **stdin reader** passes each ``input_reply`` to the ``input_request`` it answers (its
  parent; a reply without one answers the oldest waiting request). A request is dropped when
  its execution is interrupted or ends: a late reply to it is ignored, and a worker thread
  waiting for it gets :class:`~kernelsdk.InputInterrupted` at once. An execution's output
  that arrives after it has ended (from a worker an interrupt left behind) is dropped, so
  nothing of a request is published after its ``idle``.
* the **IOPub writer** sends everything published, and the shell replies, in order, from one
  queue: a request's outputs, then its reply, then its ``idle``.
* the **IOPub reader** answers each subscription with ``iopub_welcome``.

Invalid messages are logged and dropped before anything else sees them.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from inspect import isawaitable
from typing import Any

import trio

from ._context import ExecuteContext
from ._events import Channel, InputReply, InvalidMessage, Outgoing, Output, Request, Subscription
from ._exceptions import InputInterrupted, RemoteProtocolError
from ._kernel import BaseKernel, Completions, IsComplete
from ._message import Message
from ._protocol import COMM_MESSAGES, ExecutePlan, KernelProtocol, error_content, interrupt_error
from ._stream_merge import merge_streams
from ._transport import Transport

log = logging.getLogger("kernelsdk")

#: The request being handled in the current task; comms publish with it as parent.
_current_parent: ContextVar[Message | None] = ContextVar("kernelsdk_parent", default=None)

#: At most this many messages, or bytes, are built before the IOPub writer sends them.
_MAX_BATCH = 64
_MAX_BATCH_BYTES = 64 << 10

#: What the IOPub queue holds: a message to build, a built one, or a flush marker to set.
_IOPubItem = Output | Outgoing | trio.Event


class _PendingInput:
    """An ``input_request`` sent, waiting for its ``input_reply``."""

    def __init__(self) -> None:
        self.reply: InputReply | None = None
        self.answered = trio.Event()

    def answer(self, reply: InputReply) -> None:
        if self.reply is None:
            self.reply = reply
            self.answered.set()


class _Execution:
    """One running ``execute_request``: what an interrupt cancels, and whether the execution
    may still ask for input and publish output."""

    def __init__(self, request: Message) -> None:
        self.request = request
        self.scope = trio.CancelScope()
        self.takes_input = True
        self.ended = False
        self.dropped_output = False  # logged once
        self._input_scopes: set[trio.CancelScope] = set()

    def interrupt(self) -> None:
        self.scope.cancel()
        self.stop_input()

    def end(self) -> None:
        self.ended = True
        self.stop_input()

    def stop_input(self) -> None:
        """Cut off pending input requests, and refuse new ones."""
        self.takes_input = False
        for scope in self._input_scopes:
            scope.cancel()

    @contextlib.contextmanager
    def waiting_for_input(self) -> Iterator[trio.CancelScope]:
        """A cancel scope for one input request, cancelled by :meth:`stop_input`."""
        with trio.CancelScope() as scope:
            self._input_scopes.add(scope)
            try:
                yield scope
            finally:
                self._input_scopes.discard(scope)


#: Until kernelsdk.mpi imports it from the protocol core.
_error_content = error_content


class KernelServer:
    """Serves one kernel instance over one transport until shutdown.

    Args:
        kernel: the kernel instance.
        transport: connected channels (ZeroMQ or in-memory).
        protocol: the sans-IO protocol state for this kernel process.
        subscriber_grace: at most how long after the start shell requests wait for a first
            IOPub subscriber (see :meth:`_wait_for_subscriber`).
    """

    def __init__(
        self,
        kernel: BaseKernel,
        transport: Transport,
        protocol: KernelProtocol,
        *,
        subscriber_grace: float = 1.0,
    ) -> None:
        self.kernel = kernel
        self.transport = transport
        self.protocol = protocol
        self._iopub_send, self._iopub_recv = trio.open_memory_channel[_IOPubItem](math.inf)
        # Each request with the seq of the last comm message that arrived before it.
        self._shell_send, self._shell_recv = trio.open_memory_channel[tuple[int, Request]](math.inf)
        self._inputs: dict[str, _PendingInput] = {}  # by input_request msg_id, oldest first
        self._comm_send, self._comm_recv = trio.open_memory_channel[Request](math.inf)
        self._executions: set[_Execution] = set()
        self._shell_pending = 0  # requests queued for or running in the shell worker
        self._last_comm_seq = 0  # seq of the last comm message queued
        self._comm_done_seq = 0  # seq of the last comm message handled
        self._comm_done = trio.lowlevel.ParkingLot()
        self._subscribed = trio.Event()
        self._subscriber_grace = subscriber_grace
        self._comm_ids = 0
        self._shutdown = trio.Event()
        self._stopped = trio.Event()
        self.shutdown_restart: bool | None = None
        kernel.comms._attach(self._publish_comm, self._new_comm_id)

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until a shutdown request has been answered."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._iopub_writer)
            nursery.start_soon(self._iopub_reader)
            nursery.start_soon(self._stdin_reader)
            nursery.start_soon(self._control_reader)
            nursery.start_soon(self._shell_reader)
            nursery.start_soon(self._shell_worker)
            nursery.start_soon(self._comm_worker)
            task_status.started()
            await self._shutdown.wait()
            # Let the IOPub writer send what is queued (the shutdown broadcast and idle).
            await self._flush_iopub()
            nursery.cancel_scope.cancel()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until a shutdown request has been answered and its messages sent."""
        await self._stopped.wait()

    def interrupt(self) -> None:
        """Interrupt the running execution (from SIGINT or ``interrupt_request``)."""
        log.info("interrupt: %d execution(s) running", len(self._executions))
        for execution in self._executions:
            execution.interrupt()
        try:
            self.kernel.do_interrupt()
        except Exception:
            log.exception("do_interrupt hook failed")

    # -- IOPub --------------------------------------------------------------------------------

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> None:
        """Queue an IOPub message (sent in order by the IOPub writer)."""
        self._iopub_send.send_nowait(Output(msg_type, content, parent, metadata, buffers))

    def _publish_comm(
        self,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None,
        buffers: Sequence[bytes],
    ) -> None:
        self.publish(msg_type, content, _current_parent.get(), metadata, buffers)

    def _new_comm_id(self) -> str:
        self._comm_ids += 1
        return f"{self.protocol.session_id}-comm-{self._comm_ids}"

    async def _iopub_writer(self) -> None:
        # What is queued is built first, then sent back to back, yielding once per batch. A
        # cell's outputs, reply and idle usually leave together: sent in one burst they reach
        # libzmq's I/O thread before it has gone back to sleep, so it is woken once per batch
        # rather than once per message (see docs/performance.md).
        batch: list[tuple[Channel, Sequence[bytes]]] = []
        size = 0  # bytes in batch
        async for first in self._iopub_recv:
            for item in self._take_queued(first):
                if isinstance(item, trio.Event):
                    # A flush marker: set once everything queued before it has been sent.
                    await self._send_batch(batch)
                    item.set()
                elif (out := self._iopub_outgoing(item)) is not None:
                    size = (size if batch else 0) + sum(map(len, out.frames))
                    batch.append((out.channel, out.frames))
                    if len(batch) >= _MAX_BATCH or size >= _MAX_BATCH_BYTES:
                        await self._send_batch(batch)  # big output leaves as soon as built
            await self._send_batch(batch)

    def _take_queued(self, first: _IOPubItem) -> Iterator[_IOPubItem]:
        """``first``, then what else is queued now, adjacent stream outputs merged."""

        def queued() -> Iterator[_IOPubItem]:
            yield first
            while True:
                try:
                    yield self._iopub_recv.receive_nowait()
                except trio.WouldBlock:
                    return

        return merge_streams(queued())

    async def _send_batch(self, batch: list[tuple[Channel, Sequence[bytes]]]) -> None:
        sent = self.transport.send_batch_nowait(batch)
        for channel, frames in batch[sent:]:  # only when a socket cannot take more now
            await self.transport.send(channel, frames)
        batch.clear()

    def _iopub_outgoing(self, item: Output | Outgoing) -> Outgoing | None:
        """The frames to send for a queued item (None if it cannot be encoded)."""
        if isinstance(item, Outgoing):
            return item
        try:
            return self.protocol.publish(
                item.msg_type,
                item.content,
                item.parent,
                metadata=item.metadata,
                buffers=item.buffers,
            )
        except Exception:  # content the packer cannot encode: lose it, not the kernel
            log.exception("dropped an unsendable %s message", item.msg_type)
            return None

    async def _flush_iopub(self) -> None:
        """Wait until everything published so far has been sent."""
        done = trio.Event()
        self._iopub_send.send_nowait(done)
        await done.wait()

    async def _iopub_reader(self) -> None:
        while True:
            event = self.protocol.receive(
                Channel.IOPUB, await self.transport.receive(Channel.IOPUB)
            )
            if isinstance(event, Subscription) and event.subscribed:
                self._iopub_send.send_nowait(self.protocol.welcome(event))
                if not self._subscribed.is_set():
                    # "starting" follows the first welcome instead of preceding it: libzmq
                    # adds a subscriber as soon as its subscription arrives, before this task
                    # reads it, so anything sent in between reaches the subscriber before its
                    # welcome (JEP 65 promises the welcome first).
                    self.publish("status", {"execution_state": "starting"}, None)
                    self._subscribed.set()
            elif isinstance(event, InvalidMessage):
                log.warning("dropped invalid message on iopub: %s", event.reason)

    # -- receiving ------------------------------------------------------------------------------

    async def _receive_request(self, channel: Channel) -> Request | InputReply:
        while True:
            event = self._decode(channel, await self.transport.receive(channel))
            if event is not None:
                return event

    def _decode(self, channel: Channel, frames: list[bytes]) -> Request | InputReply | None:
        event = self.protocol.receive(channel, frames)
        if isinstance(event, InvalidMessage):
            log.warning("dropped invalid message on %s: %s", channel, event.reason)
            return None
        assert isinstance(event, Request | InputReply)
        return event

    async def _shell_reader(self) -> None:
        # One message per checkpoint: with a long pipeline queued, the worker starts on the
        # first request at once instead of after everything has been read and decoded. The
        # reader never holds a message across a checkpoint (wait_readable, then take it), so
        # _take_shell, run by a failed execution, sees every message that has arrived.
        while True:
            await self.transport.wait_readable(Channel.SHELL)
            try:
                frames = self.transport.receive_nowait(Channel.SHELL)
            except trio.WouldBlock:
                continue  # _take_shell took it
            self._route_shell(frames)

    def _take_shell(self) -> None:
        """Read and queue every shell message that has already arrived, without waiting."""
        while True:
            try:
                frames = self.transport.receive_nowait(Channel.SHELL)
            except trio.WouldBlock:
                return
            self._route_shell(frames)

    def _route_shell(self, frames: list[bytes]) -> None:
        req = self._decode(Channel.SHELL, frames)
        if req is None:
            return
        assert isinstance(req, Request)
        if req.msg_type in COMM_MESSAGES:
            self._last_comm_seq = req.seq
            self._comm_send.send_nowait(req)
        else:
            self._shell_pending += 1
            self._shell_send.send_nowait((self._last_comm_seq, req))

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

    async def _shell_worker(self) -> None:
        await self._wait_for_subscriber()
        async for comms_before, req in self._shell_recv:
            try:
                # Comm messages sent before this request are handled before it runs.
                while self._comm_done_seq < comms_before:
                    await self._comm_done.park()
                await self._handle(req)
            finally:
                self._shell_pending -= 1

    async def _comm_worker(self) -> None:
        async for req in self._comm_recv:
            try:
                if self._shell_pending:
                    await self._handle_comm(req)
                else:
                    await self._handle(req)
            finally:
                self._comm_done_seq = req.seq
                self._comm_done.unpark_all()

    async def _control_reader(self) -> None:
        while True:
            req = await self._receive_request(Channel.CONTROL)
            assert isinstance(req, Request)
            await self._handle(req)

    async def _stdin_reader(self) -> None:
        while True:
            reply = await self._receive_request(Channel.STDIN)
            assert isinstance(reply, InputReply)
            self._route_input_reply(reply)

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
        # jupyter_client's BlockingKernelClient.input sends no parent: the oldest waiting one.
        return next((p for p in self._inputs.values() if p.reply is None), None)

    # -- handling one request --------------------------------------------------------------

    async def _reply(
        self, req: Request, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        await self._send_reply(req, self.protocol.reply(req, content, metadata))

    async def _send_reply(self, req: Request, reply: Outgoing) -> None:
        if req.channel is Channel.SHELL:
            # Through the IOPub writer's FIFO: the reply leaves after the request's outputs
            # and before its idle, the order ipykernel guarantees and some clients rely on.
            self._iopub_send.send_nowait(reply)
        else:
            # Control replies go at once: they must not wait behind queued output.
            await self.transport.send(reply.channel, reply.frames)

    async def _handle(self, req: Request) -> None:
        """busy -> the handler -> reply -> idle, with the request as parent throughout."""
        msg = req.message
        token = _current_parent.set(msg)
        self.publish("status", {"execution_state": "busy"}, msg)
        try:
            if self.protocol.should_abort(req):
                await self._send_reply(req, self.protocol.abort_reply(req))
                return
            handler = self._HANDLERS[req.msg_type]
            try:
                await handler(self, req)
            except Exception as exc:  # a hook failed: an error reply, never a dead kernel
                log.exception("%s failed", req.msg_type)
                if self.protocol.expects_reply(req):
                    await self._reply(req, {"status": "error", **error_content(exc)})
        finally:
            self.publish("status", {"execution_state": "idle"}, msg)
            _current_parent.reset(token)

    async def _execute(self, req: Request) -> None:
        try:
            plan = self.protocol.begin_execute(req)
        except RemoteProtocolError as exc:
            await self._reply(
                req,
                {
                    "status": "error",
                    "ename": "ProtocolError",
                    "evalue": str(exc),
                    "traceback": [],
                    "execution_count": self.protocol.execution_count,
                },
            )
            return
        msg = req.message
        if not plan.silent:
            self.publish(
                "execute_input", {"code": plan.code, "execution_count": plan.execution_count}, msg
            )
        execution = _Execution(msg)
        ctx = ExecuteContext(
            request=msg,
            execution_count=plan.execution_count,
            silent=plan.silent,
            store_history=plan.store_history,
            allow_stdin=plan.allow_stdin,
            publish=lambda t, c, m, b: self._publish_output(execution, t, c, m, b),
            request_input=lambda prompt, password: self._input(execution, prompt, password),
        )
        self._executions.add(execution)
        try:
            error, output_text = await self._run_cell(plan, ctx, execution)
        finally:
            self._executions.discard(execution)
            execution.end()
        if plan.store_history:
            self.kernel.history.append(plan.execution_count, plan.code, output_text)
        if error is not None:
            await self._execute_failed(req, plan, error)
            return
        await self._reply(
            req,
            {
                "status": "ok",
                "execution_count": plan.execution_count,
                "payload": [],
                "user_expressions": await self._user_expressions(plan.user_expressions),
            },
        )

    async def _run_cell(
        self, plan: ExecutePlan, ctx: ExecuteContext, execution: _Execution
    ) -> tuple[dict[str, Any] | None, Any]:
        """``do_execute`` and its result: the error content (None on success) and the
        result's text for the history."""
        error: dict[str, Any] | None = None
        result: Any = None
        with execution.scope:
            try:
                result = await self.kernel.do_execute(plan.code, ctx)
            except InputInterrupted:  # from a worker thread whose input the interrupt cut off
                error = interrupt_error()
            except Exception as exc:
                error = error_content(exc)
        if execution.scope.cancelled_caught:
            error = interrupt_error()
        if error is not None or result is None:
            return error, None
        bundle = {"text/plain": result} if isinstance(result, str) else result
        ctx.execute_result(bundle)
        return None, bundle.get("text/plain")

    def _publish_output(
        self,
        execution: _Execution,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None,
        buffers: Sequence[bytes],
    ) -> None:
        if execution.ended:
            # A worker thread that an interrupt left running: its cell has had its idle.
            if not execution.dropped_output:
                log.warning("dropped output of %s, which has ended", execution.request.msg_id)
            execution.dropped_output = True
            return
        self.publish(msg_type, content, execution.request, metadata, buffers)

    async def _execute_failed(self, req: Request, plan: ExecutePlan, error: dict[str, Any]) -> None:
        if not plan.silent:
            self.publish("error", error, req.message)
        # Take in every shell message that has already arrived, so that "queued" means
        # "sent before the error" rather than "happened to be read already".
        self._take_shell()
        self.protocol.execute_failed(plan)
        await self._reply(
            req,
            {
                "status": "error",
                **error,
                "execution_count": plan.execution_count,
                "user_expressions": {},
                "payload": [],
            },
        )

    async def _user_expressions(self, expressions: dict[str, str]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, expression in expressions.items():
            try:
                data = await self.kernel.do_user_expression(expression)
                results[name] = {"status": "ok", "data": data, "metadata": {}}
            except Exception as exc:
                results[name] = {"status": "error", **error_content(exc)}
        return results

    async def _input(self, execution: _Execution, prompt: str, password: bool) -> str:
        if not execution.takes_input:
            raise InputInterrupted("the execution that asked for input was interrupted or ended")
        out = self.protocol.input_request(execution.request, prompt, password)
        pending = self._inputs[out.msg_id] = _PendingInput()
        try:
            with execution.waiting_for_input() as scope:
                await self._flush_iopub()  # the prompt belongs after what the cell printed
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

    async def _complete(self, req: Request) -> None:
        c = req.message.content
        code, pos = str(c.get("code", "")), c.get("cursor_pos")
        pos = len(code) if not isinstance(pos, int) else pos
        result = await self.kernel.do_complete(code, pos)
        if not isinstance(result, Completions):
            raise TypeError("do_complete must return kernelsdk.Completions")
        await self._reply(
            req,
            {
                "status": "ok",
                "matches": list(result.matches),
                "cursor_start": result.cursor_start,
                "cursor_end": result.cursor_end,
                "metadata": dict(result.metadata),
            },
        )

    async def _inspect(self, req: Request) -> None:
        c = req.message.content
        code, pos = str(c.get("code", "")), c.get("cursor_pos")
        pos = len(code) if not isinstance(pos, int) else pos
        detail = c.get("detail_level", 0)
        data = await self.kernel.do_inspect(code, pos, detail if isinstance(detail, int) else 0)
        await self._reply(
            req, {"status": "ok", "found": data is not None, "data": data or {}, "metadata": {}}
        )

    async def _is_complete(self, req: Request) -> None:
        result = await self.kernel.do_is_complete(str(req.message.content.get("code", "")))
        if not isinstance(result, IsComplete):
            raise TypeError("do_is_complete must return kernelsdk.IsComplete")
        content: dict[str, Any] = {"status": result.status}
        if result.status == "incomplete":
            content["indent"] = result.indent
        await self._reply(req, content)

    async def _history(self, req: Request) -> None:
        c = req.message.content
        known = (
            "hist_access_type",
            "output",
            "raw",
            "session",
            "start",
            "stop",
            "n",
            "pattern",
            "unique",
        )
        args = {k: c[k] for k in known if k in c and c[k] is not None}
        args.setdefault("hist_access_type", "tail")
        args.setdefault("output", False)
        args.setdefault("raw", True)
        history = await self.kernel.do_history(**args)
        await self._reply(req, {"status": "ok", "history": history})

    async def _kernel_info(self, req: Request) -> None:
        await self._reply(req, {"status": "ok", **self.kernel.kernel_info()})

    async def _comm_info(self, req: Request) -> None:
        target = req.message.content.get("target_name")
        comms = self.kernel.comms.info(target if isinstance(target, str) else None)
        await self._reply(req, {"status": "ok", "comms": comms})

    async def _connect(self, req: Request) -> None:
        await self._reply(req, {"status": "ok", **self.transport.ports})

    async def _interrupt(self, req: Request) -> None:
        self.interrupt()
        await self._reply(req, {"status": "ok"})

    async def _shutdown_request(self, req: Request) -> None:
        restart = bool(req.message.content.get("restart", False))
        if self._executions:
            # The running cell ends with the kernel anyway. Interrupted first, it stops waiting
            # for input and frees what do_shutdown may need (a NativeRunner's interpreter).
            self.interrupt()
        await self.kernel.do_shutdown(restart)
        content = {"status": "ok", "restart": restart}
        await self._reply(req, content)
        # ipykernel re-broadcasts the reply on IOPub so every client learns of the shutdown.
        self.publish("shutdown_reply", content, req.message)
        self.shutdown_restart = restart
        self._shutdown.set()

    async def _comm(self, req: Request) -> None:
        handlers: dict[str, Callable[[Message], Any]] = {
            "comm_open": self.kernel.comms._handle_open,
            "comm_msg": self.kernel.comms._handle_msg,
            "comm_close": self.kernel.comms._handle_close,
        }
        result = handlers[req.msg_type](req.message)
        if isawaitable(result):
            await result

    async def _handle_comm(self, req: Request) -> None:
        """A comm message during an execution: handled at once, without busy/idle."""
        token = _current_parent.set(req.message)
        try:
            await self._comm(req)
        except Exception:
            log.exception("comm handler for %s failed", req.msg_type)
        finally:
            _current_parent.reset(token)

    _HANDLERS: dict[str, Callable[[KernelServer, Request], Awaitable[None]]] = {
        "execute_request": _execute,
        "complete_request": _complete,
        "inspect_request": _inspect,
        "is_complete_request": _is_complete,
        "history_request": _history,
        "kernel_info_request": _kernel_info,
        "comm_info_request": _comm_info,
        "connect_request": _connect,
        "interrupt_request": _interrupt,
        "shutdown_request": _shutdown_request,
        "comm_open": _comm,
        "comm_msg": _comm,
        "comm_close": _comm,
    }
