"""The kernel side of the Jupyter messaging protocol, sans-IO: frames in, events out.

Theory of operation
-------------------
:class:`KernelProtocol` is fed the frames a driver read from a socket
(:meth:`~KernelProtocol.receive`) and returns one event. It builds every message the kernel
sends (:meth:`~KernelProtocol.reply`, :meth:`~KernelProtocol.publish`, ...) as
:class:`~kernelsdk.protocol.Outgoing` frames for the driver to write. It owns the rules a kernel
author must never have to re-learn; the tables and methods below are the one place they live:

* which request types each channel accepts, and which reply answers each request;
* the request lifecycle: :meth:`~KernelProtocol.begin` (busy), at most one reply,
  outputs, :meth:`~KernelProtocol.end` (idle), all with the request as parent; the runtime
  brackets *every* request it handles, except a comm message handled during an execution;
* the execution counter: only ``store_history`` executions advance it; ``silent`` forces
  ``store_history`` off (nothing reaches the history) and, from ``execute_input`` on,
  suppresses everything the execution publishes apart from comm traffic (no
  ``execute_input``, outputs, result or ``error``);
* every execute-reply shape: ok, error (an interrupt is an error with
  :func:`interrupt_error`'s content), aborted, and the error for content of the wrong types;
* ``stop_on_error``: when an execution fails, the execute requests that had *already arrived*
  are aborted, and nothing that arrives later is;
* kernel subshells (JEP 91, protocol 5.5), for a kernel that claims them (``subshells``):
  which subshell a shell request is for (its header's ``subshell_id``), the subshells that
  exist (created, listed and deleted on control), the error reply to a request for one that
  does not, and the execution count and ``stop_on_error`` per subshell (see
  :meth:`KernelProtocol.subshell_id`);
* ``debug_request`` (protocol 5.5) on control only, answered by a ``debug_reply`` like any
  control request; ``debug_event`` on IOPub outside any request's lifecycle (the DAP inside
  both is :mod:`kernelsdk._dap`'s);
* ``iopub_welcome`` on every IOPub subscription (JEP 65), with no parent header.

A runtime that breaks the lifecycle gets :class:`~kernelsdk.LocalProtocolError` at once,
where it happens: a reply to a message that gets none (a comm message), a second reply, a
reply before busy, a reply or output after idle, busy twice, idle without busy. Each request
costs one small entry while it runs, and an ended one is remembered (the last
:data:`ENDED_REMEMBERED`) to catch late output; requests are keyed by their ``seq``, never by
``msg_id``, which a client may reuse.

Outputs are returned unbuilt (:class:`~kernelsdk._events.Output`): the runtime queues them
and builds them with :meth:`~KernelProtocol.publish_output` when it sends them, so that
adjacent stream outputs can be merged first. Replies and everything else come as frames.

It performs no I/O, reads no clock (the driver passes ``clock``) and draws no random numbers
(the driver passes ``session_id``), so the Trio runtime, the in-memory test transport and an
MPI relay all drive the same object.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, final

import attrs

from ._events import (
    Channel,
    Event,
    InputReply,
    InvalidMessage,
    Outgoing,
    Output,
    Request,
    Subscription,
)
from ._exceptions import ExecutionError, LocalProtocolError, RemoteProtocolError
from ._message import Message
from ._session import Session
from ._version import PROTOCOL_VERSION

#: Requests accepted on shell, and the reply type each gets.
SHELL_REQUESTS: Final[Mapping[str, str]] = {
    "execute_request": "execute_reply",
    "inspect_request": "inspect_reply",
    "complete_request": "complete_reply",
    "history_request": "history_reply",
    "is_complete_request": "is_complete_reply",
    "kernel_info_request": "kernel_info_reply",
    "comm_info_request": "comm_info_reply",
    "connect_request": "connect_reply",
    # Deprecated on shell since 5.4, but clients still send it there.
    "shutdown_request": "shutdown_reply",
}
#: Comm messages are symmetric and get no reply.
COMM_MESSAGES: Final = frozenset({"comm_open", "comm_msg", "comm_close"})
#: Requests on control that manage kernel subshells (JEP 91, protocol 5.5).
SUBSHELL_REQUESTS: Final[Mapping[str, str]] = {
    "create_subshell_request": "create_subshell_reply",
    "delete_subshell_request": "delete_subshell_reply",
    "list_subshell_request": "list_subshell_reply",
}
#: The debugger's request (messaging 5.5, "Debug request"): its content is a DAP request,
#: its reply's a DAP response (see :mod:`kernelsdk._dap`). Accepted on control only, and
#: answered by every kernel: one without a debugger says so in a failed DAP response.
DEBUG_REQUESTS: Final[Mapping[str, str]] = {"debug_request": "debug_reply"}
#: Control accepts every shell request too, so a client can reach a busy kernel.
CONTROL_REQUESTS: Final[Mapping[str, str]] = {
    **SHELL_REQUESTS,
    "interrupt_request": "interrupt_reply",
    **SUBSHELL_REQUESTS,
    **DEBUG_REQUESTS,
}
_ACCEPTED: Final[Mapping[Channel, frozenset[str]]] = {
    Channel.SHELL: frozenset(SHELL_REQUESTS) | COMM_MESSAGES,
    Channel.CONTROL: frozenset(CONTROL_REQUESTS) | COMM_MESSAGES,
    Channel.STDIN: frozenset({"input_reply"}),
}
#: How many ended requests are remembered, to refuse a reply or output after their idle.
ENDED_REMEMBERED: Final = 1024
#: How many deleted subshells are remembered: what they had queued still runs, counted and
#: aborted (``stop_on_error``) as in the subshell.
DELETED_REMEMBERED: Final = 64
#: The ``ename`` of the error reply to a shell request for a subshell that does not exist
#: (ipykernel 7's name for it, which clients may already know).
UNKNOWN_SUBSHELL: Final = "UnknownSubshellError"
#: Why a kernel that does not claim subshells refuses to create, list or delete them.
NO_SUBSHELLS: Final = (
    "this kernel does not support kernel subshells (its kernel_info_reply does not list "
    "'kernel subshells' in supported_features)"
)


def error_content(exc: BaseException) -> dict[str, Any]:
    """The ``ename``/``evalue``/``traceback`` of an ``error`` output or error reply for ``exc``.

    An :class:`~kernelsdk.ExecutionError` gives exactly its fields (the user's language's
    error); any other exception its Python type, message and traceback.
    """
    if isinstance(exc, ExecutionError):
        return {"ename": exc.ename, "evalue": exc.evalue, "traceback": list(exc.traceback)}
    return {
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": traceback.format_exception(exc),
    }


def interrupt_error() -> dict[str, Any]:
    """The error content of an interrupted execution (a new dict each call).

    ipykernel's shape, which frontends recognise: ``raise ExecutionError(**interrupt_error())``
    reports an interrupt from a kernel's own code the same way.
    """
    return {
        "ename": "KeyboardInterrupt",
        "evalue": "interrupted by the user",
        "traceback": ["KeyboardInterrupt: interrupted by the user"],
    }


@final
@attrs.frozen
class ExecutePlan:
    """What the protocol rules say about one ``execute_request``."""

    code: str
    silent: bool
    store_history: bool
    stop_on_error: bool
    allow_stdin: bool
    user_expressions: dict[str, str]
    execution_count: int
    #: the subshell it runs in (None: the main shell); ``stop_on_error`` aborts there only
    subshell_id: str | None = None


class _Subshell:
    """What is kept per subshell (the main shell included).

    JEP 91 leaves a subshell its own queue: requests of one subshell run in order, those of
    different subshells concurrently. So a failed execution aborts (``stop_on_error``) only
    the executes already queued *in its subshell*. And, as the JEP says, "each subshell will
    store its own execution count and history": a subshell counts its executions from 1, as
    a console of its own would, and the main shell's ``In [n]`` is not advanced by what a
    subshell console runs (ipykernel 7 keeps one count per kernel instead). The history is
    the handlers' and the kernel's (``BaseKernel.history`` and ``subshell_histories``).
    """

    __slots__ = ("abort_through_seq", "execution_count")

    def __init__(self) -> None:
        self.abort_through_seq = -1
        self.execution_count = 0


class _Running:
    """The lifecycle state of one request between its busy and its idle."""

    __slots__ = ("replied", "silent")

    def __init__(self) -> None:
        self.replied = False
        self.silent = False  # a silent execution: its outputs are suppressed


class KernelProtocol:
    """The protocol state of one kernel process.

    Args:
        session: signs and verifies frames.
        session_id: this kernel's session id, new for every kernel process (clients spot a
            restart by its change).
        clock: returns the current time as an ISO 8601 string with a timezone.
        username: the header's ``username``.
        subshells: the kernel claims kernel subshells (JEP 91). Without them a request's
            ``subshell_id`` is ignored, as the JEP asks of such kernels, and creating,
            listing or deleting a subshell is refused with an error reply.
    """

    def __init__(
        self,
        session: Session,
        *,
        session_id: str,
        clock: Callable[[], str],
        username: str = "kernel",
        subshells: bool = False,
    ) -> None:
        self.session = session
        self.session_id = session_id
        self.username = username
        self.subshells = subshells
        self._clock = clock
        self._counter = 0
        self._seq = 0
        self._main = _Subshell()
        self._subshells: dict[str, _Subshell] = {}  # the child subshells, oldest first
        # Subshells deleted lately, whose queued requests may still run (and count).
        self._deleted: OrderedDict[str, _Subshell] = OrderedDict()
        # The highest abort_through_seq of any subshell: most requests arrive after it, and
        # should_abort answers them without a lookup.
        self._abort_max = -1
        self._running: dict[int, _Running] = {}  # by Request.seq
        # The seqs of the last ENDED_REMEMBERED ended requests. An OrderedDict: a dict whose
        # first item is deleted again and again scans ever more dead slots to find the next.
        self._ended: OrderedDict[int, None] = OrderedDict()

    @property
    def execution_count(self) -> int:
        """The main shell's execution count (each subshell has its own:
        :meth:`execution_count_of`)."""
        return self._main.execution_count

    @execution_count.setter
    def execution_count(self, value: int) -> None:
        self._main.execution_count = value

    def execution_count_of(self, subshell_id: str | None) -> int:
        """The execution count of a subshell (None: the main shell); 0 for one that does not
        exist."""
        state = self._state(subshell_id)
        return 0 if state is None else state.execution_count

    # -- receiving ------------------------------------------------------------------------

    def receive(self, channel: Channel, frames: Sequence[bytes]) -> Event:
        """Turn the frames of one multipart message into one event. Never raises.

        A driver that reads each channel in its own task calls the method for that channel
        instead, whose return type says which events it can get.
        """
        if channel is Channel.IOPUB:
            return self.receive_subscription(frames)
        if channel is Channel.STDIN:
            return self.receive_input(frames)
        return self.receive_request(channel, frames)

    def receive_request(
        self, channel: Channel, frames: Sequence[bytes]
    ) -> Request | InvalidMessage:
        """A request on shell or control (comm messages included). Never raises."""
        msg = self._accepted(channel, frames)
        if isinstance(msg, InvalidMessage):
            return msg
        self._seq += 1
        return Request(channel, msg, self._seq)

    def receive_input(self, frames: Sequence[bytes]) -> InputReply | InvalidMessage:
        """An ``input_reply`` on stdin. Never raises."""
        msg = self._accepted(Channel.STDIN, frames)
        return msg if isinstance(msg, InvalidMessage) else InputReply(msg)

    def _accepted(self, channel: Channel, frames: Sequence[bytes]) -> Message | InvalidMessage:
        """The message, if it is valid and ``channel`` accepts its type."""
        try:
            msg = self.session.deserialize(frames)
        except RemoteProtocolError as exc:
            return InvalidMessage(channel, str(exc), tuple(frames))
        msg_type = msg.header.msg_type
        if msg_type not in _ACCEPTED[channel]:
            why = "accepted on control only" if msg_type in CONTROL_REQUESTS else "unknown"
            return InvalidMessage(channel, f"{msg_type!r} on {channel}: {why}", tuple(frames))
        return msg

    def receive_subscription(self, frames: Sequence[bytes]) -> Subscription | InvalidMessage:
        """An XPUB (un)subscription on IOPub. Never raises."""
        if len(frames) != 1 or not frames[0] or frames[0][0] not in (0, 1):
            return InvalidMessage(Channel.IOPUB, "not an XPUB (un)subscription", tuple(frames))
        topic = frames[0][1:]
        try:
            topic.decode("utf-8")
        except UnicodeDecodeError:
            return InvalidMessage(Channel.IOPUB, "subscription topic is not UTF-8", tuple(frames))
        return Subscription(topic=topic, subscribed=frames[0][0] == 1)

    # -- the request lifecycle ------------------------------------------------------------

    def begin(self, request: Request) -> Output:
        """``status: busy`` for ``request``: it is being handled from now on.

        Raises:
            LocalProtocolError: ``request`` has begun before.
        """
        seq = request.seq
        if seq in self._running or seq in self._ended:
            raise LocalProtocolError(f"busy twice for {_describe(request)}")
        self._running[seq] = _Running()
        return Output("status", {"execution_state": "busy"}, request.message)

    def end(self, request: Request) -> Output:
        """``status: idle`` for ``request``: nothing more of it may be sent.

        Raises:
            LocalProtocolError: ``request`` has not begun, or has ended already.
        """
        seq = request.seq
        if self._running.pop(seq, None) is None:
            raise LocalProtocolError(f"idle {self._why_not_running(request)}")
        ended = self._ended
        ended[seq] = None
        if len(ended) > ENDED_REMEMBERED:
            ended.popitem(last=False)
        return Output("status", {"execution_state": "idle"}, request.message)

    def output(
        self,
        request: Request | None,
        msg_type: str,
        content: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Output | None:
        """An IOPub message with ``request`` as parent, or None where ``silent`` suppresses it.

        ``request`` may be one that is not bracketed by busy/idle (a comm message handled
        during an execution), or None. Comm traffic is symmetric, not a request's output:
        neither suppressed nor refused (a widget's background task keeps the parent of the
        cell that started it, as in ipykernel).

        Raises:
            LocalProtocolError: ``request`` has ended (its idle was sent).
        """
        if request is None:
            return Output(msg_type, content, None, metadata, buffers)
        # The common case first (a running request that is not silent): one dict lookup.
        running = self._running.get(request.seq)
        if running is None:
            if msg_type not in COMM_MESSAGES and request.seq in self._ended:
                raise LocalProtocolError(f"{msg_type} for {_describe(request)} after its idle")
        elif running.silent and msg_type not in COMM_MESSAGES:
            return None
        return Output(msg_type, content, request.message, metadata, buffers)

    def starting(self) -> Output:
        """``status: starting``, without a parent (sent once, after the first welcome)."""
        return Output("status", {"execution_state": "starting"}, None)

    def _why_not_running(self, request: Request) -> str:
        when = "after idle" if request.seq in self._ended else "before busy"
        return f"{when} for {_describe(request)}"

    # -- the execute rules ----------------------------------------------------------------

    def begin_execute(self, request: Request) -> ExecutePlan:
        """Apply the execute rules to a request: silent, store_history, the counter.

        Call it after :meth:`begin`: from then on, a silent execution's outputs are
        suppressed (:meth:`output` returns None for them).

        Raises:
            RemoteProtocolError: the content has the wrong types (the runtime turns this into
                an error reply rather than running anything).
        """
        c = request.message.content
        code = c.get("code")
        if not isinstance(code, str):
            raise RemoteProtocolError("execute_request.code must be a string")
        silent = bool(c.get("silent", False))
        store_history = False if silent else bool(c.get("store_history", True))
        user_expressions = c.get("user_expressions") or {}
        if not isinstance(user_expressions, dict) or not all(
            isinstance(v, str) for v in user_expressions.values()
        ):
            raise RemoteProtocolError("execute_request.user_expressions must map names to code")
        subshell_id = self.subshell_id(request)
        if subshell_id is None:
            state = self._main
        elif (found := self._state(subshell_id)) is not None:
            state = found
        else:  # deleted long ago (its queue was that long): counts from 1 anew
            state = self._deleted[subshell_id] = _Subshell()
        if store_history:
            state.execution_count += 1
        running = self._running.get(request.seq)
        if running is not None:
            running.silent = silent
        return ExecutePlan(
            code=code,
            silent=silent,
            store_history=store_history,
            stop_on_error=bool(c.get("stop_on_error", True)),
            allow_stdin=bool(c.get("allow_stdin", False)),
            user_expressions=user_expressions,
            execution_count=state.execution_count,
            subshell_id=subshell_id,
        )

    def execute_input(self, request: Request, plan: ExecutePlan) -> Output | None:
        """``execute_input`` (the code and its count), or None for a silent execution."""
        content = {"code": plan.code, "execution_count": plan.execution_count}
        return self.output(request, "execute_input", content)

    def execute_ok(
        self, request: Request, plan: ExecutePlan, user_expressions: dict[str, Any]
    ) -> Outgoing:
        """The reply to an execution that succeeded."""
        return self.reply(
            request,
            {
                "status": "ok",
                "execution_count": plan.execution_count,
                "payload": [],
                "user_expressions": user_expressions,
            },
        )

    def execute_error(self, request: Request, plan: ExecutePlan, error: dict[str, Any]) -> Outgoing:
        """The reply to an execution that failed (or was interrupted: ``error`` is then
        :func:`interrupt_error`), recording the failure for ``stop_on_error``.

        Publish :meth:`error_output` first, and read every message already waiting on the
        shell socket before this call, so that the executes aborted are those the client had
        sent before the error.
        """
        self.execute_failed(plan)
        return self.reply(
            request,
            {
                "status": "error",
                **error,
                "execution_count": plan.execution_count,
                "user_expressions": {},
                "payload": [],
            },
        )

    def error_output(self, request: Request, error: dict[str, Any]) -> Output | None:
        """The ``error`` output of a failed execution (None for a silent one)."""
        return self.output(request, "error", error)

    def bad_execute_reply(self, request: Request, problem: RemoteProtocolError) -> Outgoing:
        """The reply to an ``execute_request`` whose content :meth:`begin_execute` refused:
        an error, nothing run, the count unchanged."""
        return self.reply(
            request,
            {
                "status": "error",
                "ename": "ProtocolError",
                "evalue": str(problem),
                "traceback": [],
                "execution_count": self.execution_count_of(self.subshell_id(request)),
            },
        )

    def execute_failed(self, plan: ExecutePlan) -> None:
        """Record a failed execution: abort the executes already received in its subshell, if
        the rules say so.

        :meth:`execute_error` calls it. The driver should first read every message already
        waiting on its sockets, so that "already received" means "already sent by the client".
        """
        if plan.stop_on_error and not plan.silent:
            state = self._state(plan.subshell_id)
            if state is not None:
                state.abort_through_seq = self._abort_max = self._seq

    @staticmethod
    def expects_reply(request: Request) -> bool:
        """Whether ``request`` gets a reply (comm messages do not)."""
        return request.msg_type in CONTROL_REQUESTS

    def awaits_reply(self, request: Request) -> bool:
        """Whether ``request`` expects a reply and has not had it yet."""
        running = self._running.get(request.seq)
        return running is not None and not running.replied and self.expects_reply(request)

    def should_abort(self, request: Request) -> bool:
        """Whether this request is an execute that a failed execution of its subshell
        aborted."""
        if request.seq > self._abort_max or request.msg_type != "execute_request":
            return False
        state = self._state(self.subshell_id(request))
        return state is not None and request.seq <= state.abort_through_seq

    # -- kernel subshells (JEP 91) --------------------------------------------------------

    def subshell_id(self, request: Request) -> str | None:
        """The subshell ``request`` is for: its header's ``subshell_id`` on shell, for a
        kernel that claims subshells; None (the main shell) otherwise.

        Control requests belong to no subshell: interrupt and shutdown act on the whole
        kernel (JEP 91). The id may name no subshell: :meth:`knows_subshell` says, and
        :meth:`unknown_subshell_reply` answers such a request.
        """
        if self.subshells and request.channel is Channel.SHELL:
            return request.message.header.subshell_id
        return None

    def knows_subshell(self, subshell_id: str) -> bool:
        """Whether ``subshell_id`` names a subshell that exists (created, not deleted)."""
        return subshell_id in self._subshells

    @property
    def subshell_ids(self) -> list[str]:
        """The subshells that exist, oldest first (the main shell is not one of them)."""
        return list(self._subshells)

    def _state(self, subshell_id: str | None) -> _Subshell | None:
        """What is kept for a subshell (None: the main shell), deleted lately or not."""
        if subshell_id is None:
            return self._main
        state = self._subshells.get(subshell_id)
        return self._deleted.get(subshell_id) if state is None else state

    def create_subshell(self, request: Request, subshell_id: str) -> Outgoing:
        """Create the subshell ``subshell_id`` (new to this kernel: the driver draws it) for a
        ``create_subshell_request``, and build its reply: ``{"subshell_id": ...}``, or the
        error of a kernel that does not claim subshells (nothing is created then).

        Raises:
            LocalProtocolError: ``subshell_id`` exists already.
        """
        if not self.subshells:
            return self._error_reply(request, "SubshellsNotSupported", NO_SUBSHELLS)
        if subshell_id in self._subshells:
            raise LocalProtocolError(f"subshell {subshell_id!r} exists already")
        self._subshells[subshell_id] = _Subshell()
        return self.reply(request, {"status": "ok", "subshell_id": subshell_id})

    def delete_subshell(self, request: Request) -> tuple[Outgoing, str | None]:
        """Delete the subshell a ``delete_subshell_request`` names: its reply, and the id
        deleted (None when the request was refused: no such subshell, no ``subshell_id``, or
        a kernel that does not claim subshells)."""
        if not self.subshells:
            return self._error_reply(request, "SubshellsNotSupported", NO_SUBSHELLS), None
        subshell_id = request.message.content.get("subshell_id")
        if not isinstance(subshell_id, str):
            why = "delete_subshell_request.subshell_id must be a string"
            return self._error_reply(request, "ProtocolError", why), None
        state = self._subshells.pop(subshell_id, None)
        if state is None:
            why = f"unknown subshell_id {subshell_id!r}"
            return self._error_reply(request, UNKNOWN_SUBSHELL, why), None
        # Its queued requests still run: they keep counting, and stop_on_error aborting.
        deleted = self._deleted
        deleted[subshell_id] = state
        if len(deleted) > DELETED_REMEMBERED:
            deleted.popitem(last=False)
        return self.reply(request, {"status": "ok"}), subshell_id

    def list_subshells(self, request: Request) -> Outgoing:
        """The reply to ``list_subshell_request``: ``{"subshell_id": [...]}``, the subshells
        that exist, oldest first, without the main shell."""
        if not self.subshells:
            return self._error_reply(request, "SubshellsNotSupported", NO_SUBSHELLS)
        return self.reply(request, {"status": "ok", "subshell_id": list(self._subshells)})

    def unknown_subshell_reply(self, request: Request) -> Outgoing:
        """The error reply to a shell request for a subshell that does not exist: nothing of
        it runs (JEP 91: "use of a subshell_id that is not recognised will raise an
        error")."""
        why = f"unknown subshell_id {request.message.header.subshell_id!r}"
        return self._error_reply(request, UNKNOWN_SUBSHELL, why)

    def _error_reply(self, request: Request, ename: str, evalue: str) -> Outgoing:
        content: dict[str, Any] = {
            "status": "error",
            "ename": ename,
            "evalue": evalue,
            "traceback": [],
        }
        if request.msg_type == "execute_request":
            content["execution_count"] = self.execution_count_of(self.subshell_id(request))
        return self.reply(request, content)

    # -- building messages ----------------------------------------------------------------

    def _message(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None,
        identities: tuple[bytes, ...] = (),
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> tuple[bytes, ...]:
        self._counter += 1
        header = {
            # Not through _last_msg_id: one call less for every message sent.
            "msg_id": f"{self.session_id}_{self._counter}",
            "msg_type": msg_type,
            "session": self.session_id,
            "username": self.username,
            "date": self._clock(),
            "version": PROTOCOL_VERSION,
        }
        return tuple(
            self.session.pack_frames(
                header,
                content,
                parent.header if parent is not None else None,
                metadata,
                identities=identities,
                buffers=buffers,
            )
        )

    def _last_msg_id(self) -> str:
        """The id of the message built last (ids count up within this kernel's session)."""
        return f"{self.session_id}_{self._counter}"

    def reply(
        self, request: Request, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> Outgoing:
        """The reply to ``request``, routed back to the client that sent it.

        Raises:
            LocalProtocolError: ``request`` gets no reply (a comm message), has been
                replied to, or is not between its busy and its idle.
        """
        reply_type = CONTROL_REQUESTS.get(request.msg_type)
        if reply_type is None:
            raise LocalProtocolError(f"{request.msg_type} gets no reply")
        running = self._running.get(request.seq)
        if running is None:
            raise LocalProtocolError(f"reply {self._why_not_running(request)}")
        if running.replied:
            raise LocalProtocolError(f"a second reply to {_describe(request)}")
        running.replied = True
        msg = request.message
        return Outgoing(
            request.channel,
            self._message(reply_type, content, msg, msg.identities, metadata),
        )

    def abort_reply(self, request: Request) -> Outgoing:
        """The reply to an execute request that ``stop_on_error`` aborted."""
        return self.reply(
            request,
            {
                "status": "aborted",
                "execution_count": self.execution_count_of(self.subshell_id(request)),
            },
            {"status": "aborted"},
        )

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: Message | None,
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Outgoing:
        """An IOPub message (status, outputs, comm traffic) with ``parent`` as its parent."""
        topic = f"kernel.{self.session_id}.{msg_type}".encode()
        return Outgoing(
            Channel.IOPUB, self._message(msg_type, content, parent, (topic,), metadata, buffers)
        )

    def publish_output(self, output: Output) -> Outgoing:
        """The frames of a queued output (see :meth:`output`)."""
        # What publish does, without its keyword call: this runs for every output sent.
        msg_type, content, parent, metadata, buffers = output
        topic = f"kernel.{self.session_id}.{msg_type}".encode()
        return Outgoing(
            Channel.IOPUB, self._message(msg_type, content, parent, (topic,), metadata, buffers)
        )

    def debug_event(self, content: dict[str, Any], parent: Message | None) -> Output:
        """A ``debug_event`` (its content one DAP event, see :func:`kernelsdk._dap.event`).

        Not a request's output: the debugger sends events whenever the debuggee stops,
        continues or ends, so it is never suppressed nor refused after its parent's idle
        (ipykernel gives it the last request it handled as parent; so does kernelsdk).
        """
        return Output("debug_event", content, parent)

    def status(self, state: str, parent: Message | None) -> Outgoing:
        """``status`` with ``execution_state`` busy, idle or starting, built at once and
        outside the lifecycle checks (:meth:`begin` and :meth:`end` are for requests)."""
        return self.publish("status", {"execution_state": state}, parent)

    def welcome(self, subscription: Subscription) -> Outgoing:
        """``iopub_welcome`` for a new subscriber: no parent, topic frame = its subscription."""
        identities = (subscription.topic,) if subscription.topic else ()
        return Outgoing(
            Channel.IOPUB,
            self._message(
                "iopub_welcome", {"subscription": subscription.topic.decode()}, None, identities
            ),
        )

    def input_request(self, parent: Message, prompt: str, password: bool) -> Outgoing:
        """``input_request`` on stdin, routed with the *shell* request's identities; its
        ``msg_id`` is set, to match the ``input_reply``."""
        frames = self._message(
            "input_request",
            {"prompt": prompt, "password": password},
            parent,
            parent.identities,
        )
        return Outgoing(Channel.STDIN, frames, msg_id=self._last_msg_id())


def _describe(request: Request) -> str:
    return f"{request.msg_type} {request.message.msg_id!r} (seq {request.seq})"
