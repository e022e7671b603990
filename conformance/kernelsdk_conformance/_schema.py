"""Hand-written validators for protocol 5.5 messages (messaging.rst, "Messages on the ...").

``validate(msg)`` returns a list of problems (empty when the message is valid). Extra fields
are always allowed (the spec: "both sides MUST tolerate ... extra fields").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._client import Msg

DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?$")
VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
MIME = re.compile(r"^[\w\-+.]+/[\w\-+.]+$")
HEADER_FIELDS = ("msg_id", "session", "username", "date", "msg_type", "version")

Check = Callable[[dict[str, Any]], list[str]]


def _fields(content: dict[str, Any], **types: Any) -> list[str]:
    problems = []
    for name, typ in types.items():
        if name not in content:
            problems.append(f"missing {name!r}")
        elif typ is not None and not isinstance(content[name], typ):
            problems.append(f"{name!r} is {type(content[name]).__name__}, not {_tname(typ)}")
        elif typ is int and isinstance(content[name], bool):
            problems.append(f"{name!r} is a bool, not an int")
    return problems


def _tname(typ: Any) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return str(typ.__name__)


def _mimebundle(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where} is not a dict"]
    return [f"{where} key {k!r} is not a mime type" for k in value if not MIME.match(str(k))]


def _reply(ok: Check) -> Check:
    def check(c: dict[str, Any]) -> list[str]:
        status = c.get("status")
        if status == "ok":
            return ok(c)
        if status == "error":
            problems = _fields(c, ename=str, evalue=str, traceback=list)
            tb = c.get("traceback")
            if isinstance(tb, list) and not all(isinstance(t, str) for t in tb):
                problems.append("traceback items must be strings")
            return problems
        if status == "aborted":
            return []  # deprecated in 5.1 but still sent by ipykernel: tolerated
        return [f"status {status!r} is not ok/error/aborted"]

    return check


def _execute_reply(c: dict[str, Any]) -> list[str]:
    problems = _fields(c, execution_count=int)
    if "user_expressions" in c and not isinstance(c["user_expressions"], dict):
        problems.append("'user_expressions' is not a dict")
    if "payload" in c and not isinstance(c["payload"], list):
        problems.append("'payload' is not a list")
    return problems


def _kernel_info(c: dict[str, Any]) -> list[str]:
    problems = _fields(c, protocol_version=str, implementation=str, language_info=dict, banner=str)
    if isinstance(c.get("protocol_version"), str) and not VERSION.match(c["protocol_version"]):
        problems.append(f"protocol_version {c['protocol_version']!r} is not X.Y[.Z]")
    li = c.get("language_info")
    if isinstance(li, dict):
        problems += [f"language_info: {p}" for p in _fields(li, name=str)]
        ext = li.get("file_extension")
        if ext is not None and (not isinstance(ext, str) or not ext.startswith(".")):
            problems.append(f"language_info.file_extension {ext!r} must start with '.'")
    if "supported_features" in c and not isinstance(c["supported_features"], list):
        problems.append("'supported_features' is not a list")
    if "help_links" in c and not isinstance(c["help_links"], list):
        problems.append("'help_links' is not a list")
    return problems


def _complete(c: dict[str, Any]) -> list[str]:
    problems = _fields(c, matches=list, cursor_start=int, cursor_end=int, metadata=dict)
    if isinstance(c.get("matches"), list) and not all(isinstance(m, str) for m in c["matches"]):
        problems.append("matches must be strings")
    return problems


def _is_complete(c: dict[str, Any]) -> list[str]:
    status = c.get("status")
    if status not in ("complete", "incomplete", "invalid", "unknown"):
        return [f"status {status!r} is not complete/incomplete/invalid/unknown"]
    if "indent" in c and not isinstance(c["indent"], str):
        return ["'indent' is not a string"]
    return []


def _display(c: dict[str, Any], *, needs_id: bool = False) -> list[str]:
    problems = _fields(c, data=dict, metadata=dict)
    problems += _mimebundle(c.get("data", {}), "data")
    transient = c.get("transient")
    if transient is not None and not isinstance(transient, dict):
        problems.append("'transient' is not a dict")
    if needs_id and not (
        isinstance(transient, dict) and isinstance(transient.get("display_id"), str)
    ):
        problems.append("update_display_data needs transient.display_id")
    return problems


def _status(c: dict[str, Any]) -> list[str]:
    state = c.get("execution_state")
    if state not in ("busy", "idle", "starting"):
        return [f"execution_state {state!r} is not busy/idle/starting"]
    return []


def _stream(c: dict[str, Any]) -> list[str]:
    problems = _fields(c, name=str, text=str)
    if c.get("name") not in ("stdout", "stderr", None):
        problems.append(f"stream name {c.get('name')!r} is not stdout/stderr")
    return problems


def _error(c: dict[str, Any]) -> list[str]:
    return _fields(c, ename=str, evalue=str, traceback=list)


CONTENT: dict[str, Check] = {
    "execute_reply": _reply(_execute_reply),
    "kernel_info_reply": _reply(_kernel_info),
    "complete_reply": _reply(_complete),
    "inspect_reply": _reply(lambda c: _fields(c, found=bool, data=dict, metadata=dict)),
    "history_reply": _reply(lambda c: _fields(c, history=list)),
    "is_complete_reply": _is_complete,
    "comm_info_reply": _reply(lambda c: _fields(c, comms=dict)),
    "shutdown_reply": _reply(lambda c: _fields(c, restart=bool)),
    "interrupt_reply": _reply(lambda c: []),
    "connect_reply": _reply(
        lambda c: _fields(c, shell_port=int, iopub_port=int, stdin_port=int, hb_port=int)
    ),
    "debug_reply": lambda c: [],
    "status": _status,
    "execute_input": lambda c: _fields(c, code=str, execution_count=int),
    "stream": _stream,
    "display_data": _display,
    "update_display_data": lambda c: _display(c, needs_id=True),
    "execute_result": lambda c: _fields(c, execution_count=int) + _display(c),
    "error": _error,
    "clear_output": lambda c: _fields(c, wait=bool),
    "iopub_welcome": lambda c: _fields(c, subscription=str),
    "comm_open": lambda c: _fields(c, comm_id=str, target_name=str, data=dict),
    "comm_msg": lambda c: _fields(c, comm_id=str, data=dict),
    "comm_close": lambda c: _fields(c, comm_id=str, data=dict),
    "input_request": lambda c: _fields(c, prompt=str, password=bool),
    "debug_event": lambda c: [],
    "shutdown_request": lambda c: _fields(c, restart=bool),
}

CHANNEL_OF = {
    "iopub": {
        "status",
        "execute_input",
        "stream",
        "display_data",
        "update_display_data",
        "execute_result",
        "error",
        "clear_output",
        "iopub_welcome",
        "comm_open",
        "comm_msg",
        "comm_close",
        "debug_event",
        "shutdown_reply",
    },
    "stdin": {"input_request"},
}


def validate_header(header: Any, where: str = "header") -> list[str]:
    if not isinstance(header, dict):
        return [f"{where} is not a dict"]
    problems = []
    for name in HEADER_FIELDS:
        if name not in header:
            problems.append(f"{where} lacks {name!r}")
        elif not isinstance(header[name], str):
            problems.append(f"{where}.{name} is {type(header[name]).__name__}, not str")
    date = header.get("date")
    if isinstance(date, str) and not DATE.match(date):
        problems.append(f"{where}.date {date!r} is not ISO 8601")
    version = header.get("version")
    if isinstance(version, str) and not VERSION.match(version):
        problems.append(f"{where}.version {version!r} is not X.Y")
    elif isinstance(version, str) and not version.startswith("5."):
        problems.append(f"{where}.version {version!r} is not protocol 5.x")
    return problems


def validate(msg: Msg) -> list[str]:
    """Problems with one received message (framing, header, parent, content)."""
    problems = list(msg.problems)
    problems += validate_header(msg.header)
    if not isinstance(msg.parent_header, dict):
        problems.append("parent_header is not a dict")
    elif msg.parent_header:
        problems += validate_header(msg.parent_header, "parent_header")
    if not isinstance(msg.metadata, dict):
        problems.append("metadata is not a dict")
    if not isinstance(msg.content, dict):
        problems.append("content is not a dict")
        return problems
    msg_type = msg.msg_type
    if msg_type.endswith("_reply") and msg.channel != "iopub" and not msg.parent_header:
        problems.append("a reply without parent_header")
    if msg_type == "iopub_welcome" and msg.parent_header:
        problems.append("iopub_welcome must have an empty parent_header (JEP 65)")
    validator = CONTENT.get(msg_type)
    if validator is not None:
        problems += [f"content: {p}" for p in validator(msg.content)]
    return problems
