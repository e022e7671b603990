"""The request lifecycle in KernelProtocol, driven directly: legal sequences give exactly the
expected messages, and a runtime that breaks the lifecycle gets LocalProtocolError at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from kernelsdk import LocalProtocolError, RemoteProtocolError
from kernelsdk._events import Output
from kernelsdk._protocol import interrupt_error
from kernelsdk.protocol import (
    Channel,
    ClientProtocol,
    KernelProtocol,
    Message,
    Outgoing,
    Request,
    Session,
)

KEY = b"lifecycle-key"
PEER = (b"peer",)


class Driver:
    """A kernel protocol fed by a client protocol, decoding what the kernel builds."""

    def __init__(self) -> None:
        clock = lambda: "2026-01-01T00:00:00Z"  # noqa: E731
        self.kp = KernelProtocol(Session(KEY), session_id="kernel", clock=clock)
        self.client = ClientProtocol(
            Session(KEY), session_id="client", clock=clock, identities=PEER
        )
        self._reader = Session(KEY)

    def request(
        self, msg_type: str, content: dict[str, Any] | None = None, channel: Channel = Channel.SHELL
    ) -> Request:
        out = self.client.request(channel, msg_type, content, track=False)
        req = self.kp.receive(channel, out.frames)
        assert isinstance(req, Request), req
        return req

    def execute(self, code: str = "x", **content: Any) -> Request:
        return self.request("execute_request", {"code": code, **content})

    def decode(self, items: Sequence[Output | Outgoing | None]) -> list[tuple[str, Any]]:
        """(msg_type, what matters of the content) of each message, None left out."""
        decoded = []
        for item in items:
            if item is None:
                continue
            out = self.kp.publish_output(item) if isinstance(item, Output) else item
            msg = self._reader.deserialize(list(out.frames))
            c = msg.content
            summary = c.get("execution_state") or c.get("status") or c.get("name") or c.get("code")
            decoded.append((msg.msg_type, summary))
        return decoded


@pytest.fixture
def d() -> Driver:
    return Driver()


# -- legal sequences ---------------------------------------------------------------------------


def test_a_request_is_busy_reply_idle(d: Driver) -> None:
    req = d.request("kernel_info_request")
    items = [d.kp.begin(req), d.kp.reply(req, {"status": "ok"}), d.kp.end(req)]
    assert d.decode(items) == [
        ("status", "busy"),
        ("kernel_info_reply", "ok"),
        ("status", "idle"),
    ]
    assert all(isinstance(i, Output) and i.parent is req.message for i in (items[0], items[2]))


def test_an_execution_that_succeeds(d: Driver) -> None:
    req = d.execute("print")
    busy = d.kp.begin(req)
    plan = d.kp.begin_execute(req)
    items = [
        busy,
        d.kp.execute_input(req, plan),
        d.kp.output(req, "stream", {"name": "stdout", "text": "x"}),
        d.kp.execute_ok(req, plan, {}),
        d.kp.end(req),
    ]
    assert d.decode(items) == [
        ("status", "busy"),
        ("execute_input", "print"),
        ("stream", "stdout"),
        ("execute_reply", "ok"),
        ("status", "idle"),
    ]
    assert plan.execution_count == d.kp.execution_count == 1


def test_an_execution_that_fails_aborts_the_executes_already_received(d: Driver) -> None:
    failing, queued = d.execute("fail"), d.execute("next")
    busy = d.kp.begin(failing)
    plan = d.kp.begin_execute(failing)
    error = {"ename": "E", "evalue": "v", "traceback": ["E: v"]}
    items = [
        busy,
        d.kp.execute_input(failing, plan),
        d.kp.error_output(failing, error),
        d.kp.execute_error(failing, plan, error),
        d.kp.end(failing),
        d.kp.begin(queued),
    ]
    assert d.kp.should_abort(queued)
    items += [d.kp.abort_reply(queued), d.kp.end(queued)]
    assert d.decode(items) == [
        ("status", "busy"),
        ("execute_input", "fail"),
        ("error", None),
        ("execute_reply", "error"),
        ("status", "idle"),
        ("status", "busy"),
        ("execute_reply", "aborted"),
        ("status", "idle"),
    ]


def test_an_interrupted_execution(d: Driver) -> None:
    req = d.execute()
    d.kp.begin(req)
    plan = d.kp.begin_execute(req)
    reply = d._reader.deserialize(list(d.kp.execute_error(req, plan, interrupt_error()).frames))
    assert reply.content == {
        "status": "error",
        **interrupt_error(),
        "execution_count": 1,
        "user_expressions": {},
        "payload": [],
    }
    assert interrupt_error() is not interrupt_error()  # each caller may change its own


def test_bad_execute_content_is_an_error_reply_and_counts_nothing(d: Driver) -> None:
    req = d.request("execute_request", {"code": 3})
    d.kp.begin(req)
    with pytest.raises(RemoteProtocolError) as problem:
        d.kp.begin_execute(req)
    reply = d._reader.deserialize(list(d.kp.bad_execute_reply(req, problem.value).frames))
    assert reply.content["status"] == "error"
    assert reply.content["ename"] == "ProtocolError"
    assert reply.content["execution_count"] == d.kp.execution_count == 0


def test_silent_suppresses_everything_but_busy_idle_reply_and_comms(d: Driver) -> None:
    req = d.execute("quiet", silent=True)
    busy = d.kp.begin(req)
    plan = d.kp.begin_execute(req)
    assert not plan.store_history  # nothing reaches the history
    error = {"ename": "E", "evalue": "", "traceback": []}
    assert d.kp.execute_input(req, plan) is None
    assert d.kp.output(req, "stream", {"name": "stdout", "text": "x"}) is None
    assert d.kp.output(req, "execute_result", {"data": {}}) is None
    assert d.kp.error_output(req, error) is None
    comm = d.kp.output(req, "comm_msg", {"comm_id": "c", "data": {}})
    items = [busy, comm, d.kp.execute_error(req, plan, error), d.kp.end(req)]
    assert d.decode(items) == [
        ("status", "busy"),
        ("comm_msg", None),
        ("execute_reply", "error"),
        ("status", "idle"),
    ]
    assert not d.kp.should_abort(d.execute())  # a silent failure aborts nothing


def test_comm_messages_outside_busy_idle_and_after_idle(d: Driver) -> None:
    running = d.execute()
    d.kp.begin(running)
    comm = d.request("comm_msg", {"comm_id": "c", "data": {}})
    # Handled during the execution, without busy/idle: its traffic has it as parent.
    out = d.kp.output(comm, "comm_msg", {"comm_id": "c", "data": {}})
    assert out is not None and out.parent is comm.message
    d.kp.end(running)
    # A widget's background task keeps the parent of the cell that started it.
    late = d.kp.output(running, "comm_msg", {"comm_id": "c", "data": {}})
    assert late is not None and late.parent is running.message
    assert d.kp.output(None, "comm_close", {"comm_id": "c", "data": {}}) is not None


def test_a_reused_msg_id_is_not_a_local_error(d: Driver) -> None:
    out = d.client.request(Channel.SHELL, "kernel_info_request", track=False)
    first = d.kp.receive(Channel.SHELL, out.frames)
    header = attrs.evolve(d.client.header("kernel_info_request"), msg_id=out.msg_id)
    again = d.client.unchecked_message(Channel.CONTROL, header, {"again": True})  # not a replay
    second = d.kp.receive(Channel.CONTROL, again.frames)
    assert isinstance(first, Request) and isinstance(second, Request)
    assert first.message.msg_id == second.message.msg_id
    for req in (first, second):
        d.kp.begin(req)
    for req in (first, second):
        d.kp.reply(req, {"status": "ok"})
        d.kp.end(req)


# -- illegal sequences -------------------------------------------------------------------------


def test_a_comm_message_gets_no_reply(d: Driver) -> None:
    comm = d.request("comm_open", {"comm_id": "c", "target_name": "t", "data": {}})
    d.kp.begin(comm)
    with pytest.raises(LocalProtocolError, match="gets no reply"):
        d.kp.reply(comm, {"status": "ok"})
    assert not d.kp.awaits_reply(comm)


def test_two_replies(d: Driver) -> None:
    req = d.execute()
    d.kp.begin(req)
    plan = d.kp.begin_execute(req)
    d.kp.execute_ok(req, plan, {})
    assert not d.kp.awaits_reply(req)
    with pytest.raises(LocalProtocolError, match="second reply"):
        d.kp.execute_error(req, plan, interrupt_error())
    with pytest.raises(LocalProtocolError, match="second reply"):
        d.kp.abort_reply(req)


def test_a_reply_before_busy(d: Driver) -> None:
    req = d.request("kernel_info_request")
    with pytest.raises(LocalProtocolError, match="before busy"):
        d.kp.reply(req, {"status": "ok"})


def test_a_reply_after_idle(d: Driver) -> None:
    req = d.request("kernel_info_request")
    d.kp.begin(req)
    d.kp.end(req)
    with pytest.raises(LocalProtocolError, match="after idle"):
        d.kp.reply(req, {"status": "ok"})


def test_output_after_idle(d: Driver) -> None:
    req = d.execute()
    d.kp.begin(req)
    d.kp.begin_execute(req)
    d.kp.end(req)
    with pytest.raises(LocalProtocolError, match="after its idle"):
        d.kp.output(req, "stream", {"name": "stdout", "text": "late"})
    with pytest.raises(LocalProtocolError, match="after its idle"):
        d.kp.error_output(req, interrupt_error())


def test_idle_without_busy_and_twice(d: Driver) -> None:
    req = d.request("kernel_info_request")
    with pytest.raises(LocalProtocolError, match="idle before busy"):
        d.kp.end(req)
    d.kp.begin(req)
    d.kp.end(req)
    with pytest.raises(LocalProtocolError, match="idle after idle"):
        d.kp.end(req)


def test_busy_twice(d: Driver) -> None:
    req = d.request("kernel_info_request")
    d.kp.begin(req)
    with pytest.raises(LocalProtocolError, match="busy twice"):
        d.kp.begin(req)
    d.kp.end(req)
    with pytest.raises(LocalProtocolError, match="busy twice"):
        d.kp.begin(req)


def test_ended_requests_are_remembered_within_a_bound(d: Driver) -> None:
    from kernelsdk._protocol import ENDED_REMEMBERED

    oldest = d.request("kernel_info_request")
    d.kp.begin(oldest)
    d.kp.end(oldest)
    for _ in range(ENDED_REMEMBERED):
        req = d.request("kernel_info_request")
        d.kp.begin(req)
        d.kp.end(req)
    # Forgotten: a request this old is treated as one never bracketed (no error, no memory).
    assert d.kp.output(oldest, "stream", {"name": "stdout", "text": ""}) is not None
    with pytest.raises(LocalProtocolError):
        d.kp.output(req, "stream", {"name": "stdout", "text": ""})


def test_parents_are_the_request_message(d: Driver) -> None:
    req = d.request("kernel_info_request")
    busy = d.kp.begin(req)
    assert isinstance(busy.parent, Message) and busy.parent is req.message
