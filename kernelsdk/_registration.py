"""The startup handshake (JEP 66): the kernel tells its client which ports it bound.

Why: with a classic connection file the client picks five free ports, closes them and hopes
nothing takes them before the kernel binds them. With a *registration file* the client only
says where it listens (``registration_ip``, ``registration_port``) and the kernel binds ports
of its own choosing, then reports them:

* kernel -> client, from a DEALER: ``[<IDS|MSG>, signature, content]`` where content is the
  JSON object ``{"kernel_id", "shell_port", "iopub_port", "stdin_port", "control_port",
  "hb_port"}`` (ports as strings, as kernels.rst shows them) and the signature is the HMAC of
  the content frame alone (it is not a full Jupyter message: no header, parent or metadata);
* client -> kernel: ``[*identities, <IDS|MSG>, signature, content]``, the acknowledgement,
  signed the same way; its content is not specified.

Both ends are here (a client, or the conformance suite, uses the registrar's half). Pure
computation: no sockets, no clock.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Final, final

import attrs

from ._connection import PORT_NAMES
from ._exceptions import RemoteProtocolError
from ._session import DELIMITER, Session

#: How long a kernel waits for the acknowledgement before giving up (xeus waits 5 s too).
ACK_TIMEOUT: Final = 5.0


def _signed(session: Session, content: bytes) -> list[bytes]:
    return [DELIMITER, session.sign([content]), content]


def _open(session: Session, frames: Sequence[bytes], what: str) -> tuple[list[bytes], bytes]:
    """(identities, content) of a signed ``[*ids, <IDS|MSG>, signature, content]``."""
    frames = [bytes(f) for f in frames]
    try:
        split = frames.index(DELIMITER)
    except ValueError:
        raise RemoteProtocolError(f"{what}: no <IDS|MSG> delimiter frame") from None
    body = frames[split + 1 :]
    if len(body) != 2:
        raise RemoteProtocolError(f"{what}: {len(body)} frames after <IDS|MSG>, 2 expected")
    signature, content = body
    if session.signs and not hmac.compare_digest(signature, session.sign([content])):
        raise RemoteProtocolError(f"{what}: invalid signature")
    return frames[:split], content


@final
@attrs.frozen
class Registration:
    """What a kernel reports to its registrar: its id and the five ports it bound."""

    kernel_id: str
    ports: Mapping[str, int]

    def to_frames(self, session: Session) -> list[bytes]:
        """The kernel's registration message, to send from a DEALER."""
        content = {"kernel_id": self.kernel_id}
        content.update({name: str(self.ports[name]) for name in PORT_NAMES})
        return _signed(session, json.dumps(content).encode())

    @classmethod
    def from_frames(
        cls, session: Session, frames: Sequence[bytes]
    ) -> tuple[Registration, list[bytes]]:
        """The registrar's side: a kernel's registration and its identities (for the ack).

        Raises:
            RemoteProtocolError: malformed, badly signed, or missing a field.
        """
        identities, content = _open(session, frames, "registration")
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise RemoteProtocolError(f"registration: undecodable content: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("kernel_id"), str):
            raise RemoteProtocolError("registration: content needs a string kernel_id")
        ports = {}
        for name in PORT_NAMES:
            value = data.get(name)
            # Strings in kernels.rst's example, integers from some kernels: accept both.
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise RemoteProtocolError(f"registration: {name} is not a port: {value!r}")
            ports[name] = value
        return cls(data["kernel_id"], ports), identities

    @staticmethod
    def ack_frames(
        session: Session, identities: Sequence[bytes], content: bytes = b"{}"
    ) -> list[bytes]:
        """The registrar's acknowledgement of a registration that came from ``identities``."""
        return [*identities, *_signed(session, content)]

    @staticmethod
    def check_ack(session: Session, frames: Sequence[bytes]) -> None:
        """The kernel's side: accept the registrar's acknowledgement.

        Raises:
            RemoteProtocolError: malformed or badly signed.
        """
        _open(session, frames, "registration acknowledgement")
