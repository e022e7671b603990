"""Kernels embedded in Python programs (kernelsdk.embed), through real sockets and a real
jupyter_client: the host is this test process.

A host with safe points runs cells only inside ``poll``: here the test's thread is the host,
and the client runs in a helper thread (a BlockingKernelClient blocks). Nothing waits on a
timer to synchronize: the client says what it has seen through threading events, and
timeouts only stop a hung test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_core.utils import ensure_event_loop

from kernelsdk import BaseKernel, ConfigError, TransportError
from kernelsdk.embed import (
    EmbeddedKernel,
    GuestKernel,
    PythonKernel,
    start_guest_kernel,
    start_kernel,
    start_kernel_async,
)

TIMEOUT = 30  # only reached when something hangs
T = TypeVar("T")


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Connection files go to a private runtime dir, not the user's."""
    directory = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(directory))
    return directory


@contextmanager
def client_of(path: Path) -> Iterator[BlockingKernelClient]:
    kc = BlockingKernelClient(connection_file=str(path))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        yield kc
    finally:
        kc.stop_channels()
        kc.context.destroy(linger=0)
        if threading.current_thread() is not threading.main_thread():
            # jupyter_client ran its calls on an event loop it made for this thread.
            ensure_event_loop().close()


def in_client_thread(fn: Callable[[], T]) -> concurrent.futures.Future[T]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


def poll_until_done(handle: EmbeddedKernel, future: concurrent.futures.Future[T]) -> T:
    """Be the host: poll (each poll waits for a cell, at most a moment) until the client is
    done."""
    while not future.done():
        handle.poll(0.05)
    return future.result()


def reply_to(kc: BlockingKernelClient, msg_id: str, channel: str = "shell") -> dict[str, Any]:
    get = kc.get_shell_msg if channel == "shell" else kc.get_control_msg
    while True:
        reply: dict[str, Any] = get(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def iopub_until(kc: BlockingKernelClient, msg_id: str, msg_type: str) -> list[dict[str, Any]]:
    """This request's IOPub messages up to and including the first ``msg_type``."""
    seen = []
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if msg["msg_type"] == msg_type:
            return seen


def execute(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``code``; its reply content and its IOPub messages through idle."""
    msg_id = kc.execute(code)
    iopub = []
    while True:
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        iopub.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply_to(kc, msg_id)["content"], iopub


def stdout_of(iopub: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in iopub
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def control(kc: BlockingKernelClient, msg_type: str, **content: Any) -> dict[str, Any]:
    msg = kc.session.msg(msg_type, content)
    kc.control_channel.send(msg)
    return reply_to(kc, msg["header"]["msg_id"], "control")


# -- safe points -------------------------------------------------------------------------------


def test_execute_is_busy_at_once_and_runs_at_the_next_poll_on_the_host_thread() -> None:
    kernel = PythonKernel({"host_thread": threading.get_ident()})
    waiting = threading.Event()
    with start_kernel(kernel, "sim", safe_points=True) as handle:

        def client() -> tuple[list[str], dict[str, Any], list[dict[str, Any]]]:
            with client_of(handle.connection_file) as kc:
                msg_id = kc.execute(
                    "import threading\nprint(threading.get_ident() == host_thread)\n6 * 7"
                )
                before = [m["msg_type"] for m in iopub_until(kc, msg_id, "execute_input")]
                # While the cell waits for the host, control still answers.
                info = control(kc, "kernel_info_request")
                assert info["content"]["implementation"] == "kernelsdk-embed-python"
                waiting.set()
                reply = reply_to(kc, msg_id)["content"]
                return before, reply, iopub_until(kc, msg_id, "status")

        future = in_client_thread(client)
        assert waiting.wait(TIMEOUT)
        # Busy and execute_input have left; the cell has not run: it waits for this thread.
        assert handle.has_pending
        assert handle.poll(TIMEOUT) == 1
        before, reply, after = future.result(TIMEOUT)
        assert before == ["status", "execute_input"]
        assert reply["status"] == "ok"
        outputs = {m["msg_type"]: m["content"] for m in after}
        assert outputs["stream"]["text"] == "True\n"  # on the host's thread
        assert outputs["execute_result"]["data"]["text/plain"] == "42"
        assert not handle.has_pending
        assert handle.poll() == 0  # nothing waits: returns at once


class HostJobs(BaseKernel):
    """Cells run concurrently (one per subshell); a cell's blocking work, if its code asks
    for any, reports the cell's own code and the thread it ran on."""

    concurrent_subshells = True

    async def do_execute(self, code: str, ctx: Any) -> str:
        if code.startswith("no host"):
            return code  # nothing blocking: no safe point needed
        return str(await ctx.run_blocking(lambda: (code, threading.get_ident())))


def test_concurrent_cells_each_get_their_own_work_back_and_one_needing_no_host_never_waits() -> (
    None
):
    """Two subshells' cells wait for the host at once; each cell's blocking work runs at the
    host's safe point and comes back to that cell. A cell with no blocking work ends at once,
    with no poll at all."""
    host = threading.get_ident()
    both_waiting = threading.Event()
    with start_kernel(HostJobs(), "subshells", safe_points=True) as handle:

        def client() -> tuple[dict[str, Any], list[str]]:
            with client_of(handle.connection_file) as kc:
                answered = execute(kc, "no host, no poll")[0]
                subshell = control(kc, "create_subshell_request")["content"]["subshell_id"]
                ids = []
                for code, shell in (("main", None), ("side", subshell)):
                    msg = kc.session.msg("execute_request", {"code": code, "silent": False})
                    if shell is not None:
                        msg["header"]["subshell_id"] = shell
                    kc.shell_channel.send(msg)
                    ids.append(msg["header"]["msg_id"])
                for msg_id in ids:
                    iopub_until(kc, msg_id, "execute_input")
                both_waiting.set()
                results = []
                for msg_id in ids:
                    assert reply_to(kc, msg_id)["content"]["status"] == "ok"
                    result = iopub_until(kc, msg_id, "execute_result")[-1]
                    results.append(result["content"]["data"]["text/plain"])
                return answered, results

        future = in_client_thread(client)
        assert both_waiting.wait(TIMEOUT)
        ran = 0
        while ran < 2:
            ran += handle.poll(TIMEOUT)
        answered, results = future.result(TIMEOUT)
        assert answered["status"] == "ok"
        assert results == [str(("main", host)), str(("side", host))]


def test_requests_other_than_execute_are_answered_without_any_poll() -> None:
    kernel = PythonKernel()
    with start_kernel(kernel, "quiet", safe_points=True) as handle:
        handle.expose("temperature_field", [1.0, 2.0])

        def client() -> dict[str, Any]:
            with client_of(handle.connection_file) as kc:
                answers: dict[str, Any] = {
                    "kernel_info": kc.kernel_info(reply=True, timeout=TIMEOUT)["content"],
                    "complete": kc.complete("temp", reply=True, timeout=TIMEOUT)["content"],
                    "attribute": kc.complete("temperature_field.app", reply=True, timeout=TIMEOUT)[
                        "content"
                    ],
                    "is_complete": reply_to(kc, kc.is_complete("for i in x:"))["content"],
                    "comm_info": reply_to(kc, kc.comm_info())["content"],
                    "beating": kc.hb_channel.is_beating(),
                }
                return answers

        # The host never polls: it just waits for the client to finish.
        answers = in_client_thread(client).result(TIMEOUT)
        assert answers["kernel_info"]["language_info"]["name"] == "python"
        assert answers["complete"]["matches"] == ["temperature_field"]
        assert answers["complete"]["cursor_start"] == 0
        assert answers["attribute"]["matches"] == ["temperature_field.append"]
        assert answers["is_complete"] == {"status": "incomplete", "indent": "    "}
        assert answers["comm_info"]["status"] == "ok"
        assert answers["beating"] is True


def test_an_interrupt_stops_a_long_cell_on_the_host_thread_and_the_host_goes_on() -> None:
    started = threading.Event()
    kernel = PythonKernel({"started": started})
    with start_kernel(kernel, "spin", safe_points=True) as handle:

        def client() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            with client_of(handle.connection_file) as kc:
                msg_id = kc.execute("started.set()\nn = 0\nwhile True:\n    n += 1")
                assert started.wait(TIMEOUT)  # the host thread is in the loop
                interrupted = control(kc, "interrupt_request")
                reply = reply_to(kc, msg_id)["content"]
                after, _ = execute(kc, "n > 0")
                return interrupted, reply, after

        future = in_client_thread(client)
        polls = []
        while not future.done():
            polls.append(handle.poll(0.05))  # returns normally: no KeyboardInterrupt here
        interrupted, reply, after = future.result()
        assert interrupted["content"] == {"status": "ok"}
        assert reply["status"] == "error"
        assert reply["ename"] == "KeyboardInterrupt"
        assert after["status"] == "ok"  # the next cell ran, at a later poll
        assert sum(polls) == 2
        assert kernel.namespace["n"] > 0


def test_without_safe_points_an_interrupt_stops_the_cell_in_its_worker_thread() -> None:
    started, stopped = threading.Event(), threading.Event()
    kernel = PythonKernel({"started": started, "stopped": stopped})
    with start_kernel(kernel, "worker") as handle, client_of(handle.connection_file) as kc:
        msg_id = kc.execute(
            "started.set()\nn = 0\n"
            "try:\n    while True:\n        n += 1\nfinally:\n    stopped.set()"
        )
        assert started.wait(TIMEOUT)
        assert control(kc, "interrupt_request")["content"] == {"status": "ok"}
        reply = reply_to(kc, msg_id)["content"]
        # The reply came once the loop had stopped: no thread left running the cell.
        assert stopped.is_set()
        assert reply["ename"] == "KeyboardInterrupt"
        after, _ = execute(kc, "'next'")
        assert after["status"] == "ok"


class TwoSteps(BaseKernel):
    """Each cell is two jobs on the host thread; between them the kernel sends the host
    thread a SIGINT (a user's Ctrl-C) and waits until the host has seen it."""

    def __init__(self, host: int, host_saw_it: threading.Event) -> None:
        super().__init__()
        self.host = host
        self.host_saw_it = host_saw_it
        self.ran: list[str] = []

    async def do_execute(self, code: str, ctx: Any) -> str:
        await ctx.run_blocking(self.ran.append, "first")
        signal.pthread_kill(self.host, signal.SIGINT)
        await trio.to_thread.run_sync(self.host_saw_it.wait, TIMEOUT)
        await ctx.run_blocking(self.ran.append, "second")
        return "done"


def test_a_ctrl_c_between_two_jobs_is_the_hosts_and_the_next_poll_resumes_the_cell() -> None:
    assert threading.current_thread() is threading.main_thread()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    host_saw_it = threading.Event()
    kernel = TwoSteps(threading.get_ident(), host_saw_it)
    with start_kernel(kernel, "ctrl-c", safe_points=True) as handle:

        def client() -> dict[str, Any]:
            with client_of(handle.connection_file) as kc:
                reply, _ = execute(kc, "go")
                return reply

        future = in_client_thread(client)
        with pytest.raises(KeyboardInterrupt):
            while True:
                handle.poll(0.05)
        host_saw_it.set()
        assert kernel.ran == ["first"]
        assert handle.has_pending  # the cell waits for a host again
        assert handle.poll(TIMEOUT) == 1
        assert kernel.ran == ["first", "second"]
        assert future.result(TIMEOUT)["status"] == "ok"


def test_input_in_a_cell_asks_the_frontend() -> None:
    with start_kernel(PythonKernel(), "stdin", safe_points=True) as handle:

        def client() -> tuple[dict[str, Any], list[dict[str, Any]], str]:
            with client_of(handle.connection_file) as kc:
                msg_id = kc.execute("name = input('who? ')\nprint('hello', name)", allow_stdin=True)
                request = kc.get_stdin_msg(timeout=TIMEOUT)
                kc.input("world")
                reply = reply_to(kc, msg_id)["content"]
                return reply, iopub_until(kc, msg_id, "stream"), request["content"]["prompt"]

        reply, iopub, prompt = poll_until_done(handle, in_client_thread(client))
        assert prompt == "who? "
        assert reply["status"] == "ok"
        assert iopub[-1]["content"]["text"] == "hello world\n"


@pytest.mark.parametrize(
    ("code", "ename"),
    [
        ("1/0", "ZeroDivisionError"),
        ("raise SystemExit(3)", "SystemExit"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
        ("def f(:\n  pass", "SyntaxError"),
        ("def f():\n    return undefined_name\nf()", "NameError"),
    ],
)
def test_an_exception_in_a_cell_never_escapes_poll(code: str, ename: str) -> None:
    with start_kernel(PythonKernel(), "faults", safe_points=True) as handle:

        def client() -> tuple[dict[str, Any], dict[str, Any]]:
            with client_of(handle.connection_file) as kc:
                failed, _ = execute(kc, code)
                fine, _ = execute(kc, "'still here'")
                return failed, fine

        failed, fine = poll_until_done(handle, in_client_thread(client))
        assert failed["status"] == "error"
        assert failed["ename"] == ename
        assert fine["status"] == "ok"
        # The traceback is the cell's: none of kernelsdk's own frames, nor the parser's.
        assert not any("kernelsdk" in line for line in failed["traceback"])
        assert not any("ast.py" in line for line in failed["traceback"])
        if ename == "NameError":
            assert '  File "<cell 1>", line 2, in f' in failed["traceback"]
            assert "    return undefined_name" in failed["traceback"]


def test_inspection_shows_the_host_objects_type_value_and_doc() -> None:
    """Answered on the kernel thread, without a poll, by lookups (no code of the cell)."""

    def steer(power: float) -> None:
        """Set the heater's power.

        More detail, shown at detail level 1."""

    kernel = PythonKernel({"pressure": 1.5, "steer": steer})
    with start_kernel(kernel, "inspect", safe_points=True) as handle:

        def client() -> list[dict[str, Any]]:
            with client_of(handle.connection_file) as kc:
                return [
                    kc.inspect(code, pos, level, reply=True, timeout=TIMEOUT)["content"]
                    for code, pos, level in [
                        ("pressure", 3, 0),
                        ("steer(1)", 2, 0),
                        ("steer", 5, 1),
                        ("nothing_here", 4, 0),
                    ]
                ]

        value, function, detailed, missing = in_client_thread(client).result(TIMEOUT)
    assert value["found"] is True
    assert value["data"]["text/plain"] == "pressure: builtins.float\nvalue: 1.5"
    text = function["data"]["text/plain"]
    assert "signature: steer(power: " in text
    assert text.endswith("Set the heater's power.")
    assert detailed["data"]["text/plain"].endswith("More detail, shown at detail level 1.")
    assert missing["found"] is False


def test_print_and_display_go_to_the_cell_not_to_sys_stdout(
    capfd: pytest.CaptureFixture[str],
) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")

    class Rich:
        def _repr_html_(self) -> str:
            return "<b>rich</b>"

    kernel = PythonKernel({"Rich": Rich})
    code = (
        "import sys\n"
        "print('to stdout')\n"
        "print('to stderr', file=sys.stderr)\n"
        "display(Rich())\n"
        "import matplotlib.figure\n"
        "fig = matplotlib.figure.Figure()\n"
        "fig.add_subplot().plot([1, 2, 3])\n"
        "display(fig)\n"
        "Rich()"
    )
    with start_kernel(kernel, "output", safe_points=True) as handle:

        def client() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            with client_of(handle.connection_file) as kc:
                return execute(kc, code)

        reply, iopub = poll_until_done(handle, in_client_thread(client))
    assert reply["status"] == "ok"
    streams = [
        (m["content"]["name"], m["content"]["text"]) for m in iopub if m["msg_type"] == "stream"
    ]
    assert streams == [("stdout", "to stdout\n"), ("stderr", "to stderr\n")]
    displays = [m["content"]["data"] for m in iopub if m["msg_type"] == "display_data"]
    assert displays[0]["text/html"] == "<b>rich</b>"
    assert displays[1]["image/png"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
    result = next(m for m in iopub if m["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/html"] == "<b>rich</b>"
    captured = capfd.readouterr()
    assert "to stdout" not in captured.out and "to stderr" not in captured.err


def test_the_pending_hook_says_when_a_cell_waits() -> None:
    flips: list[bool] = []
    flipped = threading.Event()

    def hook(pending: bool) -> None:
        flips.append(pending)
        flipped.set()

    with start_kernel(PythonKernel(), "hook", safe_points=True) as handle:
        handle.on_pending_changed = hook

        def client() -> dict[str, Any]:
            with client_of(handle.connection_file) as kc:
                msg_id = kc.execute("1")
                return reply_to(kc, msg_id)["content"]

        future = in_client_thread(client)
        assert flipped.wait(TIMEOUT)
        assert flips == [True]  # from the kernel thread, before any poll
        assert handle.poll(TIMEOUT) == 1
        assert future.result(TIMEOUT)["status"] == "ok"
        assert flips == [True, False]  # the host took it


# -- hosts with an event loop ---------------------------------------------------------------------


def test_an_asyncio_host_runs_cells_on_its_loop_thread() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    async def host() -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        loop = asyncio.get_running_loop()
        kernel = PythonKernel({"loop": loop, "loop_thread": threading.get_ident()})
        handle = await start_kernel_async(kernel, "asyncio-host")
        assert isinstance(handle, GuestKernel)
        async with handle:
            assert stat.S_IMODE(handle.connection_file.stat().st_mode) == 0o600

            def client() -> tuple[dict[str, Any], list[dict[str, Any]]]:
                with client_of(handle.connection_file) as kc:
                    return execute(
                        kc,
                        "import asyncio, threading\n"
                        "print(threading.get_ident() == loop_thread)\n"
                        "asyncio.get_running_loop() is loop",
                    )

            # The loop keeps running (and serving the kernel) while the client works.
            reply, iopub = await asyncio.wrap_future(in_client_thread(client))
        return reply, iopub, handle.connection_file.exists()

    reply, iopub, file_left = asyncio.run(host())
    assert reply["status"] == "ok"
    assert stdout_of(iopub) == "True\n"
    result = next(m for m in iopub if m["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/plain"] == "True"
    assert not file_left
    assert {s: signal.getsignal(s) for s in before} == before


def test_any_event_loop_with_a_thread_safe_call_soon_hosts_a_guest_kernel() -> None:
    """start_guest_kernel on the smallest loop there is: a queue of callbacks, run by this
    thread (what Qt's queued signal is to a Qt application)."""
    callbacks: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
    ready: list[GuestKernel] = []
    stopped: list[BaseException | None] = []
    kernel = PythonKernel({"loop_thread": threading.get_ident()})

    def client(handle: GuestKernel) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        try:
            with client_of(handle.connection_file) as kc:
                return [
                    execute(kc, "import threading\nprint(threading.get_ident() == loop_thread)"),
                    execute(kc, "input('never')"),
                ]
        finally:
            callbacks.put(handle.stop)  # through the loop, as anything from another thread

    start_guest_kernel(
        kernel,
        "custom-loop",
        run_sync_soon_threadsafe=callbacks.put,
        on_ready=ready.append,
        on_stopped=stopped.append,
    )
    future = None
    while not stopped:  # the host's loop
        callbacks.get(timeout=TIMEOUT)()
        if ready and future is None:
            future = in_client_thread(functools.partial(client, ready[0]))
    assert stopped == [None]
    assert future is not None
    (ran, ran_iopub), (asked, _) = future.result(TIMEOUT)
    assert ran["status"] == "ok"
    assert stdout_of(ran_iopub) == "True\n"  # on the loop's thread
    assert asked["ename"] == "StdinNotAllowedError"
    assert "host's event loop" in asked["evalue"]
    assert not ready[0].connection_file.exists()


# -- several kernels, detach, shutdown, files ---------------------------------------------------


def test_two_embedded_kernels_in_one_process_keep_apart() -> None:
    with (
        start_kernel(PythonKernel({"who": "first"}), "one", safe_points=True) as first,
        start_kernel(PythonKernel({"who": "second"}), "two") as second,
    ):
        assert first.connection_file != second.connection_file

        def client() -> list[str]:
            outputs = []
            for handle in (first, second, first):
                with client_of(handle.connection_file) as kc:
                    _, iopub = execute(kc, "print(who)")
                    outputs.append(stdout_of(iopub))
            return outputs

        # The first polls here; the second has no safe points: its cells run on its thread.
        assert poll_until_done(first, in_client_thread(client)) == [
            "first\n",
            "second\n",
            "first\n",
        ]


def test_shutdown_detaches_and_another_client_attaches_later() -> None:
    with start_kernel(PythonKernel(), "detach", safe_points=True) as handle:

        def first_client() -> dict[str, Any]:
            with client_of(handle.connection_file) as kc:
                execute(kc, "state = 'kept'")
                return control(kc, "shutdown_request", restart=False)["content"]

        assert poll_until_done(handle, in_client_thread(first_client)) == {
            "status": "ok",
            "restart": False,
        }
        assert not handle.stopped and handle.connection_file.exists()
        assert handle.detach_count == 1

        def second_client() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            with client_of(handle.connection_file) as kc:
                return execute(kc, "print(state)")

        reply, iopub = poll_until_done(handle, in_client_thread(second_client))
        assert reply["execution_count"] == 2
        assert stdout_of(iopub) == "kept\n"


def test_restart_is_refused_with_a_clear_message() -> None:
    with start_kernel(PythonKernel(), "norestart") as handle:
        with client_of(handle.connection_file) as kc:
            reply = control(kc, "shutdown_request", restart=True)["content"]
        assert reply["status"] == "error"
        assert reply["ename"] == "RestartRefused"
        assert "embedded in a host program" in reply["evalue"]
        assert not handle.stopped


def test_an_allowed_shutdown_ends_serve() -> None:
    kernel = PythonKernel()
    with start_kernel(kernel, "served", safe_points=True, allow_shutdown=True) as handle:

        def client() -> tuple[dict[str, Any], dict[str, Any]]:
            with client_of(handle.connection_file) as kc:
                ran, _ = execute(kc, "x = threading_ident()")
                shutdown = control(kc, "shutdown_request", restart=False)
                return ran, shutdown["content"]

        kernel.namespace["threading_ident"] = threading.get_ident
        future = in_client_thread(client)
        handle.serve()  # runs the cell here, returns on the shutdown
        ran, shutdown = future.result(TIMEOUT)
        assert ran["status"] == "ok"
        assert kernel.namespace["x"] == threading.get_ident()
        assert shutdown == {"status": "ok", "restart": False}
        assert handle.shutdown_requested
        assert not handle.connection_file.exists()
        assert handle.poll(0.0) == 0  # a host loop that polls on finds nothing, and no error


def test_the_connection_file_is_private_named_and_removed_on_stop(runtime_dir: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
    handle = start_kernel(PythonKernel(), "files")
    try:
        path = handle.connection_file
        assert path == runtime_dir / f"kernelsdk-embed-files-{os.getpid()}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert handle._thread.name == "kernelsdk-files"
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        handle.stop()
    assert not path.exists()
    assert handle.stopped
    handle.stop()  # idempotent
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_cell_may_stop_its_own_kernel() -> None:
    kernel = PythonKernel()
    handle = start_kernel(kernel, "self-stop", safe_points=True)
    handle.expose("handle", handle)

    def client() -> None:
        with client_of(handle.connection_file) as kc:
            kc.execute("handle.stop()\nafter_stop = True")  # no reply will come

    future = in_client_thread(client)
    assert handle.poll(TIMEOUT) == 1  # the cell ran here, to its end, and poll returned
    future.result(TIMEOUT)
    assert kernel.namespace["after_stop"] is True
    handle.stop()  # from the host: waits for the kernel's thread
    assert handle.stopped
    assert not handle.connection_file.exists()


def test_bad_names_and_unbindable_addresses_raise_in_the_caller() -> None:
    with pytest.raises(ValueError, match="invalid embedded kernel name"):
        start_kernel(PythonKernel(), "no/slashes")
    with pytest.raises(TransportError, match="cannot bind"):
        start_kernel(PythonKernel(), "badip", ip="203.0.113.1")  # TEST-NET-3: not ours


def test_an_unwritable_connection_file_or_runtime_dir_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised as itself, not inside an ExceptionGroup: the host's `except ConfigError` works."""
    with pytest.raises(ConfigError, match="cannot write the connection file"):
        start_kernel(PythonKernel(), "nofile", connection_file=tmp_path / "missing" / "k.json")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(blocker / "runtime"))
    with pytest.raises(ConfigError, match="set JUPYTER_RUNTIME_DIR"):
        start_kernel(PythonKernel(), "nodir")


@pytest.mark.parametrize("safe_points", [False, True], ids=["thread", "safe-points"])
def test_stop_ends_a_cell_waiting_for_input(safe_points: bool) -> None:
    """As a client's shutdown does: the pending input is cut off, the cell ends, and stop
    returns without waiting for its timeout (it waited for ever for a serving host)."""
    handle = start_kernel(PythonKernel(), "stop-input", safe_points=safe_points)
    served = threading.Thread(target=handle.serve, daemon=True)
    served.start()
    kc = BlockingKernelClient(connection_file=str(handle.connection_file))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        kc.execute("input('never answered? ')", allow_stdin=True)
        assert kc.get_stdin_msg(timeout=TIMEOUT)["content"]["prompt"] == "never answered? "
        stopper = threading.Thread(target=handle.stop, args=(TIMEOUT,), daemon=True)
        stopper.start()
        stopper.join(TIMEOUT)
        assert not stopper.is_alive()
        served.join(TIMEOUT)
        assert not served.is_alive()
        assert handle.stopped
    finally:
        kc.stop_channels()
        kc.context.destroy(linger=0)


@pytest.mark.parametrize("safe_points", [False, True], ids=["thread", "safe-points"])
def test_an_interrupt_ends_a_cell_waiting_for_input_and_the_kernel_goes_on(
    safe_points: bool,
) -> None:
    """The pending input is cut off and the cell ends with KeyboardInterrupt (raised as the
    wait ends, not sent to a thread blocked in C); the next cell runs."""
    with start_kernel(PythonKernel(), "interrupt-input", safe_points=safe_points) as handle:

        def client() -> tuple[dict[str, Any], dict[str, Any]]:
            with client_of(handle.connection_file) as kc:
                msg_id = kc.execute("input('waiting? ')", allow_stdin=True)
                kc.get_stdin_msg(timeout=TIMEOUT)
                control(kc, "interrupt_request")
                interrupted = reply_to(kc, msg_id)["content"]
                after, _ = execute(kc, "'next'")
                return interrupted, after

        interrupted, after = poll_until_done(handle, in_client_thread(client))
        assert interrupted["ename"] == "KeyboardInterrupt", interrupted
        assert after["status"] == "ok"


def test_an_asyncio_host_learns_at_once_that_its_kernel_cannot_listen() -> None:
    async def host() -> None:
        await start_kernel_async(PythonKernel(), "unbindable", ip="203.0.113.1")

    with pytest.raises(TransportError, match="cannot bind"):
        asyncio.run(host())


def test_without_safe_points_poll_only_waits_and_expose_needs_a_namespace() -> None:
    class Plain(BaseKernel):
        pass

    with start_kernel(Plain(), "plain") as handle:
        assert handle.poll(0.0) == 0
        assert not handle.has_pending
        with pytest.raises(TypeError, match="Plain has no namespace"):
            handle.expose("x", 1)
        with pytest.raises(ValueError, match="without safe points"):
            handle.on_pending_changed = print


def test_jupyter_console_attaches_with_existing() -> None:
    pytest.importorskip("jupyter_console")
    with start_kernel(PythonKernel({"answer": 42}), "console") as handle:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "jupyter_console",
                "--existing",
                str(handle.connection_file),
                "--simple-prompt",
                "--ZMQTerminalInteractiveShell.kernel_timeout=30",
            ],
            input="print(answer + 1)\nexit\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "43" in proc.stdout, proc.stdout + proc.stderr
        assert not handle.stopped  # the console's exit left the kernel running


def test_the_embedding_benchmark_runs_and_reports_every_figure() -> None:
    """benchmarks/embed_python.py --tiny: the structure of its results, never a timing."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "embed_python.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--tiny", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    starts = {"start", "start_gil_free", "start_floor"}
    assert set(results) == {"poll_ns", "overhead", "idle", *starts}
    assert results["poll_ns"] > 0
    assert set(results["overhead"]) == {"step_alone_ms", "step_embedded_ms", "ratio"}
    assert set(results["idle"]) == {"seconds", "cpu_percent", "wakeups_per_s"}
    for start in starts:
        assert results[start]["cells"] == 2  # the first of 3 is left out
