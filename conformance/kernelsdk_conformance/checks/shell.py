"""Shell checks: kernel_info (and the protocol version it claims), execution counts, silent,
user_expressions, and completion/inspection/is_complete on the profile's samples.

Spec references are to jupyter_client's ``docs/messaging.rst`` (protocol 5.5) unless noted.
"""

from __future__ import annotations

from typing import Any

from .._client import Msg, NoReply
from .._registry import Context, Fail, Skip, check
from .._schema import validate
from ._helpers import bracket, expect, status_ok, version_tuple

# -- kernel_info ----------------------------------------------------------------------------


@check(
    "kernel_info",
    "kernel_info on shell and on control: valid reply, busy/idle around it, language",
    "Messages on the shell channel > Kernel info; 5.5: kernel_info on control (JEP 80)",
)
def kernel_info(ctx: Context) -> str:
    kc = ctx.kernel()
    problems = []
    reply, msgs = kc.request("shell", "kernel_info_request", {})
    status_ok(reply, "kernel_info on shell")
    problems += validate(reply)
    if (missing := kc.missing_status(str(reply.parent_id))) is not None:
        # Found at start-up and said here only; checks that need the status skip.
        problems.append(f"{missing}; every request is bracketed by status busy and idle")
    else:
        problems += bracket(msgs, "kernel_info on shell")
    content = reply.content
    li = content.get("language_info", {}) if isinstance(content, dict) else {}
    p = ctx.profile
    if p.language_name and li.get("name") != p.language_name:
        problems.append(f"language_info.name {li.get('name')!r}, profile says {p.language_name!r}")
    if p.file_extension and li.get("file_extension") != p.file_extension:
        problems.append(
            f"language_info.file_extension {li.get('file_extension')!r}, "
            f"profile says {p.file_extension!r}"
        )
    control_note = ""
    try:
        creply = kc.reply("control", kc.send("control", "kernel_info_request", {}))
    except NoReply:
        claimed = version_tuple(content.get("protocol_version")) or (0,)
        if claimed >= (5, 5):
            problems.append("no kernel_info_reply on the control channel (required since 5.5)")
        else:
            control_note = "; no kernel_info on control (not required before 5.5)"
    else:
        if creply.msg_type != "kernel_info_reply":
            problems.append(f"control answered kernel_info with {creply.msg_type}")
        problems += [f"control reply: {x}" for x in validate(creply)]
    expect(problems, "kernel_info")
    return (
        f"{content.get('implementation')} {content.get('implementation_version')}, "
        f"protocol {content.get('protocol_version')}{control_note}"
    )


@check(
    "protocol_version",
    "the same protocol version in kernelspec, kernel_info and headers; claimed features answer",
    "kernels.rst 'Kernel specs' (kernel_protocol_version); Kernel info (protocol_version, "
    "supported_features, JEP 92)",
)
def protocol_version(ctx: Context) -> str:
    kc = ctx.kernel()
    reply, msgs = kc.request("shell", "kernel_info_request", {})
    content = reply.content if isinstance(reply.content, dict) else {}
    claimed = content.get("protocol_version")
    problems = []
    versions = {f"kernel_info.protocol_version {claimed}": version_tuple(claimed)}
    spec_version = ctx.kernelspec.get("kernel_protocol_version")
    if spec_version:  # absent: JEP 105 says clients then assume < 5.5; nothing to compare
        versions[f"kernelspec kernel_protocol_version {spec_version}"] = version_tuple(spec_version)
    header_versions = {
        m.header.get("version") for m in [reply, *msgs] if isinstance(m.header, dict)
    }
    for hv in sorted(str(v) for v in header_versions):
        versions[f"header version {hv}"] = version_tuple(hv)
    distinct = {v for v in versions.values()}
    if len(distinct) > 1:
        problems.append("versions disagree: " + ", ".join(versions))
    features = content.get("supported_features") or []
    if not isinstance(features, list):
        features = []
    if "debugger" in features or content.get("debugger") is True:
        request = {"type": "request", "seq": 1, "command": "debugInfo", "arguments": {}}
        try:
            dreply = kc.reply("control", kc.send("control", "debug_request", request))
        except NoReply:
            problems.append("claims the debugger but debug_request (debugInfo) got no reply")
        else:
            if dreply.msg_type != "debug_reply":
                problems.append(f"debug_request answered with {dreply.msg_type}")
            elif isinstance(dreply.content, dict) and dreply.content.get("success") is False:
                problems.append(f"debugInfo failed: {dreply.content.get('message')}")
    if "kernel subshells" in features:
        try:
            sreply = kc.reply("control", kc.send("control", "list_subshell_request", {}))
        except NoReply:
            problems.append("claims kernel subshells but list_subshell_request got no reply")
        else:
            if not isinstance(sreply.content, dict) or sreply.content.get("status") != "ok":
                problems.append(f"list_subshell_request failed: {sreply.content}")
    expect(problems, "protocol version")
    claims = f"; features {features} answer" if features else ""
    return f"{' = '.join(sorted(versions))}{claims}"


# -- execution counts -----------------------------------------------------------------------


def _count(reply: Msg) -> Any:
    return reply.content.get("execution_count") if isinstance(reply.content, dict) else None


@check(
    "execution_count",
    "execution_count grows by one per store_history execution only; execute_input and "
    "execute_result carry the reply's count",
    "Execute: execution_count ('incremented ... when store_history is True'), execute_input",
)
def execution_count(ctx: Context) -> str:
    code = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    problems = []
    r1, m1 = kc.run(code)
    r2, m2 = kc.run(code)
    n1, n2 = _count(r1), _count(r2)
    if not isinstance(n1, int) or not isinstance(n2, int):
        raise Fail(f"execute_reply.execution_count is not an int: {n1!r}, {n2!r}")
    if n2 != n1 + 1:
        problems.append(f"two executions counted {n1} then {n2}")
    for reply, msgs in ((r1, m1), (r2, m2)):
        for m in msgs:
            if m.msg_type in ("execute_input", "execute_result") and m.content.get(
                "execution_count"
            ) != _count(reply):
                problems.append(
                    f"{m.msg_type}.execution_count {m.content.get('execution_count')} "
                    f"!= execute_reply's {_count(reply)}"
                )
    kc.run(code, store_history=False)
    r3, _ = kc.run(code)
    kc.run(code, silent=True)
    r5, _ = kc.run(code)
    n3, n5 = _count(r3), _count(r5)
    if n3 != n2 + 1:
        problems.append(f"a store_history=False execution advanced the count ({n2} -> {n3})")
    if isinstance(n3, int) and n5 != n3 + 1:
        problems.append(f"a silent execution advanced the count ({n3} -> {n5})")
    expect(problems, "execution_count")
    return f"counts {n1}, {n2}; unchanged by store_history=False ({n3}) and silent ({n5})"


@check(
    "silent",
    "silent executions publish nothing but busy/idle (no execute_input, no output)",
    "Execute: silent ('will not broadcast output on the IOPUB channel, or have an execute_result')",
)
def silent(ctx: Context) -> str:
    code = ctx.sample("code_hello_world")
    kc = ctx.kernel()
    reply, msgs = kc.run(code, silent=True)
    status_ok(reply, "silent execute")
    extra = [m.describe() for m in msgs if m.msg_type != "status"]
    if extra:
        raise Fail(f"a silent execution published {extra}")
    return "only busy/idle"


@check(
    "user_expressions",
    "user_expressions evaluated after the cell, each {status, data, metadata}",
    "Execute: user_expressions",
)
def user_expressions(ctx: Context) -> str:
    samples = ctx.profile.user_expressions
    if not samples:
        raise Skip("not supported by the profile (user_expressions is empty)")
    code = ctx.profile.code_hello_world or ""
    kc = ctx.kernel()
    exprs = {f"e{i}": expr for i, expr in enumerate(samples)}
    reply, _ = kc.run(code, user_expressions=exprs)
    status_ok(reply, "execute with user_expressions")
    got = reply.content.get("user_expressions")
    if not isinstance(got, dict):
        raise Fail(f"execute_reply.user_expressions is {got!r}, not a dict")
    problems = []
    for key, expr in exprs.items():
        item = got.get(key)
        if not isinstance(item, dict):
            problems.append(f"{key} ({expr!r}) missing from the reply")
            continue
        if item.get("status") != "ok":
            problems.append(f"{expr!r} status {item.get('status')!r}: {item.get('evalue')}")
            continue
        data = item.get("data")
        if not isinstance(data, dict) or not isinstance(item.get("metadata"), dict):
            problems.append(f"{expr!r}: data/metadata missing")
        elif data.get("text/plain") != samples[expr]:
            problems.append(f"{expr!r} gave {data.get('text/plain')!r}, expected {samples[expr]!r}")
    expect(problems, "user_expressions")
    return f"{len(exprs)} expression(s) evaluated"


# -- samples (what jupyter_kernel_test covers, kept for completeness) -----------------------


@check(
    "completion",
    "complete_request and is_complete_request samples",
    "Completion; Code completeness",
)
def completion(ctx: Context) -> str:
    p = ctx.profile
    kc = ctx.kernel()
    problems = []
    n = 0
    for sample in p.completion_samples:
        text = sample["text"]
        reply, _ = kc.request("shell", "complete_request", {"code": text, "cursor_pos": len(text)})
        status_ok(reply, f"complete {text!r}")
        problems += validate(reply)
        expected = sample.get("matches")
        got = reply.content.get("matches") or []
        if expected is not None and not set(expected) <= set(got):
            problems.append(f"complete {text!r}: {sorted(got)} lacks {sorted(expected)}")
        n += 1
    for status, samples in (
        ("complete", p.complete_code_samples),
        ("incomplete", p.incomplete_code_samples),
        ("invalid", p.invalid_code_samples),
    ):
        for code in samples:
            reply, _ = kc.request("shell", "is_complete_request", {"code": code})
            problems += validate(reply)
            if reply.content.get("status") != status:
                problems.append(
                    f"is_complete {code!r}: {reply.content.get('status')!r}, not {status!r}"
                )
            n += 1
    if not n:
        raise Skip("not supported by the profile (no completion or is_complete samples)")
    expect(problems, "completion")
    return f"{n} samples"
