"""The built-in checks, by area. Importing this package registers them in ``CHECKS``.

* ``shell``: kernel_info, protocol_version, execution_count, silent, user_expressions,
  completion.
* ``iopub``: ordering, streams, display, iopub_welcome.
* ``lifecycle``: heartbeat, control_during_execution, interrupt, sigint_idle, shutdown,
  restart, handshake, input_interrupt, shutdown_input, parent_death.
* ``stdin_comms``: stdin, comms, comm_status, stop_on_error.
* ``robustness``: security, robustness (with the fuzzer), schema.
* ``transport``: encryption (CurveZMQ, JEP 145).
* ``subshells``: subshells, subshell_parents, subshell_unknown, subshell_order,
  subshell_concurrency, subshell_interrupt (JEP 91; skipped unless the kernel claims them).
* ``debugger``: debugger_info, debugger_session, debugger_breakpoint (the debug protocol as
  JupyterLab uses it; skipped unless the kernel claims a debugger).
* ``_helpers``: what several areas share (``expect``, ``status_ok``, ``bracket``, ...).

Each check returns a pass message, or raises ``Skip`` / ``Fail`` with a precise reason. Spec
references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.

``ORDER`` is the order the checks run in (and are listed in, by ``--help`` and the docs): cheap
and basic first, the ones that kill or restart a kernel later; the runner puts ``schema`` last
whatever its place here. A new check goes into its area's module and into ``ORDER``.
"""

from __future__ import annotations

from .._registry import CHECKS
from . import debugger, iopub, lifecycle, robustness, shell, stdin_comms, subshells, transport

ORDER = (
    "kernel_info",
    "protocol_version",
    "ordering",
    "execution_count",
    "silent",
    "user_expressions",
    "security",
    "heartbeat",
    "control_during_execution",
    "interrupt",
    "sigint_idle",
    "shutdown",
    "restart",
    "stdin",
    "comms",
    "comm_status",
    "streams",
    "display",
    "stop_on_error",
    "subshells",
    "subshell_parents",
    "subshell_unknown",
    "subshell_order",
    "subshell_concurrency",
    "subshell_interrupt",
    "debugger_info",
    "debugger_session",
    "debugger_breakpoint",
    "robustness",
    "iopub_welcome",
    "handshake",
    "encryption",
    "completion",
    "schema",
    "input_interrupt",
    "shutdown_input",
    "parent_death",
)

_MODULES = (debugger, iopub, lifecycle, robustness, shell, stdin_comms, subshells, transport)


def _arrange() -> None:
    """Put the built-in checks in ``ORDER``, after any check registered before this import."""
    names = {m.__name__ for m in _MODULES}
    builtin = {name for name, info in CHECKS.items() if info.fn.__module__ in names}
    if builtin != set(ORDER):
        raise RuntimeError(f"checks missing from ORDER or not registered: {builtin ^ set(ORDER)}")
    for name in ORDER:
        CHECKS[name] = CHECKS.pop(name)


_arrange()
