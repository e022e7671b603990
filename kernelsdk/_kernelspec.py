"""The kernelspec model: what ``kernel.json`` says about how to launch a kernel."""

from __future__ import annotations

from typing import Any, Literal, final

import attrs

from ._exceptions import ConfigError
from ._version import PROTOCOL_VERSION

InterruptMode = Literal["signal", "message"]


@final
@attrs.frozen
class KernelSpec:
    """One ``kernel.json``.

    ``kernel_protocol_version`` is always the protocol version the SDK speaks, the same one
    the kernel puts in its headers and ``kernel_info_reply``.
    """

    argv: list[str]
    display_name: str
    language: str
    interrupt_mode: InterruptMode = "signal"
    env: dict[str, str] = attrs.field(factory=dict)
    metadata: dict[str, Any] = attrs.field(factory=dict)
    kernel_protocol_version: str = PROTOCOL_VERSION

    def __attrs_post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise ConfigError("kernelspec argv must be a non-empty list of strings")
        if self.interrupt_mode not in ("signal", "message"):
            raise ConfigError(
                f"interrupt_mode must be 'signal' or 'message', not {self.interrupt_mode!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "argv": list(self.argv),
            "display_name": self.display_name,
            "language": self.language,
            "interrupt_mode": self.interrupt_mode,
            "kernel_protocol_version": self.kernel_protocol_version,
        }
        if self.env:
            d["env"] = dict(self.env)
        if self.metadata:
            d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelSpec:
        try:
            return cls(
                argv=list(d["argv"]),
                display_name=str(d["display_name"]),
                language=str(d["language"]),
                interrupt_mode=d.get("interrupt_mode", "signal"),
                env=dict(d.get("env", {})),
                metadata=dict(d.get("metadata", {})),
                kernel_protocol_version=str(d.get("kernel_protocol_version", PROTOCOL_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid kernel.json: {exc}") from None
