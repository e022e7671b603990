"""Kernel subshells (JEP 91) over real sockets, driven by jupyter_client's own client.

jupyter_client 8.10 has no subshell helpers: the control requests are built with
``kc.session.msg`` and sent on ``kc.control_channel``, and a shell request gets its
``subshell_id`` in its header, as JupyterLab sends them. The probe kernel claiming subshells
(``SubshellProbeKernel``) runs in both interrupt modes; the in-memory tests
(tests/memory/test_subshells.py) cover the rules one by one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    TESTS_DIR,
    JupyterEnv,
    KernelPair,
    _write_spec,
    kernel_argv,
    start_kernel_pair,
    stop_kernel_pair,
)
from jupyter_client.blocking.client import BlockingKernelClient
from test_integration import collect, control_reply, send_control, shell_reply, stdout_of

from kernelsdk.protocol import PROTOCOL_VERSION

TIMEOUT = 30  # only reached when something hangs


@pytest.fixture(scope="module", params=["signal", "message"])
def kernel(request: pytest.FixtureRequest, jupyter_env: JupyterEnv) -> Iterator[KernelPair]:
    mode = str(request.param)
    cls = "SubshellProbeKernel" if mode == "signal" else "SubshellProbeMessageKernel"
    name = f"probe-subshells-{mode}"
    _write_spec(
        jupyter_env.kernels_dir,
        name,
        {
            "argv": kernel_argv(f"kernels_for_tests:{cls}"),
            "display_name": f"Probe with subshells ({mode})",
            "language": "probe",
            "interrupt_mode": mode,
            "env": {"PYTHONPATH": str(TESTS_DIR)},
            "kernel_protocol_version": PROTOCOL_VERSION,
        },
    )
    km, kc = start_kernel_pair(jupyter_env, name)
    yield km, kc
    stop_kernel_pair(km, kc)


def control(kc: BlockingKernelClient, msg_type: str, **content: Any) -> dict[str, Any]:
    return control_reply(kc, send_control(kc, msg_type, content))


def create(kc: BlockingKernelClient) -> str:
    reply = control(kc, "create_subshell_request")
    assert reply["msg_type"] == "create_subshell_reply"
    assert reply["content"]["status"] == "ok", reply["content"]
    return str(reply["content"]["subshell_id"])


def execute(kc: BlockingKernelClient, code: str, subshell_id: str | None = None) -> str:
    """Send an execute_request (to ``subshell_id``, if given); returns its msg_id."""
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "stop_on_error": True})
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return str(msg["header"]["msg_id"])


def run(
    kc: BlockingKernelClient, code: str, subshell_id: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    msg_id = execute(kc, code, subshell_id)
    iopub = collect(kc, msg_id, TIMEOUT)
    return shell_reply(kc, msg_id, TIMEOUT), iopub


def replies(kc: BlockingKernelClient, msg_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The shell replies to ``msg_ids``, by msg_id, in whatever order they come."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(found) < len(msg_ids):
        reply = kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
        found[reply["parent_header"]["msg_id"]] = reply
    return found


def collect_all(kc: BlockingKernelClient, msg_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The IOPub messages of each of ``msg_ids`` up to its idle, read in whatever order."""
    found: dict[str, list[dict[str, Any]]] = {msg_id: [] for msg_id in msg_ids}
    done: set[str] = set()
    deadline = time.monotonic() + TIMEOUT
    while len(done) < len(msg_ids):
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        parent = msg["parent_header"].get("msg_id")
        if parent in found:
            found[parent].append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                done.add(parent)
    return found


def wait_running(kc: BlockingKernelClient, msg_id: str) -> list[dict[str, Any]]:
    """IOPub up to the execute_input of ``msg_id`` (whatever their parents)."""
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        seen.append(msg)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            return seen


def test_kernel_info_claims_subshells(kernel: KernelPair) -> None:
    _, kc = kernel
    reply = kc.kernel_info(reply=True, timeout=TIMEOUT)
    assert "kernel subshells" in reply["content"]["supported_features"]


def test_create_list_delete_through_jupyter_client(kernel: KernelPair) -> None:
    _, kc = kernel
    a, b = create(kc), create(kc)
    listed = control(kc, "list_subshell_request")
    assert listed["msg_type"] == "list_subshell_reply"
    assert listed["content"] == {"status": "ok", "subshell_id": [a, b]}
    deleted = control(kc, "delete_subshell_request", subshell_id=a)
    assert deleted["msg_type"] == "delete_subshell_reply"
    assert deleted["content"] == {"status": "ok"}
    assert control(kc, "list_subshell_request")["content"]["subshell_id"] == [b]
    again = control(kc, "delete_subshell_request", subshell_id=a)["content"]
    assert again["status"] == "error"
    assert again["ename"] == "UnknownSubshellError"
    control(kc, "delete_subshell_request", subshell_id=b)


def test_a_subshell_runs_while_the_main_shell_sleeps(kernel: KernelPair) -> None:
    """The main shell sleeps 30 s; a subshell cell runs and answers meanwhile, and an
    interrupt then ends the sleep."""
    km, kc = kernel
    a = create(kc)
    sleeping = execute(kc, "sleep 30")
    wait_running(kc, sleeping)
    reply, iopub = run(kc, "print from the subshell", a)
    assert reply["content"]["status"] == "ok"
    assert stdout_of(iopub) == "from the subshell\n"
    for msg in [reply, *iopub]:
        assert msg["parent_header"]["subshell_id"] == a
        assert msg["parent_header"]["msg_id"] == reply["parent_header"]["msg_id"]
    _interrupt(km, kc)
    assert shell_reply(kc, sleeping)["content"]["ename"] == "KeyboardInterrupt"
    collect(kc, sleeping)
    control(kc, "delete_subshell_request", subshell_id=a)


def _interrupt(km: Any, kc: BlockingKernelClient) -> None:
    if km.kernel_spec.interrupt_mode == "message":
        assert control(kc, "interrupt_request")["content"]["status"] == "ok"
    else:
        km.interrupt_kernel()


def test_an_interrupt_stops_the_cells_of_every_subshell(kernel: KernelPair) -> None:
    km, kc = kernel
    a, b = create(kc), create(kc)
    running = [execute(kc, "sleep 30"), execute(kc, "sleep 30", a), execute(kc, "spin 30", b)]
    for msg_id in running:
        wait_running(kc, msg_id)
    _interrupt(km, kc)
    for reply in replies(kc, running).values():
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    collect_all(kc, running)
    for subshell_id in (None, a, b):
        reply, iopub = run(kc, "print still serving", subshell_id)
        assert stdout_of(iopub) == "still serving\n"
    for subshell_id in (a, b):
        control(kc, "delete_subshell_request", subshell_id=subshell_id)


def test_requests_of_one_subshell_run_in_order(kernel: KernelPair) -> None:
    _, kc = kernel
    a = create(kc)
    first, second = execute(kc, "sleep 0.3\nprint first", a), execute(kc, "print second", a)
    iopub = collect_all(kc, [first, second])
    first_iopub, second_iopub = iopub[first], iopub[second]
    # The second's busy came after the first's idle: it waited its turn.
    assert first_iopub[-1]["header"]["date"] <= second_iopub[0]["header"]["date"]
    assert stdout_of(first_iopub) == "first\n"
    assert stdout_of(second_iopub) == "second\n"
    assert [r["content"]["status"] for r in replies(kc, [first, second]).values()] == ["ok"] * 2
    control(kc, "delete_subshell_request", subshell_id=a)


def test_an_unknown_subshell_gets_an_error_reply(kernel: KernelPair) -> None:
    _, kc = kernel
    reply, iopub = run(kc, "touch /nonexistent/never-created", "no-such-subshell")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "UnknownSubshellError"
    assert [m["content"]["execution_state"] for m in iopub] == ["busy", "idle"]
    assert reply["parent_header"]["subshell_id"] == "no-such-subshell"


def test_input_in_a_subshell(kernel: KernelPair) -> None:
    """jupyter_client answers with kc.input (no parent header): the one cell waiting gets it."""
    _, kc = kernel
    a = create(kc)
    msg = kc.session.msg(
        "execute_request", {"code": "input name? ", "silent": False, "allow_stdin": True}
    )
    msg["header"]["subshell_id"] = a
    kc.shell_channel.send(msg)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["parent_header"]["subshell_id"] == a
    kc.input("subshell input")
    msg_id = msg["header"]["msg_id"]
    assert stdout_of(collect(kc, msg_id)) == "subshell input\n"
    assert shell_reply(kc, msg_id)["content"]["status"] == "ok"
    control(kc, "delete_subshell_request", subshell_id=a)
