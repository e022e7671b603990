"""Comms: long-lived, two-way channels between kernel code and frontend extensions (widgets).

A comm is opened by either side with a target name. The kernel answers a ``comm_open`` to a
target nobody registered with an immediate ``comm_close`` (spec). Comm messages are handled
even while an execution is running, so widgets stay responsive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._events import Publisher

if TYPE_CHECKING:
    from ._message import Message

log = logging.getLogger("kernelsdk.comm")

MessageHandler = Callable[["Comm", "Message"], Any]
TargetHandler = Callable[["Comm", "Message"], Any]


def _not_served(*_args: object) -> Any:
    raise RuntimeError("this kernel is not being served yet: comms cannot send")


class Comm:
    """One open comm. Use :meth:`send` and :meth:`close`; set handlers with :meth:`on_msg`."""

    def __init__(self, comm_id: str, target_name: str, manager: CommManager) -> None:
        self.comm_id = comm_id
        self.target_name = target_name
        self._manager = manager
        self._on_msg: MessageHandler | None = None
        self._on_close: MessageHandler | None = None
        self.closed = False

    def on_msg(self, handler: MessageHandler | None) -> None:
        """Call ``handler(comm, message)`` for each ``comm_msg`` (it may be async)."""
        self._on_msg = handler

    def on_close(self, handler: MessageHandler | None) -> None:
        """Call ``handler(comm, message)`` when the frontend closes the comm."""
        self._on_close = handler

    def send(
        self,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> None:
        """Send a ``comm_msg`` to the frontend."""
        if self.closed:
            raise RuntimeError(f"comm {self.comm_id} is closed")
        self._manager._publish(
            "comm_msg", {"comm_id": self.comm_id, "data": data or {}}, metadata, buffers
        )

    def close(self, data: dict[str, Any] | None = None) -> None:
        """Close the comm, telling the frontend."""
        if self.closed:
            return
        self.closed = True
        self._manager._comms.pop(self.comm_id, None)
        self._manager._publish(
            "comm_close", {"comm_id": self.comm_id, "data": data or {}}, None, ()
        )


class CommManager:
    """The comms of one kernel: registered targets and open comms."""

    def __init__(self) -> None:
        self._publish: Publisher = _not_served
        self._new_id: Callable[[], str] = lambda: _not_served("", {}, None, ())
        self._targets: dict[str, TargetHandler] = {}
        self._comms: dict[str, Comm] = {}

    def attach(self, publish: Publisher, new_id: Callable[[], str]) -> None:
        """Internal, called by the runtime that serves this kernel: from now on comms can send."""
        self._publish = publish
        self._new_id = new_id

    def register_target(self, target_name: str, handler: TargetHandler) -> None:
        """Call ``handler(comm, open_message)`` when the frontend opens a comm to this target."""
        self._targets[target_name] = handler

    def unregister_target(self, target_name: str) -> None:
        self._targets.pop(target_name, None)

    def open(
        self,
        target_name: str,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
    ) -> Comm:
        """Open a comm from the kernel to a frontend target."""
        comm = Comm(self._new_id(), target_name, self)
        self._comms[comm.comm_id] = comm
        self._publish(
            "comm_open",
            {"comm_id": comm.comm_id, "target_name": target_name, "data": data or {}},
            metadata,
            buffers,
        )
        return comm

    def get(self, comm_id: str) -> Comm | None:
        return self._comms.get(comm_id)

    def info(self, target_name: str | None = None) -> dict[str, dict[str, str]]:
        """The ``comms`` field of ``comm_info_reply``."""
        return {
            cid: {"target_name": c.target_name}
            for cid, c in self._comms.items()
            if target_name is None or c.target_name == target_name
        }

    # -- incoming messages (internal: called by the runtime) ----------------------------------

    def handle_open(self, msg: Message) -> Any:
        comm_id, target = msg.content.get("comm_id"), msg.content.get("target_name")
        if not isinstance(comm_id, str) or not isinstance(target, str):
            log.warning("comm_open without a string comm_id and target_name: dropped")
            return None
        comm = Comm(comm_id, target, self)
        handler = self._targets.get(target)
        if handler is None:
            log.info("comm_open to unknown target %r: closing comm %s", target, comm_id)
            comm.close()
            return None
        self._comms[comm_id] = comm
        return handler(comm, msg)

    def handle_msg(self, msg: Message) -> Any:
        comm = self._comms.get(str(msg.content.get("comm_id")))
        if comm is None:
            log.warning("comm_msg for unknown comm %r: dropped", msg.content.get("comm_id"))
            return None
        return comm._on_msg(comm, msg) if comm._on_msg is not None else None

    def handle_close(self, msg: Message) -> Any:
        comm = self._comms.pop(str(msg.content.get("comm_id")), None)
        if comm is None:
            return None
        comm.closed = True
        return comm._on_close(comm, msg) if comm._on_close is not None else None
