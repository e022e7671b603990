"""Per-request handlers: what the kernel does for each request type, around its ``do_*`` hooks.

Theory of operation
-------------------
:class:`RequestHandlers` is the kernel core (xeus's ``xkernel_core``); the runtime
(:class:`~kernelsdk.KernelServer`, xeus's ``xserver``) decides *when* a request is handled and
moves the bytes. :meth:`RequestHandlers.handle` brackets one request:

1. ``protocol.begin`` (busy), queued;
2. the abort reply, if ``stop_on_error`` aborts it; otherwise the handler for its type, which
   calls the kernel's hook and answers with a reply the protocol builds;
3. an error reply if the hook raised (a failing hook never kills the kernel);
4. ``protocol.end`` (idle), queued.

The protocol builds every message and enforces the lifecycle (it raises
:class:`~kernelsdk.LocalProtocolError` when a handler breaks it); this module only calls
hooks and turns their results into reply content. What it needs of the runtime is the small
:class:`Runtime` interface. A comm message that arrives during an execution is handled at
once by :meth:`RequestHandlers.handle_comm_now`, without busy/idle.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import trio

from ._context import ExecuteContext
from ._debug_session import DebugSession
from ._events import Outgoing, Output, Request
from ._exceptions import InputInterrupted, RemoteProtocolError
from ._executor import Executor
from ._history import InMemoryHistory
from ._kernel import BaseKernel, Completions, IsComplete
from ._protocol import ExecutePlan, KernelProtocol, error_content, interrupt_error

if TYPE_CHECKING:
    from ._captured_output import CapturedOutput

log = logging.getLogger("kernelsdk")

#: The request being handled in the current task; comm traffic gets it as parent.
_current_request: ContextVar[Request | None] = ContextVar("kernelsdk_request", default=None)

#: What a ``shutdown_request`` does: ``"stop"`` the kernel (a kernel process), or ``"detach"``
#: the client that sent it (a kernel embedded in a host program, which keeps running and
#: serving: another client may attach later).
OnShutdown = Literal["stop", "detach"]

#: Why a kernel that detaches on shutdown refuses a restart (the ``evalue`` of its reply).
RESTART_REFUSED: Final = (
    "this kernel is embedded in a host program, which keeps running: it cannot be restarted "
    "from a client. Reconnect to it instead (its state is the host's)."
)


class Runtime(Protocol):
    """What the handlers need of the runtime that schedules them."""

    @property
    def ports(self) -> Mapping[str, int]:
        """The ``connect_reply`` ports."""
        ...

    def queue(self, item: Output | Outgoing) -> None:
        """Send ``item`` after everything queued before it (outputs, shell replies)."""

    async def send_reply(self, request: Request, reply: Outgoing) -> None:
        """Send ``request``'s reply: after its outputs on shell, at once on control."""

    def take_shell(self) -> None:
        """Read every shell message that has arrived, without waiting."""

    async def request_input(self, execution: Execution, prompt: str, password: bool) -> str:
        """Ask the client of ``execution`` for input and wait for the answer."""

    def stop(self, restart: bool) -> None:
        """Stop serving once what is queued has been sent (the shutdown has been answered)."""

    def detached(self) -> None:
        """A client's shutdown request was answered by detaching it; the kernel serves on."""

    def open_subshell(self, subshell_id: str) -> None:
        """Start serving the subshell just created (its own queue, run concurrently)."""

    def close_subshell(self, subshell_id: str) -> None:
        """Stop routing requests to a deleted subshell; what it had queued still runs."""


class Execution:
    """One running ``execute_request``: what an interrupt cancels, and whether the execution
    may still ask for input and publish output."""

    def __init__(self, request: Request) -> None:
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


class RequestHandlers:
    """Handles the requests of one kernel instance, one call of :meth:`handle` per request.

    Args:
        kernel: the kernel whose hooks answer.
        protocol: builds every message and holds the rules.
        runtime: queues and sends what the handlers produce.
        executor: where cells run (None: in the handling task, blocking work in a worker
            thread).
        on_shutdown: what a ``shutdown_request`` does (see :data:`OnShutdown`).
        native_output: the process's captured descriptors, when the kernel owns them: what
            they carry while a cell runs is that cell's output, all of it before its reply.
    """

    def __init__(
        self,
        kernel: BaseKernel,
        protocol: KernelProtocol,
        runtime: Runtime,
        *,
        executor: Executor | None = None,
        on_shutdown: OnShutdown = "stop",
        native_output: CapturedOutput | None = None,
    ) -> None:
        if on_shutdown not in ("stop", "detach"):
            raise ValueError(f"on_shutdown must be 'stop' or 'detach', not {on_shutdown!r}")
        self.kernel = kernel
        self.protocol = protocol
        self.runtime = runtime
        self.executor = executor
        self.on_shutdown = on_shutdown
        self.native_output = native_output
        self.executions: set[Execution] = set()
        self._comm_ids = 0
        kernel.comms.attach(self._publish_comm, self._new_comm_id)
        #: The DAP session (kernelsdk._debug_session): the kernel's debugger, or refusals.
        implementation, language_info = kernel.implementation, kernel.language_info
        if kernel.debugger is not None:
            # What kernel_info says (a wrapper, e.g. an MPI variant, says its inner kernel's):
            # the cells' files take the language's extension.
            info = kernel.kernel_info()
            implementation = str(info.get("implementation") or implementation)
            language_info = info.get("language_info") or language_info
        self.debug = DebugSession(
            kernel.debugger,
            self._publish_debug_event,
            implementation=implementation,
            file_extension=str(language_info.get("file_extension") or ".txt"),
        )
        self._debug_parent: Request | None = None  # the last debug_request: events' parent
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._trio_thread: int | None = None

    # -- one request ------------------------------------------------------------------------

    async def handle(self, req: Request) -> None:
        """busy -> the handler -> reply -> idle, with the request as parent throughout."""
        protocol = self.protocol
        token = _current_request.set(req)
        self.runtime.queue(protocol.begin(req))
        try:
            if protocol.should_abort(req):
                await self.runtime.send_reply(req, protocol.abort_reply(req))
                return
            try:
                await self._HANDLERS[req.msg_type](self, req)
            except Exception as exc:  # a hook failed: an error reply, never a dead kernel
                log.exception("%s failed", req.msg_type)
                if protocol.awaits_reply(req):
                    await self._reply(req, {"status": "error", **error_content(exc)})
        finally:
            self.runtime.queue(protocol.end(req))
            _current_request.reset(token)

    async def handle_comm_now(self, req: Request) -> None:
        """A comm message during an execution: handled at once, without busy/idle."""
        token = _current_request.set(req)
        try:
            await self._comm(req)
        except Exception:
            log.exception("comm handler for %s failed", req.msg_type)
        finally:
            _current_request.reset(token)

    def interrupt(self) -> None:
        """Interrupt the running executions, then call the kernel's ``do_interrupt`` hook."""
        log.info("interrupt: %d execution(s) running", len(self.executions))
        for execution in self.executions:
            execution.interrupt()
        if self.executor is not None:
            try:
                self.executor.interrupt()
            except Exception:
                log.exception("the executor's interrupt failed")
        try:
            self.kernel.do_interrupt()
        except Exception:
            log.exception("do_interrupt hook failed")

    async def _reply(
        self, req: Request, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        await self.runtime.send_reply(req, self.protocol.reply(req, content, metadata))

    def _queue(self, output: Output | None) -> None:
        """Queue an output the protocol built (None: the rules suppressed it)."""
        if output is not None:
            self.runtime.queue(output)

    # -- execute ------------------------------------------------------------------------------

    async def _execute(self, req: Request) -> None:
        protocol, runtime = self.protocol, self.runtime
        try:
            plan = protocol.begin_execute(req)
        except RemoteProtocolError as exc:
            await runtime.send_reply(req, protocol.bad_execute_reply(req, exc))
            return
        if (input_output := protocol.execute_input(req, plan)) is not None:  # None if silent
            runtime.queue(input_output)
        execution = Execution(req)
        ctx = ExecuteContext(
            request=req.message,
            execution_count=plan.execution_count,
            silent=plan.silent,
            store_history=plan.store_history,
            allow_stdin=plan.allow_stdin,
            publish=functools.partial(self._publish_output, execution),
            request_input=functools.partial(runtime.request_input, execution),
            run_blocking=None if self.executor is None else self.executor.run_blocking,
            native_output=self.native_output,
        )
        self.executions.add(execution)
        try:
            error, output_text = await self._run_cell(plan, ctx, execution)
        finally:
            self.executions.discard(execution)
            execution.end()
        if plan.store_history:
            history = self.kernel.history_of(plan.subshell_id)
            if history is not None:  # None: a deleted subshell (nobody can ask for it)
                history.append(plan.execution_count, plan.code, output_text)
        if error is None:
            expressions = await self._user_expressions(plan.user_expressions)
            await runtime.send_reply(req, protocol.execute_ok(req, plan, expressions))
            return
        self._queue(protocol.error_output(req, error))
        # Take in every shell message that has already arrived, so that the executes
        # stop_on_error aborts are those sent before the error, not those read already.
        runtime.take_shell()
        await runtime.send_reply(req, protocol.execute_error(req, plan, error))

    async def _run_cell(
        self, plan: ExecutePlan, ctx: ExecuteContext, execution: Execution
    ) -> tuple[dict[str, Any] | None, Any]:
        """``do_execute`` and its result: the error content (None on success) and the
        result's text for the history."""
        error: dict[str, Any] | None = None
        result: Any = None
        with execution.scope, ctx.native_output():
            try:
                if self.executor is None:
                    result = await self.kernel.do_execute(plan.code, ctx)
                else:
                    async with self.executor.cell():
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
        execution: Execution,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None,
        buffers: Sequence[bytes],
    ) -> None:
        """Output of a running execution (its context's publisher)."""
        if execution.ended:
            # A worker thread that an interrupt left running: its cell has had its idle.
            if not execution.dropped_output:
                log.warning(
                    "dropped output of %s, which has ended", execution.request.message.msg_id
                )
            execution.dropped_output = True
            return
        if msg_type == "stream" and self.native_output is not None:
            self.native_output.before_stream()  # what native code wrote before comes first
        # Not through _queue: this runs for every output of every cell.
        output = self.protocol.output(execution.request, msg_type, content, metadata, buffers)
        if output is not None:
            self.runtime.queue(output)

    async def _user_expressions(self, expressions: dict[str, str]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, expression in expressions.items():
            try:
                data = await self.kernel.do_user_expression(expression)
                results[name] = {"status": "ok", "data": data, "metadata": {}}
            except Exception as exc:
                results[name] = {"status": "error", **error_content(exc)}
        return results

    # -- the other requests -------------------------------------------------------------------

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
        subshell_id = self.protocol.subshell_id(req)
        if subshell_id is not None:  # each subshell has its own history (JEP 91)
            args["subshell_id"] = subshell_id
        history = await self.kernel.do_history(**args)
        await self._reply(req, {"status": "ok", "history": history})

    async def _kernel_info(self, req: Request) -> None:
        await self._reply(req, {"status": "ok", **self.kernel.kernel_info()})

    async def _comm_info(self, req: Request) -> None:
        target = req.message.content.get("target_name")
        comms = self.kernel.comms.info(target if isinstance(target, str) else None)
        await self._reply(req, {"status": "ok", "comms": comms})

    async def _connect(self, req: Request) -> None:
        await self._reply(req, {"status": "ok", **self.runtime.ports})

    async def _interrupt(self, req: Request) -> None:
        self.interrupt()
        await self._reply(req, {"status": "ok"})

    async def _shutdown_request(self, req: Request) -> None:
        restart = bool(req.message.content.get("restart", False))
        if self.on_shutdown == "detach":
            await self._detach(req, restart)
            return
        if self.executions:
            # The running cell ends with the kernel anyway. Interrupted first, it stops waiting
            # for input and frees what do_shutdown may need (a NativeRunner's interpreter).
            self.interrupt()
        await self.debug.stop()  # a cell stopped at a breakpoint runs on (or ends)
        await self.kernel.do_shutdown(restart)
        self.debug.close()
        content = {"status": "ok", "restart": restart}
        await self._reply(req, content)
        # ipykernel re-broadcasts the reply on IOPub so every client learns of the shutdown.
        self._queue(self.protocol.output(req, "shutdown_reply", content))
        self.runtime.stop(restart)

    async def _detach(self, req: Request, restart: bool) -> None:
        """A shutdown request to a kernel its host keeps running: the client goes, the kernel
        stays. ``do_shutdown`` is not called (the kernel is not shutting down); a restart is
        refused, since the host's state cannot be started afresh from outside."""
        if restart:
            await self._reply(
                req,
                {
                    "status": "error",
                    "ename": "RestartRefused",
                    "evalue": RESTART_REFUSED,
                    "traceback": [],
                    "restart": True,
                },
            )
            return
        if self.executions:
            # The client that started them is going: what they print would reach nobody.
            self.interrupt()
        content = {"status": "ok", "restart": False}
        # As a real shutdown does, so that every client of the session learns it has ended.
        self._queue(self.protocol.output(req, "shutdown_reply", content))
        # Counted before the reply leaves: a client that has its reply sees the detach.
        self.runtime.detached()
        await self._reply(req, content)

    # -- the debugger ---------------------------------------------------------------------------

    async def _debug(self, req: Request) -> None:
        """A DAP request: answered by the debug session (the kernel's debugger behind it)."""
        if self._trio_token is None:
            self._trio_token = trio.lowlevel.current_trio_token()
            self._trio_thread = threading.get_ident()
        self._debug_parent = req
        await self._reply(req, await self.debug.handle(req.message.content))

    def _publish_debug_event(self, content: dict[str, Any]) -> None:
        """Queue a ``debug_event``, from any thread (a stopped cell's worker sends them)."""
        parent = self._debug_parent
        output = self.protocol.debug_event(content, parent.message if parent else None)
        if threading.get_ident() == self._trio_thread:
            self.runtime.queue(output)
        elif self._trio_token is not None:
            trio.from_thread.run_sync(self.runtime.queue, output, trio_token=self._trio_token)
        else:  # before any debug_request: no frontend has started the debugger
            log.warning("dropped a debug_event sent before any debug_request: %s", content)

    # -- kernel subshells (JEP 91) ------------------------------------------------------------

    async def _create_subshell(self, req: Request) -> None:
        subshell_id = str(uuid.uuid4())
        reply = self.protocol.create_subshell(req, subshell_id)  # refused: nothing created
        if self.protocol.knows_subshell(subshell_id):
            self.kernel.subshell_histories[subshell_id] = InMemoryHistory()
            self.runtime.open_subshell(subshell_id)
            log.info("created subshell %s", subshell_id)
        await self.runtime.send_reply(req, reply)

    async def _delete_subshell(self, req: Request) -> None:
        reply, deleted = self.protocol.delete_subshell(req)
        if deleted is not None:
            self.kernel.subshell_histories.pop(deleted, None)
            self.runtime.close_subshell(deleted)
            log.info("deleted subshell %s", deleted)
        await self.runtime.send_reply(req, reply)

    async def _list_subshells(self, req: Request) -> None:
        await self.runtime.send_reply(req, self.protocol.list_subshells(req))

    # -- comms --------------------------------------------------------------------------------

    async def _comm(self, req: Request) -> None:
        comms = self.kernel.comms
        handlers: dict[str, Callable[[Any], Any]] = {
            "comm_open": comms.handle_open,
            "comm_msg": comms.handle_msg,
            "comm_close": comms.handle_close,
        }
        result = handlers[req.msg_type](req.message)
        if isawaitable(result):
            await result

    def _publish_comm(
        self,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None,
        buffers: Sequence[bytes],
    ) -> None:
        """Comm traffic, with the request being handled (if any) as parent."""
        self._queue(
            self.protocol.output(_current_request.get(), msg_type, content, metadata, buffers)
        )

    def _new_comm_id(self) -> str:
        self._comm_ids += 1
        return f"{self.protocol.session_id}-comm-{self._comm_ids}"

    _HANDLERS: dict[str, Callable[[RequestHandlers, Request], Awaitable[None]]] = {
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
        "create_subshell_request": _create_subshell,
        "delete_subshell_request": _delete_subshell,
        "list_subshell_request": _list_subshells,
        "debug_request": _debug,
        "comm_open": _comm,
        "comm_msg": _comm,
        "comm_close": _comm,
    }
