"""Deliberately broken kernels for the conformance suite's truth tests.

``FaultyKernel`` is the probe kernel (see kernels_for_tests) with exactly one fault, chosen by
the ``KSDK_FAULT`` environment variable of its kernelspec. Each fault is a small patch of
kernelsdk's runtime, applied in the kernel process only, when the kernel is created:

    no_signature_check   signatures (and replays) are not verified
    late_output          every execute publishes one more stream *after* its idle
    no_heartbeat         the heartbeat socket swallows pings instead of echoing them
    die_on_idle_sigint   SIGINT while nothing runs exits the process
    protocol_5_3         kernel_info says protocol 5.3 (kernelspec and headers say 5.5)
    reused_msg_id        every idle status carries the same msg_id
    control_blocked      control requests wait until no execution is running
    shutdown_no_exit     shutdown_reply is sent, but the process never exits
    no_comm_close        comm_open to an unknown target is silently dropped
    silent_counts        silent executions increment the execution count
    no_abort             stop_on_error aborts nothing
    crash_on_garbage     an undecodable message kills the process
    stdin_ignores_allow  input_request is sent even when allow_stdin is false
    no_interrupt         interrupts of running code are ignored
    forged_registration  started from a registration file, it signs its ports with a wrong key
    hb_needs_gil         the heartbeat is a Python thread: no echo while a cell holds the GIL
    history_ignores_output  history_reply entries are [session, line, input] even for output=True
    incomplete_no_indent is_complete 'incomplete' is answered without 'indent'
    update_wrong_id      update_display_data carries another display_id than the one asked
    drops_after_forged   after a forged message, the next valid one on that socket is dropped
    comm_no_status       comm_info, comm_open, comm_msg and comm_close get no busy/idle
    parentless_comm_close  the comm_close answering a comm_open has an empty parent header
    misspelt_update      update_display_data goes out as 'iopub_update_display_data'
    parentless_clear     clear_output is published with an empty parent header

And one quirk that is no fault (the suite must pass it):

    prompt_trimmed       input_request.prompt has its whitespace stripped
"""

from __future__ import annotations

import os
from typing import Any

import trio
from kernels_for_tests import ProbeKernel

from kernelsdk import (
    _context,
    _events,
    _handlers,
    _heartbeat,
    _protocol,
    _registration,
    _server,
    _session,
)

FAULTS: dict[str, str] = {}


def fault(name: str) -> Any:
    def register(fn: Any) -> Any:
        FAULTS[name] = fn
        return fn

    return register


@fault("no_signature_check")
def _no_signature_check() -> None:
    _session.Session._verify = lambda self, signature, parts: None  # type: ignore[method-assign]


@fault("late_output")
def _late_output() -> None:
    original = _handlers.RequestHandlers.handle

    async def handle(self: _handlers.RequestHandlers, req: Any) -> None:
        await original(self, req)
        if req.msg_type == "execute_request" and not req.message.content.get("silent"):
            # Queued as it is: the protocol core would refuse output after idle.
            late = _events.Output("stream", {"name": "stdout", "text": "too late\n"}, req.message)
            self.runtime.queue(late)

    _handlers.RequestHandlers.handle = handle  # type: ignore[method-assign]


@fault("no_heartbeat")
def _no_heartbeat() -> None:
    def swallow(sock: Any) -> None:
        try:
            while True:
                sock.recv_multipart()
        except Exception:
            pass
        finally:
            sock.close(linger=0)

    _heartbeat._echo = swallow


@fault("die_on_idle_sigint")
def _die_on_idle_sigint() -> None:
    original = _server.KernelServer.interrupt

    def interrupt(self: _server.KernelServer) -> None:
        if not self.handlers.executions:
            os._exit(3)
        original(self)

    _server.KernelServer.interrupt = interrupt  # type: ignore[method-assign]


@fault("protocol_5_3")
def _protocol_5_3() -> None:
    original = ProbeKernel.kernel_info

    def kernel_info(self: ProbeKernel) -> dict[str, Any]:
        return {**original(self), "protocol_version": "5.3"}

    FaultyKernel.kernel_info = kernel_info  # type: ignore[method-assign]


@fault("reused_msg_id")
def _reused_msg_id() -> None:
    original_message = _protocol.KernelProtocol._message

    def message(
        self: _protocol.KernelProtocol, msg_type: str, content: Any, *a: Any, **k: Any
    ) -> Any:
        if msg_type == "status" and content.get("execution_state") == "idle":
            saved, self._counter = self._counter, -1  # every idle gets msg_id <session>_0
            try:
                return original_message(self, msg_type, content, *a, **k)
            finally:
                self._counter = saved
        return original_message(self, msg_type, content, *a, **k)

    _protocol.KernelProtocol._message = message  # type: ignore[method-assign]


@fault("control_blocked")
def _control_blocked() -> None:
    original = _handlers.RequestHandlers.handle

    async def handle(self: _handlers.RequestHandlers, req: Any) -> None:
        if req.channel is _protocol.Channel.CONTROL:
            while self.executions:
                await trio.sleep(0.01)
        await original(self, req)

    _handlers.RequestHandlers.handle = handle  # type: ignore[method-assign]


@fault("shutdown_no_exit")
def _shutdown_no_exit() -> None:
    async def wait_stopped(self: _server.KernelServer) -> None:
        await self._stopped.wait()
        await trio.sleep_forever()

    _server.KernelServer.wait_stopped = wait_stopped  # type: ignore[method-assign]


@fault("no_comm_close")
def _no_comm_close() -> None:
    from kernelsdk import _comm

    original = _comm.CommManager.handle_open

    def handle_open(self: _comm.CommManager, msg: Any) -> Any:
        if msg.content.get("target_name") not in self._targets:
            return None
        return original(self, msg)

    _comm.CommManager.handle_open = handle_open  # type: ignore[method-assign]


@fault("silent_counts")
def _silent_counts() -> None:
    original = _protocol.KernelProtocol.begin_execute

    def begin_execute(self: _protocol.KernelProtocol, request: Any) -> Any:
        if request.message.content.get("silent"):
            self.execution_count += 1
        return original(self, request)

    _protocol.KernelProtocol.begin_execute = begin_execute  # type: ignore[method-assign]


@fault("no_abort")
def _no_abort() -> None:
    _protocol.KernelProtocol.should_abort = lambda self, request: False  # type: ignore[method-assign]


@fault("crash_on_garbage")
def _crash_on_garbage() -> None:
    original = _protocol.KernelProtocol._accepted

    def accepted(self: _protocol.KernelProtocol, channel: Any, frames: Any) -> Any:
        msg = original(self, channel, frames)
        forged = isinstance(msg, _protocol.InvalidMessage) and (
            "signature" in msg.reason or "replay" in msg.reason
        )
        if isinstance(msg, _protocol.InvalidMessage) and not forged:
            os._exit(4)  # garbage that is not a forgery: "crash"
        return msg

    _protocol.KernelProtocol._accepted = accepted  # type: ignore[method-assign]


@fault("stdin_ignores_allow")
def _stdin_ignores_allow() -> None:
    async def input(
        self: _context.ExecuteContext, prompt: str = "", *, password: bool = False
    ) -> str:
        return await self._request_input(prompt, password)

    _context.ExecuteContext.input = input  # type: ignore[method-assign]


@fault("no_interrupt")
def _no_interrupt() -> None:
    _handlers.RequestHandlers.interrupt = lambda self: None  # type: ignore[method-assign]


@fault("forged_registration")
def _forged_registration() -> None:
    original = _registration.Registration.to_frames

    def to_frames(self: _registration.Registration, session: _session.Session) -> list[bytes]:
        return original(self, _session.Session(b"not the key"))

    _registration.Registration.to_frames = to_frames  # type: ignore[method-assign]


@fault("hb_needs_gil")
def _hb_needs_gil() -> None:
    import zmq

    def echo_in_python(sock: Any) -> None:
        # Blocking recv releases the GIL, but returning from it needs the GIL back.
        try:
            while True:
                sock.send_multipart(sock.recv_multipart())
        except zmq.ContextTerminated:
            pass
        finally:
            sock.close(linger=0)

    _heartbeat._echo = echo_in_python


@fault("history_ignores_output")
def _history_ignores_output() -> None:
    from kernelsdk import _history

    _history.HistoryEntry.as_reply_item = (  # type: ignore[method-assign]
        lambda self, output: [_history.SESSION, self.line, self.input]
    )


@fault("incomplete_no_indent")
def _incomplete_no_indent() -> None:
    async def is_complete(self: _handlers.RequestHandlers, req: Any) -> None:
        result = await self.kernel.do_is_complete(str(req.message.content.get("code", "")))
        await self._reply(req, {"status": result.status})

    _handlers.RequestHandlers._HANDLERS["is_complete_request"] = is_complete


@fault("update_wrong_id")
def _update_wrong_id() -> None:
    original = _context.ExecuteContext.update_display

    def update_display(
        self: _context.ExecuteContext, display_id: str, data: Any, metadata: Any = None
    ) -> None:
        original(self, display_id + "-other", data, metadata)

    _context.ExecuteContext.update_display = update_display  # type: ignore[method-assign]


@fault("drops_after_forged")
def _drops_after_forged() -> None:
    dropping: set[Any] = set()
    original = _protocol.KernelProtocol._accepted

    def accepted(self: _protocol.KernelProtocol, channel: Any, frames: Any) -> Any:
        msg = original(self, channel, frames)
        if isinstance(msg, _protocol.InvalidMessage):
            if any(w in msg.reason for w in ("signature", "unsigned", "replay")):
                dropping.add(channel)  # the reader "resynchronises" by skipping a message
            return msg
        if channel in dropping:
            dropping.discard(channel)
            return _protocol.InvalidMessage(channel, "dropped after a forgery", tuple(frames))
        return msg

    _protocol.KernelProtocol._accepted = accepted  # type: ignore[method-assign]


@fault("comm_no_status")
def _comm_no_status() -> None:
    original = _handlers.RequestHandlers.handle

    async def handle(self: _handlers.RequestHandlers, req: Any) -> None:
        if req.msg_type in ("comm_info_request", "comm_open", "comm_msg", "comm_close"):
            token = _handlers._current_request.set(req)
            self.protocol.begin(req)  # the protocol's busy and idle are built, never sent
            try:
                await self._HANDLERS[req.msg_type](self, req)
            finally:
                self.protocol.end(req)
                _handlers._current_request.reset(token)
            return
        await original(self, req)

    _handlers.RequestHandlers.handle = handle  # type: ignore[method-assign]


def _publish_patch(change: Any) -> None:
    # KernelServer.queue is bound per instance (the output channel's send_nowait): wrap it as
    # each server is made.
    original_init = _server.KernelServer.__init__

    def init(self: _server.KernelServer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        original = self.queue

        def queue(item: Any) -> None:
            if isinstance(item, _events.Output):
                msg_type, parent = change(item.msg_type, item.parent)
                item = _events.Output(msg_type, item.content, parent, item.metadata, item.buffers)
            original(item)

        self.queue = queue

    _server.KernelServer.__init__ = init  # type: ignore[method-assign]


@fault("parentless_comm_close")
def _parentless_comm_close() -> None:
    _publish_patch(lambda t, parent: (t, None if t == "comm_close" else parent))


@fault("misspelt_update")
def _misspelt_update() -> None:
    _publish_patch(
        lambda t, parent: ("iopub_update_display_data" if t == "update_display_data" else t, parent)
    )


@fault("parentless_clear")
def _parentless_clear() -> None:
    _publish_patch(lambda t, parent: (t, None if t == "clear_output" else parent))


@fault("prompt_trimmed")
def _prompt_trimmed() -> None:
    original = _context.ExecuteContext.input

    async def input(
        self: _context.ExecuteContext, prompt: str = "", *, password: bool = False
    ) -> str:
        return await original(self, prompt.strip(), password=password)

    _context.ExecuteContext.input = input  # type: ignore[method-assign]


class FaultyKernel(ProbeKernel):
    implementation = "faulty-probe"

    def __init__(self) -> None:
        name = os.environ.get("KSDK_FAULT", "")
        if name:
            FAULTS[name]()
        super().__init__()
