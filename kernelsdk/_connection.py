"""Connection files: where a kernel binds its five sockets and how it signs messages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final, Literal, final

import attrs

from ._exceptions import ConfigError

PORT_NAMES: Final = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
Transport = Literal["tcp", "ipc"]


def _port(value: object) -> int:
    # JEP 106 allows ports as strings; jupyter_client writes ints.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"a port must be an integer, not {value!r}")
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"a port must be an integer, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range")
    return port


def _check_str(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{attribute.name} must be a string, not {value!r}")


#: The alphabet of Z85 (ZeroMQ RFC 32), in which CurveZMQ keys are written: a 32-byte key is
#: 40 characters.
Z85_ALPHABET: Final = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
CURVE_KEY_LENGTH: Final = 40


def _check_curve_key(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    # Checked here, not left to libzmq: a bad key there is an EINVAL from setsockopt that
    # names neither the field nor the file.
    if not isinstance(value, str):
        raise ConfigError(f"{attribute.name} must be a string, not {type(value).__name__}")
    if value and (len(value) != CURVE_KEY_LENGTH or not Z85_ALPHABET.issuperset(value)):
        # The value is not shown: it may be a secret key with a typo.
        raise ConfigError(
            f"{attribute.name} is not a CurveZMQ key: {CURVE_KEY_LENGTH} Z85 characters "
            f"expected, got {len(value)} characters"
            + ("" if Z85_ALPHABET.issuperset(value) else " with some outside Z85")
        )


@final
@attrs.frozen
class ConnectionInfo:
    """The contents of a connection file (``kernel-<id>.json``).

    A port of 0 means "let the kernel choose"; the runtime binds, then writes the chosen ports
    back with :meth:`with_ports` and :meth:`write`. For ``ipc``, ``ip`` is a path prefix and a
    port N is the suffix of ``ipc://{ip}-{N}``.

    A *registration file* (JEP 66) has ``registration_ip`` and ``registration_port`` instead
    of ports: the kernel chooses its ports and reports them there (:attr:`registers`). Its
    sockets bind on ``ip``, or on ``registration_ip`` when the file has no ``ip``.

    With ``curve_publickey`` and ``curve_secretkey`` (JEP 145, as jupyter_client 8.9+ writes
    them: the kernel's CurveZMQ key pair in Z85) every socket is a CURVE server:
    :attr:`encrypted`.
    """

    transport: Transport = attrs.field(default="tcp")
    ip: str = attrs.field(default="127.0.0.1", validator=_check_str)
    shell_port: int = attrs.field(default=0, converter=_port)
    iopub_port: int = attrs.field(default=0, converter=_port)
    stdin_port: int = attrs.field(default=0, converter=_port)
    control_port: int = attrs.field(default=0, converter=_port)
    hb_port: int = attrs.field(default=0, converter=_port)
    key: str = attrs.field(default="", validator=_check_str)
    signature_scheme: str = attrs.field(default="hmac-sha256", validator=_check_str)
    kernel_name: str = attrs.field(default="", validator=_check_str)
    kernel_id: str = attrs.field(default="", validator=_check_str)
    registration_ip: str = attrs.field(default="", validator=_check_str)
    registration_port: int = attrs.field(default=0, converter=_port)
    curve_publickey: str = attrs.field(default="", validator=_check_curve_key)
    # Left out of the repr, like a password: reprs end up in logs.
    curve_secretkey: str = attrs.field(default="", validator=_check_curve_key, repr=False)

    @transport.validator
    def _check_transport(self, _attr: attrs.Attribute[str], value: str) -> None:
        if value not in ("tcp", "ipc"):
            raise ConfigError(f"transport must be 'tcp' or 'ipc', not {value!r}")

    def __attrs_post_init__(self) -> None:
        if bool(self.curve_publickey) != bool(self.curve_secretkey):
            given, missing = (
                ("curve_publickey", "curve_secretkey")
                if self.curve_publickey
                else ("curve_secretkey", "curve_publickey")
            )
            raise ConfigError(
                f"the connection file has {given} but no {missing}: CurveZMQ needs both"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConnectionInfo:
        """Build from a decoded connection file; unknown keys are ignored.

        Raises:
            ConfigError: a field has an unusable value.
        """
        if not isinstance(d, dict):
            raise ConfigError("a connection file must hold a JSON object")
        names = {a.name for a in attrs.fields(cls)}
        fields = {k: v for k, v in d.items() if k in names}
        if not fields.get("ip") and fields.get("registration_ip"):
            fields["ip"] = fields["registration_ip"]
        if fields.get("transport", "tcp") == "ipc" and not fields.get("ip"):
            fields["ip"] = "kernel-ipc"
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ConfigError(f"bad connection file: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ConnectionInfo:
        """Read a connection file.

        Raises:
            ConfigError: the file is missing, unreadable or not a valid connection file.
        """
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"connection file not found: {path}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read connection file {path}: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The fields of a connection file: the registration fields only when set."""
        d = attrs.asdict(self)
        # Absent rather than empty, as jupyter_client writes them: it compares connection
        # files key by key, and a missing key is not equal to "".
        for name in (
            "kernel_id",
            "registration_ip",
            "registration_port",
            "curve_publickey",
            "curve_secretkey",
        ):
            if not d[name]:
                del d[name]
        return d

    @property
    def encrypted(self) -> bool:
        """Whether the sockets use CurveZMQ (the file holds a key pair, JEP 145)."""
        return bool(self.curve_secretkey)

    @property
    def plaintext_on_network(self) -> bool:
        """Whether anyone who can reach the ports can read the traffic: tcp without CurveZMQ.

        (ipc is guarded by the socket file's permissions; the HMAC key only signs.)
        """
        return self.transport == "tcp" and not self.encrypted

    @property
    def registers(self) -> bool:
        """Whether this is a registration file: the kernel must report its ports (JEP 66)."""
        return bool(self.registration_ip)

    @property
    def registration_endpoint(self) -> str:
        """Where the kernel reports its ports (:attr:`registers` only)."""
        if self.transport == "ipc":
            return f"ipc://{self.registration_ip}-{self.registration_port}"
        return f"tcp://{self.registration_ip}:{self.registration_port}"

    def connection_file(self) -> ConnectionInfo:
        """The classic connection file for other clients, once the kernel has registered."""
        return attrs.evolve(self, registration_ip="", registration_port=0)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file readable by its owner only (it holds the signing key)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # The mode given to open() applies only to a new file; a stale temp file left by a
        # crash keeps its old mode, so set it on the descriptor before the key is written.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)

    def endpoint(self, port_name: str) -> str:
        """The ZeroMQ endpoint of one socket, e.g. ``endpoint("shell_port")``."""
        port = getattr(self, port_name)
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        return f"tcp://{self.ip}:{port}"

    def with_ports(self, **ports: int) -> ConnectionInfo:
        return attrs.evolve(self, **ports)  # type: ignore[arg-type]

    @property
    def ports(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PORT_NAMES}
