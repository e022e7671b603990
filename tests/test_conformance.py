"""Truth tests of the conformance suite (conformance/, package kernelsdk_conformance).

* The echo kernel and the probe kernel (which has a sample for everything) pass every check
  that applies to them; the rest are skipped as "not supported", never failed.
* Each deliberately faulty kernel (tests/faulty_kernels.py: the probe kernel with exactly one
  fault) fails exactly the check(s) meant to catch that fault, and passes all the others.

The faulty kernels run concurrently (each suite mostly waits on its kernel).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import TESTS_DIR, JupyterEnv, _write_spec, kernel_argv

kc_mod = pytest.importorskip("kernelsdk_conformance")
from kernelsdk_conformance import Options, Profile, Result, run  # noqa: E402

FAST = Options(timeout=8.0, fuzz_budget=25, shutdown_grace=4.0)


class ProbeProfile(Profile):
    """Samples for the probe kernel of tests/kernels_for_tests.py."""

    kernel_name = "conf-probe"
    language_name = "probe"
    file_extension = ".probe"
    code_hello_world = "print hello, world"
    code_stderr = "stderr oops"
    code_generate_error = "error"
    code_sleep = "sleep {seconds}"
    code_spin = "hold {seconds}"  # holds the GIL: a heartbeat that needs it stalls
    code_input = "input {prompt}"
    code_password = "password"
    code_display_id = "display {display_id} {text}"
    code_update_display = "update {display_id} {text}"
    code_clear_output = "clear"
    complete_code_samples = ["print x"]
    incomplete_code_samples = ["print x \\"]
    comm_target = "probe"
    busy_seconds = 1.0


#: fault -> the checks that must fail (every other check must pass or skip as for the probe)
FAULTS: dict[str, set[str]] = {
    "no_signature_check": {"security"},
    "late_output": {"ordering", "input_interrupt"},
    "no_heartbeat": {"heartbeat"},
    "die_on_idle_sigint": {"sigint_idle"},
    "protocol_5_3": {"protocol_version"},
    "reused_msg_id": {"schema"},
    "control_blocked": {"control_during_execution", "shutdown_input"},
    "shutdown_no_exit": {"shutdown", "restart", "shutdown_input"},
    "no_comm_close": {"comms"},
    "silent_counts": {"execution_count"},
    "no_abort": {"stop_on_error"},
    "crash_on_garbage": {"robustness"},
    "stdin_ignores_allow": {"stdin"},
    "no_interrupt": {"interrupt", "input_interrupt"},
    "forged_registration": {"handshake"},
    "hb_needs_gil": {"heartbeat"},
    "history_ignores_output": {"schema"},
    "incomplete_no_indent": {"completion", "schema"},
    "update_wrong_id": {"display"},
    "drops_after_forged": {"security"},
    "comm_no_status": {"comm_status"},
    "parentless_comm_close": {"comms"},
    "misspelt_update": {"display", "schema"},
    "parentless_clear": {"display", "schema"},
    "prompt_trimmed": set(),  # no fault: whitespace around a prompt is no protocol rule
}

#: fault -> (check, what its failing verdict must say)
FAULT_VERDICTS: dict[str, list[tuple[str, str]]] = {
    "hb_needs_gil": [("heartbeat", "no heartbeat echo within 3s while the kernel spins")],
    "history_ignores_output": [
        ("schema", "content.history[0][2] is str, not [input, output] (output=True was asked)")
    ],
    "incomplete_no_indent": [
        ("schema", "is_complete_reply: content.indent is missing"),
        ("completion", "content.indent is missing"),
    ],
    "update_wrong_id": [("display", "-other'], not for the display's id")],
    "drops_after_forged": [
        ("security", "shell: dropped the valid request sent after a forged one"),
        ("security", "control: dropped the valid request sent after a forged one"),
    ],
    "comm_no_status": [("comm_status", "comm_open: no status idle")],
    "parentless_comm_close": [("comms", "comm_close was sent with an empty parent header")],
    "misspelt_update": [
        ("schema", "unknown message type 'iopub_update_display_data' on iopub"),
        ("display", "no update_display_data"),
    ],
    "parentless_clear": [
        ("schema", "clear_output with an empty parent_header while execute_request ran"),
        ("display", "clear_output was sent with an empty parent header"),
    ],
}


def _spec(name: str, cls: str, env: dict[str, str], mode: str = "signal") -> dict[str, Any]:
    pythonpath = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    return {
        "argv": kernel_argv(cls),
        "display_name": name,
        "language": "probe",
        "interrupt_mode": mode,
        "env": {"PYTHONPATH": pythonpath, **env},
        "kernel_protocol_version": "5.5",
    }


def test_lua54_passes_every_applicable_check(jupyter_env: JupyterEnv) -> None:
    """The session's ``lua54`` kernelspec (``python -m kernelsdk install lua54``, conftest)."""
    from kernelsdk_conformance.profiles import LuaProfile

    results = run("lua54", LuaProfile(), options=FAST)
    assert not [r for r in results if r.status in ("fail", "error")], _explain(results)
    skipped = {r.name for r in results if r.status == "skip"}
    assert skipped <= {"user_expressions"}, _explain(results)  # the Lua kernel has none


@pytest.fixture(scope="module")
def specs(jupyter_env: JupyterEnv) -> Iterator[JupyterEnv]:
    _write_spec(
        jupyter_env.kernels_dir,
        "conf-probe",
        _spec("conf-probe", "kernels_for_tests:ProbeKernel", {}),
    )
    _write_spec(
        jupyter_env.kernels_dir,
        "conf-probe-msg",
        _spec("conf-probe-msg", "kernels_for_tests:ProbeMessageKernel", {}, "message"),
    )
    for fault in FAULTS:
        _write_spec(
            jupyter_env.kernels_dir,
            f"faulty-{fault}",
            _spec(f"faulty-{fault}", "faulty_kernels:FaultyKernel", {"KSDK_FAULT": fault}),
        )
    yield jupyter_env


def _statuses(results: list[Result]) -> dict[str, str]:
    return {r.name: r.status for r in results}


def _explain(results: list[Result]) -> str:
    return "\n".join(f"{r.status:5} {r.name}: {r.message}" for r in results)


def test_a_kernel_that_exits_at_its_first_launch_is_launched_again(
    jupyter_env: JupyterEnv, tmp_path: Any
) -> None:
    """As when jupyter_client's chosen port was taken before the kernel bound it: the suite
    launches once more; a kernel that exits at both launches is reported, not retried."""
    from kernelsdk_conformance import EchoProfile

    marker = tmp_path / "launched-once"
    echo = " ".join(kernel_argv("echo"))
    first_exits = f"if [ -e {marker} ]; then exec {echo}; fi; touch {marker}; exit 3"
    spec = {"argv": ["sh", "-c", first_exits], "display_name": "x", "language": "echo"}
    _write_spec(jupyter_env.kernels_dir, "conf-exits-once", spec)
    results = run("conf-exits-once", EchoProfile(), checks=["kernel_info"], options=FAST)
    assert _statuses(results) == {"kernel_info": "pass"}, _explain(results)
    assert marker.exists()
    spec["argv"] = ["sh", "-c", "exit 3"]
    _write_spec(jupyter_env.kernels_dir, "conf-always-exits", spec)
    results = run("conf-always-exits", EchoProfile(), checks=["kernel_info"], options=FAST)
    assert results[0].status in ("fail", "error")
    assert "exited during startup" in results[0].message, _explain(results)


def test_echo_passes_every_applicable_check(specs: JupyterEnv) -> None:
    from kernelsdk_conformance import EchoProfile

    results = run("echo", EchoProfile(), options=FAST)
    statuses = _statuses(results)
    assert not [r for r in results if r.status in ("fail", "error")], _explain(results)
    # What echo cannot do is "not supported", not failed.
    for name in ("interrupt", "stdin", "stop_on_error", "display", "control_during_execution"):
        assert statuses[name] == "skip", _explain(results)
    for name in ("security", "ordering", "schema", "shutdown", "restart", "robustness"):
        assert statuses[name] == "pass", _explain(results)


@pytest.fixture(scope="module")
def fault_results(specs: JupyterEnv) -> dict[str, list[Result]]:
    """The whole suite against the probe kernels and every faulty kernel, concurrently."""
    names = ["conf-probe", "conf-probe-msg", *(f"faulty-{f}" for f in FAULTS)]

    def one(name: str) -> list[Result]:
        return run(name, ProbeProfile(), options=FAST)

    # 4 at a time: with 8, a 2-core machine running the suite under coverage was loaded
    # enough for a sound kernel to miss a deadline now and then (a status 10 s late, a send
    # that timed out during the fuzz), failing a check that the fault under test is not about.
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


#: The first test to use fault_results runs the whole suite on ~30 kernels (4 at a time): a
#: few minutes on a loaded 2-core machine, more than pytest-timeout's default 120 s.
FAULT_RUN_TIMEOUT = 900


@pytest.mark.timeout(FAULT_RUN_TIMEOUT)
@pytest.mark.parametrize("name", ["conf-probe", "conf-probe-msg"])
def test_probe_passes_everything_it_supports(
    fault_results: dict[str, list[Result]], name: str
) -> None:
    results = fault_results[name]
    statuses = _statuses(results)
    assert not [r for r in results if r.status in ("fail", "error")], _explain(results)
    skipped = {n for n, s in statuses.items() if s == "skip"}
    # The probes' kernelspecs do not declare CurveZMQ (the echo and Lua kernels go through the
    # encryption check, and test_curve.py checks that it catches a kernel ignoring its keys).
    allowed = {"user_expressions", "encryption"}
    allowed |= {"sigint_idle"} if name.endswith("-msg") else set()
    # The plain probe claims no subshells; SubshellProbeKernel passes those checks (below).
    allowed |= set(SUBSHELL_CHECKS)
    allowed |= set(DEBUGGER_CHECKS)  # nor a debugger (the Lua kernel's is checked below)
    assert skipped <= allowed, _explain(results)


@pytest.mark.timeout(FAULT_RUN_TIMEOUT)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_caught_by_its_check_only(
    fault_results: dict[str, list[Result]], fault: str
) -> None:
    results = fault_results[f"faulty-{fault}"]
    failed = {r.name for r in results if r.status in ("fail", "error")}
    assert failed == FAULTS[fault], _explain(results)
    for r in results:
        if r.name in FAULTS[fault]:
            assert r.message, "a failure must say what is wrong"
    messages = {r.name: r.message for r in results}
    for name, text in FAULT_VERDICTS.get(fault, []):
        assert text in messages[name], _explain(results)


class ProbeOwnIdProfile(ProbeProfile):
    """As a language whose display call picks the display id: one display-then-update
    sample without ``{display_id}``."""

    code_display_id = "display-new {text}\nupdate-last {text}"
    code_update_display = None


@pytest.mark.parametrize(
    ("kernel", "status", "text"),
    [
        ("conf-probe", "pass", "display_id (picked by the kernel), update_display_data"),
        ("faulty-update_wrong_id", "fail", "-other'], not for the display's id"),
    ],
)
def test_display_follows_the_id_the_kernel_picks(
    specs: JupyterEnv, kernel: str, status: str, text: str
) -> None:
    """Before, such a profile could give no display sample (its id is not the suite's), and
    an update of the wrong display passed unseen."""
    results = run(kernel, ProbeOwnIdProfile(), checks=["display"], options=FAST)
    assert _statuses(results) == {"display": status}, _explain(results)
    assert text in results[0].message, _explain(results)


def test_fuzzed_messages_are_reproducible_from_their_seed() -> None:
    """--fuzz-seed replays a run: the same seed, the same messages; every kind is made."""
    from kernelsdk_conformance.checks._fuzz import MalformedMessages

    from kernelsdk.protocol import Session

    session = Session(key=b"k")
    first, again = (MalformedMessages(1234, session.sign) for _ in range(2))
    messages = [first.next() for _ in range(200)]
    assert messages == [again.next() for _ in range(200)]
    assert messages != [MalformedMessages(1235, session.sign).next() for _ in range(200)]
    assert {channel for channel, _ in messages} == {"shell", "control"}
    signed = [frames for _, frames in messages if frames[:1] == [b"<IDS|MSG>"] and len(frames) == 6]
    assert any(session.sign(frames[2:]) == frames[1] for frames in signed)  # signed garbage
    assert any(not frames or frames[0] != b"<IDS|MSG>" for _, frames in messages)  # raw
    assert not any(b"shutdown_request" in frames[2] for frames in signed)


def test_the_suite_leaves_the_working_directory_empty(specs: JupyterEnv, tmp_path: Any) -> None:
    """hypothesis, which the robustness check once used, wrote .hypothesis/ (its caches) into
    the working directory; the suite writes nothing, there or in the user's cache dir."""
    import subprocess
    import sys

    cwd, cache = tmp_path / "cwd", tmp_path / "cache"
    cwd.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    argv = [sys.executable, "-m", "kernelsdk_conformance", "echo", "--fuzz-budget", "10"]
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not list(cwd.iterdir())
    assert not (cache / "kernelsdk-conformance").exists()


# -- the command line -----------------------------------------------------------------------


def test_cli_json_report_and_exit_status(
    specs: JupyterEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from kernelsdk._cli import main

    assert main(["conformance", "echo", "--check", "kernel_info", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in report["results"]] == ["pass"]
    status = main(
        [
            "conformance",
            "faulty-protocol_5_3",
            "--check",
            "protocol_version",
            "--profile",
            "test_conformance:ProbeProfile",
            "--format",
            "markdown",
        ]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "| `protocol_version` | FAIL |" in out
    assert "kernel_info.protocol_version 5.3" in out


def test_cli_unknown_check_is_a_usage_error(
    specs: JupyterEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    from kernelsdk._cli import main

    assert main(["conformance", "echo", "--check", "no-such-check"]) == 2
    assert "invalid choice: 'no-such-check'" in capsys.readouterr().err


def test_cli_without_the_suite_installed_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from kernelsdk._cli import main

    monkeypatch.setitem(sys.modules, "kernelsdk_conformance.cli", None)
    assert main(["conformance", "echo"]) == 2
    assert "pip install -e conformance" in capsys.readouterr().err


def test_run_lean_imports() -> None:
    """`kernelsdk run` (what kernel.json launches) never imports the suite."""
    import subprocess
    import sys

    code = (
        "import sys, kernelsdk._cli as c; c._parser(); "
        "print(any(m.startswith('kernelsdk_conformance') or m.startswith('jupyter_client') "
        "for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the pytest helper: one test per check --------------------------------------------------

from kernelsdk_conformance import EchoProfile  # noqa: E402
from kernelsdk_conformance.pytest_plugin import conformance_tests  # noqa: E402

test_echo_through_pytest_helper = pytest.mark.usefixtures("specs")(
    conformance_tests("echo", EchoProfile(), checks=["kernel_info", "comms", "stdin"], options=FAST)
)


def test_a_kernel_that_cannot_start_fails_fast(specs: JupyterEnv) -> None:
    import sys

    _write_spec(
        specs.kernels_dir,
        "conf-dead",
        {
            "argv": [sys.executable, "-c", "pass", "{connection_file}"],
            "display_name": "dead",
            "language": "none",
        },
    )
    results = run("conf-dead", Profile(), options=Options(timeout=5, startup_timeout=10))
    assert {r.status for r in results} == {"fail", "skip"}, _explain(results)
    assert "exited during startup" in results[0].message
    for r in results[1:]:
        if r.status == "fail":
            assert "could not be started" in r.message or "exited during" in r.message


# -- lifecycle checks and verdicts (tests/faulty_kernels_lifecycle.py) ----------------------

#: fault -> the checks that must fail (every other check passes, or skips as for the probe)
LIFECYCLE_FAULTS: dict[str, set[str]] = {
    "input_survives_interrupt": {"input_interrupt"},
    "shutdown_hangs_in_input": {"shutdown_input"},
    "ignores_parent_death": {"parent_death"},
    "no_status_kernel_info": {"kernel_info"},
    "never_idle": {"kernel_info"},
}

#: fault -> what its failing verdict must say
LIFECYCLE_VERDICTS: dict[str, list[str]] = {
    "input_survives_interrupt": [
        "published after the interrupted cell's idle, with its parent: iopub:stream",
        "the value sent to the next cell",
    ],
    "shutdown_hangs_in_input": ["shutdown_reply came", "still running", "waiting for input"],
    "ignores_parent_death": ["still running", "after its parent", "JPY_PARENT_PID"],
    "no_status_kernel_info": ["kernel_info_request got its reply but no busy/idle status"],
    "never_idle": [
        "kernel_info_request got its reply and status busy, but no status idle",
        "an execute_request (of empty code) got no status idle either",
    ],
}

#: before: every check failed with "KernelDied: IOPub never delivered status messages" after
#: about 3 minutes (60 s start-up timeouts, three times); a generous bound, not a timing test
NO_STATUS_BOUND = 150.0


@pytest.fixture(scope="module")
def lifecycle_results(specs: JupyterEnv) -> dict[str, tuple[list[Result], float]]:
    """The whole suite against each lifecycle-faulty kernel, concurrently; (results, seconds)."""
    import time

    for fault in LIFECYCLE_FAULTS:
        _write_spec(
            specs.kernels_dir,
            f"lifecycle-{fault}",
            _spec(
                f"lifecycle-{fault}",
                "faulty_kernels_lifecycle:FaultyLifecycleKernel",
                {"KSDK_FAULT": fault},
            ),
        )

    def one(fault: str) -> tuple[list[Result], float]:
        started = time.monotonic()
        results = run(f"lifecycle-{fault}", ProbeProfile(), options=FAST)
        return results, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=len(LIFECYCLE_FAULTS)) as pool:
        return dict(zip(LIFECYCLE_FAULTS, pool.map(one, LIFECYCLE_FAULTS), strict=True))


@pytest.mark.parametrize("fault", sorted(LIFECYCLE_FAULTS))
def test_lifecycle_fault_is_caught_by_its_check_only(
    lifecycle_results: dict[str, tuple[list[Result], float]], fault: str
) -> None:
    results, _ = lifecycle_results[fault]
    failed = {r.name: r for r in results if r.status in ("fail", "error")}
    assert set(failed) == LIFECYCLE_FAULTS[fault], _explain(results)
    for name in LIFECYCLE_FAULTS[fault]:
        for text in LIFECYCLE_VERDICTS[fault]:
            assert text in failed[name].message, _explain(results)


@pytest.mark.parametrize("fault", ["no_status_kernel_info", "never_idle"])
def test_missing_status_is_said_once_and_the_run_goes_on(
    lifecycle_results: dict[str, tuple[list[Result], float]], fault: str
) -> None:
    """One failing verdict (kernel_info) naming what is missing; checks that need no idle
    still run and pass, the others skip saying why; the run takes well under the old 3 min."""
    results, seconds = lifecycle_results[fault]
    statuses = _statuses(results)
    assert statuses["kernel_info"] == "fail", _explain(results)
    assert not any("KernelDied" in r.message for r in results), _explain(results)
    for name in ("sigint_idle", "shutdown", "handshake", "parent_death", "shutdown_input"):
        assert statuses[name] == "pass", _explain(results)
    needs_idle = [r for r in results if r.status == "skip" and "not checked" in r.message]
    if fault == "never_idle":
        assert {"ordering", "execution_count", "stdin", "schema"} <= {r.name for r in needs_idle}
        for r in needs_idle:
            assert "publishes no status idle for any request" in r.message, _explain(results)
            assert "kernel_info check fails on it" in r.message
    else:  # executes are bracketed: everything but kernel_info runs
        assert not needs_idle, _explain(results)
        assert statuses["ordering"] == "pass", _explain(results)
    assert seconds < NO_STATUS_BOUND, f"{seconds:.0f} s\n{_explain(results)}"


def test_a_check_past_its_budget_fails_saying_what_it_waited_for(specs: JupyterEnv) -> None:
    """control_during_execution waits for a 30 s execution to end; a 3 s budget (kernel
    start-up not counted) stops it, and the verdict says what it was waiting for."""
    import time

    class Slow(ProbeProfile):
        busy_seconds = 30.0

    started = time.monotonic()
    results = run(
        "conf-probe",
        Slow(),
        checks=["control_during_execution"],
        options=Options(timeout=8.0, check_budget=3.0),
    )
    (result,) = results
    assert result.status == "fail", _explain(results)
    assert result.message.startswith("took longer than 3 s: waiting for "), _explain(results)
    assert time.monotonic() - started < 25, _explain(results)


def test_handshake_skips_a_kernel_that_ignores_the_registration_file_fast(
    specs: JupyterEnv,
) -> None:
    """It starts and serves from a connection file, but given a registration file it neither
    connects, nor writes ports, nor exits: skipped within seconds, not the start-up timeout."""
    import json
    import sys
    import time

    from kernelsdk_conformance import EchoProfile

    echo = kernel_argv("echo")
    code = (
        "import json, os, sys, time\n"
        "f = sys.argv[1]\n"
        "if 'registration_port' in json.load(open(f)):\n"
        "    time.sleep(300)\n"
        f"os.execv(sys.executable, {json.dumps(echo)}[:-1] + [f])\n"
    )
    spec = {"argv": [sys.executable, "-c", code, "{connection_file}"], "display_name": "x"}
    _write_spec(specs.kernels_dir, "conf-ignores-registration", {**spec, "language": "echo"})
    started = time.monotonic()
    results = run("conf-ignores-registration", EchoProfile(), checks=["handshake"], options=FAST)
    assert _statuses(results) == {"handshake": "skip"}, _explain(results)
    assert "did not connect to the registrar" in results[0].message, _explain(results)
    assert time.monotonic() - started < 40, _explain(results)  # was startup_timeout (60 s)


# -- kernel subshells (tests/faulty_kernels_subshells.py) -----------------------------------

SUBSHELL_CHECKS = (
    "subshells",
    "subshell_parents",
    "subshell_unknown",
    "subshell_order",
    "subshell_concurrency",
    "subshell_interrupt",
)

#: fault -> the subshell checks that must fail (the others pass)
SUBSHELL_FAULTS: dict[str, set[str]] = {
    "serial_subshells": {"subshell_concurrency", "subshell_interrupt"},
    "unordered_subshell": {"subshell_order"},
    "parentless_subshell": {"subshell_parents"},
    "unknown_runs_on_main": {"subshell_unknown", "subshells"},
    "list_keeps_deleted": {"subshells"},
    "interrupt_loses_subshells": {"subshell_interrupt"},
}

#: fault -> (check, what its failing verdict must say)
SUBSHELL_VERDICTS: dict[str, list[tuple[str, str]]] = {
    "serial_subshells": [("subshell_concurrency", "subshells run one at a time")],
    "unordered_subshell": [("subshell_order", "started (execute_input) before the first's idle")],
    "parentless_subshell": [("subshell_parents", "has parent subshell_id None")],
    "unknown_runs_on_main": [("subshell_unknown", "status 'ok', not 'error'")],
    "list_keeps_deleted": [("subshells", "list_subshell_reply still lists")],
    "interrupt_loses_subshells": [("subshell_interrupt", "after the interrupt, the subshell")],
}


@pytest.fixture(scope="module")
def subshell_results(specs: JupyterEnv) -> dict[str, list[Result]]:
    """The subshell checks against the probe claiming subshells (both interrupt modes) and
    each subshell-faulty kernel, concurrently."""
    probes = {
        "conf-probe-subshells": ("kernels_for_tests:SubshellProbeKernel", "signal"),
        "conf-probe-subshells-msg": ("kernels_for_tests:SubshellProbeMessageKernel", "message"),
    }
    for name, (cls, mode) in probes.items():
        _write_spec(specs.kernels_dir, name, _spec(name, cls, {}, mode))
    for fault in SUBSHELL_FAULTS:
        name = f"subshell-{fault}"
        cls = "faulty_kernels_subshells:FaultySubshellKernel"
        _write_spec(specs.kernels_dir, name, _spec(name, cls, {"KSDK_FAULT": fault}))
    names = [*probes, *(f"subshell-{f}" for f in SUBSHELL_FAULTS)]

    def one(name: str) -> list[Result]:
        return run(name, ProbeProfile(), checks=SUBSHELL_CHECKS, options=FAST)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


@pytest.mark.timeout(FAULT_RUN_TIMEOUT)
@pytest.mark.parametrize("name", ["conf-probe-subshells", "conf-probe-subshells-msg"])
def test_probe_with_subshells_passes_the_subshell_checks(
    subshell_results: dict[str, list[Result]], name: str
) -> None:
    results = subshell_results[name]
    assert _statuses(results) == dict.fromkeys(SUBSHELL_CHECKS, "pass"), _explain(results)
    interrupt = next(r for r in results if r.name == "subshell_interrupt")
    assert "the subshell's was interrupted too" in interrupt.message, _explain(results)


@pytest.mark.timeout(FAULT_RUN_TIMEOUT)
@pytest.mark.parametrize("fault", sorted(SUBSHELL_FAULTS))
def test_subshell_fault_is_caught_by_its_check_only(
    subshell_results: dict[str, list[Result]], fault: str
) -> None:
    results = subshell_results[f"subshell-{fault}"]
    failed = {r.name for r in results if r.status in ("fail", "error")}
    assert failed == SUBSHELL_FAULTS[fault], _explain(results)
    messages = {r.name: r.message for r in results}
    for name, text in SUBSHELL_VERDICTS[fault]:
        assert text in messages[name], _explain(results)


def test_echo_passes_the_subshell_checks_it_can_run(specs: JupyterEnv) -> None:
    """Echo claims subshells but has no sleep: order, concurrency and interrupt skip."""
    from kernelsdk_conformance import EchoProfile

    results = run("echo", EchoProfile(), checks=SUBSHELL_CHECKS, options=FAST)
    assert _statuses(results) == {
        "subshells": "pass",
        "subshell_parents": "pass",
        "subshell_unknown": "pass",
        "subshell_order": "skip",
        "subshell_concurrency": "skip",
        "subshell_interrupt": "skip",
    }, _explain(results)


# -- the debugger (tests/faulty_kernels_debugger.py) ----------------------------------------

DEBUGGER_CHECKS = ("debugger_info", "debugger_session", "debugger_breakpoint")

#: fault -> (the debugger checks that must fail, what the first one's verdict must say)
DEBUGGER_FAULTS: dict[str, tuple[set[str], str]] = {
    "silent_debugger": (set(DEBUGGER_CHECKS), "got no debug_reply"),
    "wedged_by_initialize": ({"debugger_session", "debugger_breakpoint"}, "a cell got no reply"),
    "wrong_cell_file": ({"debugger_session"}, "JupyterLab looks for"),
    "breakpoints_ignored": ({"debugger_breakpoint"}, "no stopped debug_event"),
}


@pytest.fixture(scope="module")
def debugger_results(specs: JupyterEnv) -> dict[str, list[Result]]:
    """The debugger checks against each faulty Lua debugger, and one whose kernelspec lacks
    ``metadata.debugger``, concurrently."""
    from kernelsdk_conformance.profiles import LuaProfile

    cls = "faulty_kernels_debugger:FaultyDebuggerKernel"
    metadata = {"metadata": {"debugger": True}}
    for fault in DEBUGGER_FAULTS:
        spec = {**_spec(f"debugger-{fault}", cls, {"KSDK_FAULT": fault}), **metadata}
        _write_spec(specs.kernels_dir, f"debugger-{fault}", spec)
    _write_spec(specs.kernels_dir, "debugger-no-metadata", _spec("debugger-no-metadata", cls, {}))
    names = [*(f"debugger-{f}" for f in DEBUGGER_FAULTS), "debugger-no-metadata"]

    def one(name: str) -> list[Result]:
        return run(name, LuaProfile(), checks=DEBUGGER_CHECKS, options=FAST)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


@pytest.mark.timeout(FAULT_RUN_TIMEOUT)
@pytest.mark.parametrize("fault", sorted(DEBUGGER_FAULTS))
def test_debugger_fault_is_caught_by_its_check(
    debugger_results: dict[str, list[Result]], fault: str
) -> None:
    results = debugger_results[f"debugger-{fault}"]
    must_fail, verdict = DEBUGGER_FAULTS[fault]
    failed = {r.name for r in results if r.status in ("fail", "error")}
    assert failed == must_fail, _explain(results)
    assert any(verdict in r.message for r in results if r.name in must_fail), _explain(results)


@pytest.mark.timeout(FAULT_RUN_TIMEOUT)
def test_a_debugger_jupyterlab_would_not_offer_is_reported(
    debugger_results: dict[str, list[Result]],
) -> None:
    results = debugger_results["debugger-no-metadata"]
    assert _statuses(results) == {
        "debugger_info": "fail",
        "debugger_session": "pass",
        "debugger_breakpoint": "pass",
    }, _explain(results)
    assert "metadata.debugger is not true" in results[0].message, _explain(results)
