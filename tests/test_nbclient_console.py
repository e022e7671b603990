"""Real frontends: nbclient runs notebooks, ``jupyter console`` is driven through a pty."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pexpect
import pytest
from conftest import JupyterEnv
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.usefixtures("jupyter_env")

CONSOLE = str(Path(sys.executable).with_name("jupyter-console"))


def run_notebook(kernel_name: str, cells: list[str], **options: Any) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name=kernel_name, timeout=60, startup_timeout=60, **options).execute()
    return nb


# -- nbclient ----------------------------------------------------------------------------------


def test_nbclient_echo_notebook() -> None:
    cells = ["hello", "hello, world", "line one\nline two"]
    nb = run_notebook("echo", cells)
    for n, (cell, code) in enumerate(zip(nb.cells, cells, strict=True), 1):
        assert cell.execution_count == n
        assert [o.output_type for o in cell.outputs] == ["stream", "execute_result"]
        stream, result = cell.outputs
        assert stream.name == "stdout"
        assert stream.text == code + "\n"
        assert result.data == {"text/plain": code}
        assert result.execution_count == n
    assert nb.metadata.language_info.name == "echo"
    nbformat.validate(nb)


def test_nbclient_echo_msgpack_notebook() -> None:
    """The msgpack kernelspec through nbclient, the client packing msgpack too."""
    from traitlets.config import Config

    config = Config()
    config.Session.packer = "msgpack"
    nb = new_notebook(cells=[new_code_cell("packed")])
    NotebookClient(nb, kernel_name="echo-msgpack", timeout=60, config=config).execute()
    assert nb.cells[0].outputs[1].data == {"text/plain": "packed"}


def test_nbclient_probe_errors_displays_and_results() -> None:
    cells = [
        "print before",
        "error",
        "display d1 first\nupdate d1 second\nresult done",
        "stderr oops",
    ]
    nb = run_notebook("probe", cells, allow_errors=True)
    c0, c1, c2, c3 = nb.cells
    assert [(o.output_type, o.text) for o in c0.outputs] == [("stream", "before\n")]
    assert [o.output_type for o in c1.outputs] == ["error"]
    assert c1.outputs[0].ename == "ProbeError"
    # nbclient applies update_display_data to the output shown with that display_id.
    assert [o.output_type for o in c2.outputs] == ["display_data", "execute_result"]
    assert c2.outputs[0].data == {"text/plain": "second"}
    assert c2.outputs[1].data == {"text/plain": "done"}
    assert [(o.name, o.text) for o in c3.outputs] == [("stderr", "oops\n")]
    assert [c.execution_count for c in nb.cells] == [1, 2, 3, 4]
    nbformat.validate(nb)


def test_nbclient_stops_at_error_without_allow_errors() -> None:
    nb = new_notebook(cells=[new_code_cell(c) for c in ("print a", "error", "print never")])
    client = NotebookClient(nb, kernel_name="probe", timeout=60)
    with pytest.raises(CellExecutionError, match="ProbeError"):
        client.execute()
    assert nb.cells[2].outputs == []


# -- jupyter console ---------------------------------------------------------------------------


def spawn_console(kernel: str) -> pexpect.spawn:
    child = pexpect.spawn(
        CONSOLE,
        ["--simple-prompt", "--kernel", kernel],
        env=dict(os.environ),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    child.expect(r"In \[1\]: ")
    return child


def exit_console(child: pexpect.spawn) -> None:
    child.sendeof()
    if child.expect([r"Do you really want to exit", pexpect.EOF]) == 0:
        child.sendline("y")
        child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before


def test_console_echo_round_trip(jupyter_env: JupyterEnv) -> None:
    child = spawn_console("echo")
    try:
        child.sendline("hello from the console")
        child.expect(r"Out\[1\]: hello from the console")
        child.expect(r"In \[2\]: ")
        child.sendline("second cell")
        child.expect(r"Out\[2\]: second cell")
        child.expect(r"In \[3\]: ")
        exit_console(child)
    finally:
        if child.isalive():
            child.terminate(force=True)


@pytest.mark.parametrize("attempt", range(3))
def test_console_with_piped_input(jupyter_env: JupyterEnv, attempt: int) -> None:
    """A cell piped in runs the moment the prompt shows. jupyter console does not wait for
    its IOPub connection, which can lag the shell one by a reconnect interval; the kernel
    must not publish that cell's busy/idle to nobody (the console would wait forever)."""
    proc = subprocess.run(
        [CONSOLE, "--simple-prompt", "--kernel", "echo"],
        input="piped cell\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Out[1]: piped cell" in proc.stdout


def test_console_interrupt(jupyter_env: JupyterEnv) -> None:
    child = spawn_console("probe")
    try:
        child.sendline("print ready")
        child.expect("ready")
        child.expect(r"In \[2\]: ")
        child.sendline("sleep 30")
        time.sleep(1.0)  # the cell is running now
        child.sendintr()  # Ctrl-C: the console interrupts its kernel (SIGINT to its group)
        child.expect("KeyboardInterrupt")
        child.expect(r"In \[3\]: ")
        child.sendline("result after the interrupt")
        child.expect(r"Out\[3\]: after the interrupt")
        child.expect(r"In \[4\]: ")
        exit_console(child)
    finally:
        if child.isalive():
            child.terminate(force=True)


# ANSI escape sequences between the characters the full prompt_toolkit interface draws.
ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def full_console(kernel: str) -> pexpect.spawn:
    """``jupyter console`` with its full prompt_toolkit interface, in a pty."""
    return pexpect.spawn(
        CONSOLE,
        # Its complete_request gives up after 5 s by default: generous for a loaded machine.
        ["--kernel", kernel, "--ZMQCompleter.timeout=60"],
        # No cursor position requests: nobody in the pty answers them.
        env={**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1"},
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )


def test_console_tab_completion(jupyter_env: JupyterEnv) -> None:
    """The full prompt_toolkit interface (no --simple-prompt, which has no completion): Tab
    completes a word the echo kernel has seen, through complete_request."""
    child = full_console("echo")
    try:
        child.expect(rf"In \[{ANSI}1{ANSI}\]: ")
        child.send("zebrafish42 runs\r")
        child.expect(rf"Out\[{ANSI}1{ANSI}\]: {ANSI}zebrafish42 runs")
        child.expect(rf"In \[{ANSI}2{ANSI}\]: ")
        child.send("zebraf\t")
        child.expect("zebrafish42")  # the completion was inserted
        child.send(" done\r")
        child.expect(rf"Out\[{ANSI}2{ANSI}\]: {ANSI}zebrafish42 done")
        child.expect(rf"In \[{ANSI}3{ANSI}\]: ")
        exit_console(child)
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_console_lua_cells_completion_and_interrupt(jupyter_env: JupyterEnv) -> None:
    """The Lua kernel in the full interface: cells with output and results, Tab completion of
    ``string.fo`` (complete_request), and Ctrl-C stopping ``while true do end`` (SIGINT to
    the kernel: its kernelspec's interrupt_mode is signal); its state survives."""
    child = full_console("lua54")
    try:
        child.expect(rf"In \[{ANSI}1{ANSI}\]: ")
        child.send("x = 6 * 7; print('x is', x)\r")
        child.expect(r"x is\t42")
        child.expect(rf"In \[{ANSI}2{ANSI}\]: ")
        child.send("string.fo\t")
        child.expect("format")  # the completion was inserted
        child.send("('%05.1f', x)\r")
        child.expect(rf"Out\[{ANSI}2{ANSI}\]: {ANSI}\"042\.0\"")
        child.expect(rf"In \[{ANSI}3{ANSI}\]: ")
        # One line, one cell. The kernel's output, not the echo of the input ('loo' .. 'ping'),
        # tells that the loop runs: the console is executing (the terminal is cooked again, so
        # Ctrl-C is SIGINT, which the console relays to its kernel, not a key for the prompt).
        child.send("io.write('loo' .. 'ping\\n') while true do end\r")
        child.expect("looping")
        child.sendintr()
        child.expect("KeyboardInterrupt")
        child.expect(rf"In \[{ANSI}4{ANSI}\]: ")
        child.send("x + 1\r")
        child.expect(rf"Out\[{ANSI}4{ANSI}\]: {ANSI}43")
        child.expect(rf"In \[{ANSI}5{ANSI}\]: ")
        exit_console(child)
    finally:
        if child.isalive():
            child.terminate(force=True)
