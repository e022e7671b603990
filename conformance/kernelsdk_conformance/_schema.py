"""Hand-written validators for protocol 5.5 messages (messaging.rst, "Messages on the ...").

``validate(msg)`` returns a list of problems (empty when the message is valid), each naming
the field that is wrong by its path (``content.history[0][2]``,
``content.language_info.version``). Extra fields are always allowed (the spec: "both sides
MUST tolerate ... extra fields"); unknown message types are not.
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

#: content -> problems; ``request`` is the request's content when the caller knows it
Check = Callable[[dict[str, Any], dict[str, Any] | None], list[str]]

# -- field helpers: each problem names its field by path --------------------------------------


def _tname(typ: Any) -> str:
    if isinstance(typ, tuple):
        return " or ".join(_tname(t) for t in typ)
    names = {str: "str", int: "int", bool: "bool", dict: "dict", list: "list", float: "float"}
    return names.get(typ, getattr(typ, "__name__", str(typ)))


def _vname(value: Any) -> str:
    return "null" if value is None else _tname(type(value))


def _is(value: Any, typ: Any) -> bool:
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is no number
    return isinstance(value, types)


def _typed(value: Any, typ: Any, where: str) -> list[str]:
    if _is(value, typ):
        return []
    return [f"{where} is {_vname(value)}, not {_tname(typ)}"]


def _need(c: dict[str, Any], where: str, **types: Any) -> list[str]:
    """Required fields of ``c`` and their types."""
    problems = []
    for name, typ in types.items():
        if name not in c:
            problems.append(f"{where}.{name} is missing")
        else:
            problems += _typed(c[name], typ, f"{where}.{name}")
    return problems


def _opt(c: dict[str, Any], where: str, **types: Any) -> list[str]:
    """Optional fields of ``c``: their types when present."""
    return [
        p
        for name, typ in types.items()
        if name in c
        for p in _typed(c[name], typ, f"{where}.{name}")
    ]


def _list_of(value: Any, typ: Any, where: str, *, limit: int = 3) -> list[str]:
    if not isinstance(value, list):
        return []  # the caller reported the list itself
    bad = [
        f"{where}[{i}] is {_vname(v)}, not {_tname(typ)}"
        for i, v in enumerate(value)
        if not _is(v, typ)
    ]
    return bad[:limit] + (
        [f"... and {len(bad) - limit} more in {where}"] if len(bad) > limit else []
    )


def _mimebundle(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return []  # the caller reported the type
    problems = []
    for key, data in value.items():
        if not MIME.match(str(key)):
            problems.append(f"{where} key {key!r} is not a mime type")
        elif not (str(key) == "application/json" or str(key).endswith("+json")):
            # JSON types carry any JSON value; every other representation is a string
            # (text, or base64 for binary types such as image/png).
            problems += _typed(data, str, f"{where}[{key!r}]")
    return problems


def _error_fields(c: dict[str, Any], where: str = "content") -> list[str]:
    problems = _need(c, where, ename=str, evalue=str, traceback=list)
    return problems + _list_of(c.get("traceback"), str, f"{where}.traceback")


# -- replies ----------------------------------------------------------------------------------


def _reply(ok: Check, *, error_count: bool = False) -> Check:
    """A reply: ``status`` ok (then ``ok``'s fields), error (ename, evalue, traceback) or
    aborted (deprecated in 5.1, still sent by ipykernel: tolerated)."""

    def check(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
        status = c.get("status")
        if status == "ok":
            return ok(c, request)
        if status == "error":
            problems = _error_fields(c)
            if error_count:
                problems += _opt(c, "content", execution_count=int)
            return problems
        if status in ("aborted", "abort"):  # messaging.rst spells it both ways
            return []
        if "status" not in c:
            return ["content.status is missing"]
        return [f"content.status {status!r} is not ok/error/aborted"]

    return check


def _execute_reply(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    problems = _need(c, "content", execution_count=int)
    problems += _opt(c, "content", payload=list, user_expressions=dict)
    payload = c.get("payload")
    for i, item in enumerate(payload if isinstance(payload, list) else []):
        if not isinstance(item, dict):
            problems.append(f"content.payload[{i}] is {_vname(item)}, not dict")
        else:
            problems += _need(item, f"content.payload[{i}]", source=str)
    expressions = c.get("user_expressions")
    if isinstance(expressions, dict):
        for name, value in expressions.items():
            where = f"content.user_expressions[{name!r}]"
            if not isinstance(value, dict):
                problems.append(f"{where} is {_vname(value)}, not dict")
            elif value.get("status") == "ok":
                problems += _need(value, where, data=dict, metadata=dict)
                problems += _mimebundle(value.get("data"), f"{where}.data")
            elif value.get("status") == "error":
                problems += _error_fields(value, where)
            else:
                problems.append(f"{where}.status {value.get('status')!r} is not ok/error")
    return problems


def _kernel_info(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    problems = _need(
        c,
        "content",
        protocol_version=str,
        implementation=str,
        implementation_version=str,
        language_info=dict,
        banner=str,
    )
    problems += _opt(c, "content", debugger=bool, help_links=list, supported_features=list)
    version = c.get("protocol_version")
    if isinstance(version, str) and not VERSION.match(version):
        problems.append(f"content.protocol_version {version!r} is not X.Y[.Z]")
    li = c.get("language_info")
    if isinstance(li, dict):
        where = "content.language_info"
        # name, version, mimetype and file_extension are listed without "optional"; only
        # name is required here: kernels in the wild (kernelsdk's own default among them)
        # leave the others out, and no client needs them to run code.
        problems += _need(li, where, name=str)
        problems += _opt(
            li,
            where,
            version=str,
            mimetype=str,
            file_extension=str,
            pygments_lexer=str,
            codemirror_mode=(str, dict),
            nbconvert_exporter=str,
        )
        ext = li.get("file_extension")
        if isinstance(ext, str) and not ext.startswith("."):
            problems.append(f"{where}.file_extension {ext!r} does not start with '.'")
    links = c.get("help_links")
    if isinstance(links, list):
        for i, link in enumerate(links):
            if not isinstance(link, dict):
                problems.append(f"content.help_links[{i}] is {_vname(link)}, not dict")
            else:
                problems += _need(link, f"content.help_links[{i}]", text=str, url=str)
    problems += _list_of(c.get("supported_features"), str, "content.supported_features")
    return problems


def _complete(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    problems = _need(c, "content", matches=list, cursor_start=int, cursor_end=int, metadata=dict)
    problems += _list_of(c.get("matches"), str, "content.matches")
    start, end = c.get("cursor_start"), c.get("cursor_end")
    if isinstance(start, int) and isinstance(end, int) and _is(start, int) and _is(end, int):
        if not 0 <= start <= end:
            problems.append(
                f"content.cursor_start {start} and cursor_end {end}: not 0 <= start <= end"
            )
        code = request.get("code") if request else None
        if isinstance(code, str) and end > len(code):
            problems.append(f"content.cursor_end {end} is past the code's end ({len(code)})")
    metadata = c.get("metadata")
    types = metadata.get("_jupyter_types_experimental") if isinstance(metadata, dict) else None
    if types is not None:
        where = "content.metadata._jupyter_types_experimental"
        if not isinstance(types, list):
            problems.append(f"{where} is {_vname(types)}, not list")
        else:
            for i, item in enumerate(types[:50]):
                if not isinstance(item, dict):
                    problems.append(f"{where}[{i}] is {_vname(item)}, not dict")
                else:
                    problems += _need(item, f"{where}[{i}]", text=str)
                    problems += _opt(item, f"{where}[{i}]", start=int, end=int, type=str)
    return problems


def _inspect(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    problems = _need(c, "content", found=bool, data=dict, metadata=dict)
    return problems + _mimebundle(c.get("data"), "content.data")


def history_entry_problems(entry: Any, where: str, output: bool | None) -> list[str]:
    """``[session, line, input]``, or ``[session, line, [input, output]]`` with output=True
    (``output`` None: either shape)."""
    if not isinstance(entry, list) or len(entry) != 3:
        shape = f"a list of {len(entry)}" if isinstance(entry, list) else _vname(entry)
        return [f"{where} is {shape}, not [session, line, input]"]
    problems = _typed(entry[0], int, f"{where}[0] (session)")
    problems += _typed(entry[1], int, f"{where}[1] (line)")
    item = entry[2]
    pair = isinstance(item, list) and len(item) == 2
    asked = f" (output={output} was asked)" if output is not None else ""
    if output if output is not None else pair:
        if not pair:
            return [*problems, f"{where}[2] is {_vname(item)}, not [input, output]{asked}"]
        problems += _typed(item[0], str, f"{where}[2][0] (input)")
        problems += _typed(item[1], (str, type(None)), f"{where}[2][1] (output)")
    elif not isinstance(item, str):
        problems.append(f"{where}[2] (input) is {_vname(item)}, not str{asked}")
    return problems


def _history(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    problems = _need(c, "content", history=list)
    output = bool(request.get("output")) if request and "output" in request else None
    history = c.get("history")
    if isinstance(history, list):
        bad = [
            found
            for i, entry in enumerate(history)
            if (found := history_entry_problems(entry, f"content.history[{i}]", output))
        ]
        if bad:  # the first wrong entry says what is wrong; how many there are is enough
            more = (
                f" (and {len(bad) - 1} more of the {len(history)} entries)" if len(bad) > 1 else ""
            )
            problems += [*bad[0][:-1], bad[0][-1] + more]
    return problems


def _is_complete(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    status = c.get("status")
    if status not in ("complete", "incomplete", "invalid", "unknown"):
        return [f"content.status {status!r} is not complete/incomplete/invalid/unknown"]
    if status == "incomplete":
        # "If status is 'incomplete', indent should contain the characters to use to
        # indent the next line" (an empty string when there is none).
        return _need(c, "content", indent=str)
    return _opt(c, "content", indent=str)


def _comm_info(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    problems = _need(c, "content", comms=dict)
    comms = c.get("comms")
    if isinstance(comms, dict):
        for comm_id, info in list(comms.items())[:20]:
            where = f"content.comms[{comm_id!r}]"
            if not isinstance(info, dict):
                problems.append(f"{where} is {_vname(info)}, not dict")
            else:
                problems += _need(info, where, target_name=str)
    return problems


def _connect(c: dict[str, Any], request: dict[str, Any] | None) -> list[str]:
    problems = _need(c, "content", shell_port=int, iopub_port=int, stdin_port=int, hb_port=int)
    return problems + _opt(c, "content", control_port=int)


# -- IOPub and stdin --------------------------------------------------------------------------


def _display(c: dict[str, Any], *, needs_id: bool = False) -> list[str]:
    problems = _need(c, "content", data=dict, metadata=dict)
    problems += _mimebundle(c.get("data"), "content.data")
    transient = c.get("transient")
    if "transient" in c and not isinstance(transient, dict):
        problems.append(f"content.transient is {_vname(transient)}, not dict")
    elif isinstance(transient, dict):
        if needs_id:
            problems += _need(transient, "content.transient", display_id=str)
        else:
            problems += _opt(transient, "content.transient", display_id=str)
    elif needs_id:
        problems.append("content.transient.display_id is missing (update_display_data needs it)")
    return problems


def _status(c: dict[str, Any]) -> list[str]:
    state = c.get("execution_state")
    if state not in ("busy", "idle", "starting"):
        return [f"content.execution_state {state!r} is not busy/idle/starting"]
    return []


def _stream(c: dict[str, Any]) -> list[str]:
    problems = _need(c, "content", name=str, text=str)
    if isinstance(c.get("name"), str) and c["name"] not in ("stdout", "stderr"):
        problems.append(f"content.name {c['name']!r} is not stdout/stderr")
    return problems


def _iopub(check: Callable[[dict[str, Any]], list[str]]) -> Check:
    return lambda c, request: check(c)


def _plain(**types: Any) -> Check:
    return lambda c, request: _need(c, "content", **types)


CONTENT: dict[str, Check] = {
    # replies (shell and control)
    "execute_reply": _reply(_execute_reply, error_count=True),
    "kernel_info_reply": _reply(_kernel_info),
    "complete_reply": _reply(_complete),
    "inspect_reply": _reply(_inspect),
    "history_reply": _reply(_history),
    "is_complete_reply": _is_complete,
    "comm_info_reply": _reply(_comm_info),
    "shutdown_reply": _reply(_plain(restart=bool)),
    "interrupt_reply": _reply(lambda c, r: []),
    "connect_reply": _reply(_connect),
    "debug_reply": lambda c, r: [],
    "list_subshell_reply": _reply(
        lambda c, r: (
            _need(c, "content", subshell_id=list)
            + _list_of(c.get("subshell_id"), str, "content.subshell_id")
        )
    ),
    "create_subshell_reply": _reply(_plain(subshell_id=str)),
    "delete_subshell_reply": _reply(lambda c, r: []),
    # IOPub
    "status": _iopub(_status),
    "execute_input": _plain(code=str, execution_count=int),
    "stream": _iopub(_stream),
    "display_data": _iopub(_display),
    "update_display_data": _iopub(lambda c: _display(c, needs_id=True)),
    "execute_result": _iopub(lambda c: _need(c, "content", execution_count=int) + _display(c)),
    "error": _iopub(_error_fields),
    "clear_output": _plain(wait=bool),
    "iopub_welcome": _plain(subscription=str),
    "comm_open": _iopub(
        lambda c: (
            _need(c, "content", comm_id=str, target_name=str, data=dict)
            + _opt(c, "content", target_module=(str, type(None)))
        )
    ),
    "comm_msg": _plain(comm_id=str, data=dict),
    "comm_close": _plain(comm_id=str, data=dict),
    "debug_event": lambda c, r: [],
    # stdin
    "input_request": _plain(prompt=str, password=bool),
}

#: the message types a kernel may send, by channel (messaging.rst 5.5, with subshells 5.5+)
CHANNEL_OF: dict[str, set[str]] = {
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
        "shutdown_reply",  # re-broadcast of the control reply (ipykernel, kernelsdk)
    },
    "stdin": {"input_request"},
    "shell": {
        "execute_reply",
        "kernel_info_reply",
        "complete_reply",
        "inspect_reply",
        "history_reply",
        "is_complete_reply",
        "comm_info_reply",
        "connect_reply",
        "shutdown_reply",
        "interrupt_reply",
        "create_subshell_reply",
        "delete_subshell_reply",
        "list_subshell_reply",
    },
}
CHANNEL_OF["control"] = CHANNEL_OF["shell"] | {"debug_reply"}

#: IOPub types that always belong to a request: never with an empty parent_header
#: (status too, except ``starting``)
PARENTED = {"execute_input", "execute_result"}
#: outputs a kernel may also publish on its own, outside any request (startup warnings,
#: background threads), with an empty parent header; not while a request runs
OUTPUTS = {"stream", "display_data", "update_display_data", "clear_output", "error"}


def validate_header(header: Any, where: str = "header") -> list[str]:
    if not isinstance(header, dict):
        return [f"{where} is not a dict"]
    problems = []
    for name in HEADER_FIELDS:
        if name not in header:
            problems.append(f"{where} lacks {name!r}")
        elif not isinstance(header[name], str):
            problems.append(f"{where}.{name} is {_vname(header[name])}, not str")
    date = header.get("date")
    if isinstance(date, str) and not DATE.match(date):
        problems.append(f"{where}.date {date!r} is not ISO 8601")
    version = header.get("version")
    if isinstance(version, str) and not VERSION.match(version):
        problems.append(f"{where}.version {version!r} is not X.Y")
    elif isinstance(version, str) and not version.startswith("5."):
        problems.append(f"{where}.version {version!r} is not protocol 5.x")
    return problems


def _type_problem(msg: Msg) -> str | None:
    """An unknown message type, or one on a channel it does not belong to."""
    msg_type, channel = msg.msg_type, msg.channel
    known = CHANNEL_OF.get(channel)
    if known is None or msg_type in known:
        return None
    parent_type = msg.parent_header.get("msg_type") if isinstance(msg.parent_header, dict) else None
    if (
        channel in ("shell", "control")
        and isinstance(parent_type, str)
        and parent_type.endswith("_request")
        and msg_type == parent_type[: -len("_request")] + "_reply"
    ):
        return None  # the reply to an extension request (its own business)
    elsewhere = [c for c, types in CHANNEL_OF.items() if msg_type in types]
    if elsewhere:
        return f"{msg_type} does not belong on {channel} (it is a {'/'.join(elsewhere)} message)"
    return f"unknown message type {msg_type!r} on {channel} (not in the 5.5 spec)"


def validate(msg: Msg, request: dict[str, Any] | None = None) -> list[str]:
    """Problems with one received message (framing, header, parent, type, content).

    ``request`` is the content of the request ``msg`` answers, when the caller knows it:
    replies are then also checked against it (history shapes for ``output``, completion
    cursors within the code).
    """
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
    if isinstance(msg.header, dict) and isinstance(msg.header.get("msg_type"), str):
        wrong_type = _type_problem(msg)
        if wrong_type is not None:
            problems.append(wrong_type)
    if msg.channel != "iopub" and not msg.parent_header:
        problems.append(f"a {msg_type or 'message'} without parent_header")
    if msg.channel == "iopub" and isinstance(msg.parent_header, dict) and not msg.parent_header:
        starting = msg_type == "status" and msg.content.get("execution_state") == "starting"
        if msg_type in PARENTED or (msg_type == "status" and not starting):
            problems.append(
                f"{msg_type} with an empty parent_header (it belongs to a request: IOPub "
                "messages carry the header of the request that caused them)"
            )
    if msg_type == "iopub_welcome" and msg.parent_header:
        problems.append("iopub_welcome must have an empty parent_header (JEP 65)")
    validator = CONTENT.get(msg_type)
    if validator is not None:
        problems += validator(msg.content, request)
    return problems


def parentless_outputs(log: list[Msg]) -> list[tuple[Msg, str]]:
    """Outputs with an empty parent header published while an execution ran (between the
    busy and idle of an execute_request, in IOPub order): that cell's outputs, which no client
    can attribute. (Outside executions a kernel may print on its own: ipykernel publishes
    its start-up warnings without a parent.)"""
    running: dict[str, str] = {}  # parent msg_id -> its msg_type
    found = []
    for msg in log:
        if msg.channel != "iopub" or not isinstance(msg.content, dict):
            continue
        parent = msg.parent_header if isinstance(msg.parent_header, dict) else None
        if msg.msg_type == "status" and parent and isinstance(parent.get("msg_id"), str):
            state = msg.content.get("execution_state")
            if state == "busy" and parent.get("msg_type") == "execute_request":
                running[parent["msg_id"]] = str(parent.get("msg_type", "a request"))
            elif state == "idle":
                running.pop(parent["msg_id"], None)
        elif msg.msg_type in OUTPUTS and parent == {} and running:
            during = ", ".join(sorted(set(running.values())))
            found.append(
                (
                    msg,
                    f"{msg.msg_type} with an empty parent_header while {during} ran (the outputs "
                    "of a request carry its header)",
                )
            )
    return found
