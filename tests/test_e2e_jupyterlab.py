"""JupyterLab end to end: a real JupyterLab server driven by a real browser (Chromium).

One JupyterLab server per module runs headless on 127.0.0.1 (a token, a free port, a temporary
root dir) inside the isolated Jupyter environment of the tests, so it lists their kernelspecs.
Playwright's Python package drives Debian's Chromium (``/usr/bin/chromium``; Playwright's own
browsers are never downloaded). For each kernel of ``SCENARIOS`` the test creates a notebook
from the launcher, runs cells that print, display HTML and an image, fail, read input and loop
until interrupted, restarts the kernel from the toolbar and runs a cell again, asserting on
what the page shows. Screenshots of every step go to ``artifacts/e2e-jupyterlab/``.

Another kernel is one more ``Scenario`` with its own cell sources; the Lua kernel
(``kernels/lua``, kernelspec ``lua54``) is one. On a Lua notebook whose cell runs a long loop,
"New Subshell Console for Notebook" opens a console that reads the loop's progress while the
cell still runs (kernel subshells, JEP 91).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import JupyterEnv

CHROMIUM = os.environ.get("KSDK_CHROMIUM", "/usr/bin/chromium")
if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing (pip install playwright)"
)
Page = sync_api.Page
Locator = sync_api.Locator
expect = sync_api.expect

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "e2e-jupyterlab"
JUPYTER_LAB = str(Path(sys.executable).with_name("jupyter-lab"))
# Flags for Chromium on a machine without network, GPU or sandbox (engineering notes, 5).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
]
# Generous: these only stop hangs (a loaded 2-core CI machine starts kernels slowly).
SERVER_TIMEOUT = 90.0  # seconds
UI_TIMEOUT = 60_000  # milliseconds
KERNEL_TIMEOUT = 90_000  # milliseconds, for kernel start, execution and restart
pytestmark = pytest.mark.timeout(300)

DONE_PROMPT = re.compile(r"^\s*\[(\d+)\]:\s*$")
HTML_MARKER = '<b class="ksdk-e2e">bold from the kernel</b>'


@dataclass(frozen=True)
class Scenario:
    """What to run in a kernel's notebook; a step whose source is None is skipped."""

    kernel: str  # kernelspec name
    display_name: str  # its launcher card
    print_source: str  # prints PRINTED to stdout
    printed: str
    html_source: str | None = None  # displays HTML_MARKER as text/html
    png_source: str | None = None  # displays an image/png
    error_source: str | None = None  # fails with ename
    ename: str = ""
    error_shown: str = ""  # what the page shows of the error, if not ename
    input_source: str | None = None  # reads a line (prompt INPUT_PROMPT) and prints it
    input_prompt: str = ""
    input_answered: str = "Ada Lovelace"  # shown once "Ada Lovelace" was typed in
    loop_source: str | None = None  # prints LOOP_STARTED, then runs until interrupted
    loop_started: str = ""
    interrupted: str = "KeyboardInterrupt"  # shown after the interrupt


def lua_png_literal(width: int = 24, height: int = 12) -> str:
    """A valid PNG (a plain teal RGB rectangle) as a Lua string literal of decimal escapes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    rows = b"".join(b"\x00" + bytes([0, 128, 128]) * width for _ in range(height))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
    return '"' + "".join(f"\\{b}" for b in png) + '"'


SCENARIOS = [
    Scenario(kernel="echo", display_name="Echo", print_source="hello lab", printed="hello lab"),
    Scenario(
        kernel="probe",
        display_name="Probe (signal)",
        print_source="print hello lab",
        printed="hello lab",
        html_source=f"html {HTML_MARKER}",
        png_source="png",
        error_source="error",
        ename="ProbeError",
        input_source="input Your name? ",
        input_prompt="Your name?",
        loop_source="print looping\nsleep 60",
        loop_started="looping",
    ),
    Scenario(
        kernel="lua54",
        display_name="Lua 5.4",
        print_source="print('hello ' .. 'lab')",
        printed="hello lab",
        html_source=f"display.html('{HTML_MARKER}')",
        png_source=f"display.png({lua_png_literal()})",
        error_source="error('boom from Lua')",
        ename="LuaError",
        # The Lua kernel's traceback is Lua's (message, then stack traceback): no ename.
        error_shown="boom from Lua",
        input_source="name = io.read()\nprint('hello ' .. name)",
        input_answered="hello Ada Lovelace",
        loop_source="io.write('looping\\n')\nwhile true do end",
        loop_started="looping",
    ),
]


# -- the JupyterLab server ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str
    token: str
    root_dir: Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None


def _write_lab_settings(settings_dir: Path) -> None:
    """User settings: no news or update checks (the network is closed), no popups (not even
    the rename dialog on the first save of an untitled notebook)."""
    notification = settings_dir / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false"}), encoding="utf-8"
    )
    docmanager = settings_dir / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True, exist_ok=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(
        json.dumps({"renameUntitledFileOnSave": False}), encoding="utf-8"
    )


@pytest.fixture(scope="module")
def lab(jupyter_env: JupyterEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("jupyterlab")
    root_dir, settings_dir, workspaces_dir = base / "root", base / "settings", base / "ws"
    for d in (root_dir, settings_dir, workspaces_dir):
        d.mkdir()
    _write_lab_settings(settings_dir)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    log = (ARTIFACTS / "jupyterlab-server.log").open("wb")
    proc = subprocess.Popen(
        [
            JUPYTER_LAB,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port-retries=0",
            "--allow-root",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root_dir}",
            f"--LabServerApp.user_settings_dir={settings_dir}",
            f"--LabServerApp.workspaces_dir={workspaces_dir}",
            "--LabApp.news_url=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),  # the isolated Jupyter env of the tests
    )
    server = Lab(url, token, root_dir)
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}; see {log.name}")
            with contextlib.suppress(OSError):
                server.api("GET", "/api/status")
                break
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer in {SERVER_TIMEOUT} s; see {log.name}")
            time.sleep(0.2)
        specs = server.api("GET", "/api/kernelspecs")["kernelspecs"]
        assert {s.kernel for s in SCENARIOS} <= set(specs), sorted(specs)
        yield server
    finally:
        # Shut the kernels down through the server, then the server itself.
        with contextlib.suppress(OSError, ValueError):
            for kernel in server.api("GET", "/api/kernels"):
                server.api("DELETE", f"/api/kernels/{kernel['id']}")
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT)
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    try:
        yield page
    finally:
        name = re.sub(r"\W+", "-", request.node.name).strip("-")
        with contextlib.suppress(Exception):
            page.screenshot(path=str(ARTIFACTS / f"{name}-last.png"), full_page=True)
        (ARTIFACTS / f"{name}-console.log").write_text("\n".join(console), encoding="utf-8")
        context.close()
        # Shut this test's kernels down (the module's server lives on).
        with contextlib.suppress(OSError):
            for session in lab.api("GET", "/api/sessions"):
                lab.api("DELETE", f"/api/sessions/{session['id']}")


class Notebook:
    """The notebook open in the page, run cell by cell like a user does."""

    def __init__(self, page: Page, shots: str) -> None:
        self.page = page
        self.panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")
        self.shots = shots
        self.step = 0
        for old in ARTIFACTS.glob(f"{shots}-[0-9][0-9]-*.png"):
            old.unlink()

    def screenshot(self, what: str) -> None:
        self.step += 1
        path = ARTIFACTS / f"{self.shots}-{self.step:02d}-{what}.png"
        self.page.screenshot(path=str(path))

    def type_cell(self, source: str) -> Locator:
        """Type ``source`` into the last (empty) cell and run it with Shift+Enter."""
        index = self.cells.count() - 1
        cell = self.cells.nth(index)
        editor = cell.locator(".cm-content")
        editor.click()
        expect(editor).to_be_focused()
        # Inserted as typed text, but without the editor's auto-indent and auto-close (which
        # depend on the language's mode): the cell holds exactly ``source``.
        self.page.keyboard.insert_text(source)
        expect(editor).to_have_text(source.replace("\n", ""))
        self.page.keyboard.press("Shift+Enter")
        # Shift+Enter on the last cell appends an empty one.
        expect(self.cells).to_have_count(index + 2, timeout=KERNEL_TIMEOUT)
        return cell

    def wait_done(self, cell: Locator) -> int:
        """Wait until the cell has run; its execution count."""
        prompt = cell.locator(".jp-InputArea-prompt")
        expect(prompt).to_have_text(DONE_PROMPT, timeout=KERNEL_TIMEOUT)
        match = DONE_PROMPT.match(prompt.inner_text())
        assert match, prompt.inner_text()
        return int(match.group(1))

    def run(self, source: str) -> tuple[Locator, int]:
        cell = self.type_cell(source)
        return cell, self.wait_done(cell)

    def save(self, lab: Lab) -> Any:
        """Save the notebook (Ctrl+S) and return the .ipynb JupyterLab wrote, read back
        through the contents API."""
        tab = self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        dirty = re.compile(r"\bjp-mod-dirty\b")
        expect(tab).to_have_class(dirty)  # unsaved cells: the save below is what cleans it
        self.page.keyboard.press("Control+s")
        expect(tab).not_to_have_class(dirty, timeout=KERNEL_TIMEOUT)
        (session,) = lab.api("GET", "/api/sessions")
        path = urllib.parse.quote(session["path"])
        return lab.api("GET", f"/api/contents/{path}?content=1&type=notebook")["content"]

    def wait_kernel_idle(self) -> None:
        status = self.panel.locator(".jp-Notebook-ExecutionIndicator")
        expect(status).to_have_attribute("data-status", "idle", timeout=KERNEL_TIMEOUT)


def open_new_notebook(page: Page, lab: Lab, scenario: Scenario) -> Notebook:
    # A workspace of its own, reset: nothing restored from an earlier test.
    page.goto(f"{lab.url}/lab/workspaces/e2e-{scenario.kernel}?reset&token={lab.token}")
    card = page.locator(
        f'.jp-LauncherCard[data-category="Notebook"][title="{scenario.display_name}"]'
    )
    card.click(timeout=KERNEL_TIMEOUT)
    notebook = Notebook(page, scenario.kernel)
    expect(notebook.cells).to_have_count(1, timeout=KERNEL_TIMEOUT)
    kernel_name = notebook.panel.locator(".jp-KernelName")
    expect(kernel_name).to_have_text(scenario.display_name, timeout=KERNEL_TIMEOUT)
    notebook.wait_kernel_idle()
    return notebook


def outputs_text(cell: Locator) -> str:
    return cell.locator(".jp-OutputArea").inner_text()


# -- the scenario -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.kernel for s in SCENARIOS])
def test_jupyterlab_notebook(page: Page, lab: Lab, scenario: Scenario) -> None:
    nb = open_new_notebook(page, lab, scenario)
    nb.screenshot("new-notebook")
    count = 0

    cell, count = nb.run(scenario.print_source)
    stdout = cell.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
    expect(stdout.first).to_contain_text(scenario.printed)
    assert count == 1
    nb.screenshot("print")

    if scenario.html_source is not None:
        cell, count = nb.run(scenario.html_source)
        bold = cell.locator(".jp-RenderedHTMLCommon b.ksdk-e2e")
        expect(bold).to_have_text("bold from the kernel")
        nb.screenshot("html")

    if scenario.png_source is not None:
        cell, count = nb.run(scenario.png_source)
        image = cell.locator(".jp-RenderedImage img")
        expect(image).to_be_visible()
        expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
        # The browser decoded it: a real image, not a broken one.
        assert image.evaluate("img => img.complete && img.naturalWidth") > 0
        nb.screenshot("png")

    if scenario.error_source is not None:
        cell, count = nb.run(scenario.error_source)
        error = cell.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
        )
        expect(error.first).to_contain_text(scenario.error_shown or scenario.ename)
        nb.screenshot("error")

    if scenario.input_source is not None:
        cell = nb.type_cell(scenario.input_source)
        box = cell.locator(".jp-Stdin-input")
        expect(box).to_be_visible(timeout=KERNEL_TIMEOUT)
        expect(cell.locator(".jp-Stdin-prompt")).to_contain_text(scenario.input_prompt)
        nb.screenshot("input-asked")
        box.fill("Ada Lovelace")
        box.press("Enter")
        count = nb.wait_done(cell)
        expect(cell.locator(".jp-OutputArea")).to_contain_text(scenario.input_answered)
        nb.screenshot("input-answered")

    if scenario.loop_source is not None:
        cell = nb.type_cell(scenario.loop_source)
        # It is running once it printed; then interrupt it from the toolbar.
        expect(cell.locator(".jp-OutputArea")).to_contain_text(
            scenario.loop_started, timeout=KERNEL_TIMEOUT
        )
        nb.screenshot("loop-running")
        nb.panel.locator('[data-jp-item-name="interrupt"]').click()
        count = nb.wait_done(cell)
        expect(cell.locator(".jp-OutputArea")).to_contain_text(scenario.interrupted)
        nb.wait_kernel_idle()
        nb.screenshot("interrupted")
        # The kernel lives on: the next cell runs.
        cell, after = nb.run(scenario.print_source)
        assert after == count + 1
        expect(cell.locator(".jp-OutputArea")).to_contain_text(scenario.printed)

    # What JupyterLab saves: the kernelspec, and the outputs as the kernel sent them.
    saved = nb.save(lab)
    assert saved["metadata"]["kernelspec"]["name"] == scenario.kernel
    errors = [
        o["ename"]
        for c in saved["cells"]
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    expected_errors = [scenario.ename] if scenario.error_source is not None else []
    if scenario.loop_source is not None:
        expected_errors.append(scenario.interrupted)
    assert errors == expected_errors
    nb.screenshot("saved")

    # Restart the kernel from the toolbar; the next cell runs in a new kernel (count 1).
    nb.panel.locator('[data-jp-item-name="restart"]').click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Restart")
    nb.screenshot("restart-dialog")
    dialog.locator(".jp-mod-accept").click()
    expect(dialog).to_have_count(0)
    nb.wait_kernel_idle()
    cell, count = nb.run(scenario.print_source)
    assert count == 1
    expect(cell.locator(".jp-OutputArea")).to_contain_text(scenario.printed)
    nb.screenshot("after-restart")


# -- kernel subshells: a subshell console beside a running Lua cell (issue 13) -------------------
#
# JupyterLab 4.4+ offers "New Subshell Console for Notebook" (command
# notebook:create-subshell-console) for a kernel whose kernel_info claims "kernel subshells"; the
# console's cells run in a subshell of the notebook's kernel. The Lua kernel runs them at a hook
# point of the running cell (kernels/lua/kernelsdk_lua/_state.py). Screenshots:
# lua54-subshell-*.png.

SUBSHELL_LOOP = (
    "progress, stop_loop = 0, false "
    "while not stop_loop do progress = progress + 1 "
    'if progress % 2000000 == 0 then print("at " .. progress) end end '
    "return progress"
)


def printed_progress(cell: Locator) -> int:
    """The last progress the notebook cell printed (0 before its first line)."""
    found = re.findall(r"at (\d+)", cell.locator(".jp-OutputArea").inner_text())
    return int(found[-1]) if found else 0


def wait_progress_beyond(page: Page, cell: Locator, floor: int) -> int:
    deadline = KERNEL_TIMEOUT
    step = 100
    while True:
        now = printed_progress(cell)
        if now > floor:
            return now
        deadline -= step
        assert deadline > 0, f"the loop printed nothing beyond {floor}"
        page.wait_for_timeout(step)


def console_run(page: Page, console: Locator, source: str) -> Locator:
    """Type ``source`` into the console's prompt, run it (Shift+Enter); its executed cell."""
    executed = console.locator(".jp-CodeConsole-content .jp-Cell")
    before = executed.count()
    editor = console.locator(".jp-CodeConsole-promptCell .cm-content")
    editor.click()
    page.keyboard.insert_text(source)
    page.keyboard.press("Shift+Enter")
    expect(executed).to_have_count(before + 1, timeout=KERNEL_TIMEOUT)
    cell = executed.nth(before)
    prompt = cell.locator(".jp-InputArea-prompt")
    expect(prompt).to_have_text(re.compile(r"^\s*\[\d+\]:\s*$"), timeout=KERNEL_TIMEOUT)
    return cell


def test_a_subshell_console_reads_a_running_lua_loop(page: Page, lab: Lab) -> None:
    (scenario,) = [s for s in SCENARIOS if s.kernel == "lua54"]
    nb = open_new_notebook(page, lab, scenario)
    nb.shots = "lua54-subshell"
    for old in ARTIFACTS.glob("lua54-subshell-[0-9][0-9]-*.png"):
        old.unlink()
    cell = nb.type_cell(SUBSHELL_LOOP)
    floor = wait_progress_beyond(page, cell, 0)
    nb.screenshot("loop-running")

    # The command JupyterLab shows only for a kernel that claims subshells, from the palette.
    page.keyboard.press("Control+Shift+c")
    palette = page.locator(".lm-CommandPalette")
    expect(palette).to_be_visible()
    palette.locator("input").fill("New Subshell Console for Notebook")
    item = palette.locator(
        '.lm-CommandPalette-item[data-command="notebook:create-subshell-console"]'
    )
    expect(item).to_have_count(1)
    item.click()
    console = page.locator(".jp-ConsolePanel:not(.lm-mod-hidden)")
    expect(console).to_have_count(1, timeout=KERNEL_TIMEOUT)
    nb.screenshot("subshell-console")

    seen: list[int] = []
    for _ in range(3):
        read = console_run(page, console, "progress")
        value = int(read.locator(".jp-OutputArea-output").last.inner_text().strip())
        assert value >= floor
        seen.append(value)
        floor = wait_progress_beyond(page, cell, value)  # the loop went on meanwhile
    nb.screenshot("progress-read")
    assert seen == sorted(seen) and len(set(seen)) == 3, seen
    # The console's cells are counted in the subshell: 1, 2, 3, whatever the notebook's.
    prompts = console.locator(".jp-CodeConsole-content .jp-Cell .jp-InputArea-prompt")
    shown = [p.strip() for p in prompts.all_inner_texts() if p.strip()]  # not the banner
    assert shown == ["[1]:", "[2]:", "[3]:"]
    # The notebook cell is still running: its prompt shows [*].
    expect(cell.locator(".jp-InputArea-prompt")).to_have_text(re.compile(r"\[\*\]"))

    console_run(page, console, "stop_loop = true")
    count = nb.wait_done(cell)
    assert count == 1
    result = int(cell.locator(".jp-OutputArea-executeResult .jp-OutputArea-output").inner_text())
    assert result > seen[-1]
    nb.wait_kernel_idle()
    nb.screenshot("loop-stopped")


# -- the debugger: a breakpoint in a Lua function, stepped through (issue 14) --------------------
#
# The notebook toolbar's bug button starts JupyterLab's debugger for a kernel whose kernelspec
# says metadata.debugger (the Lua kernel's does); a click in the breakpoint gutter of a cell
# line sets a breakpoint there (JupyterLab dumps the cell and sends setBreakpoints with its
# file); running the cell stops it, the Callstack and Variables panels show the stopped
# frame, Next steps a line, Continue lets the cell finish. Screenshots: lua54-debugger-*.png.

DEBUG_CELL = """\
local function double(a)
  local b = a * 2
  local c = b + 1
  return c
end
print("answer", double(20))"""


def set_breakpoint(page: Page, cell: Locator, line: int) -> None:
    """Click the breakpoint gutter beside ``line`` of ``cell``'s editor."""
    number = cell.locator(".cm-lineNumbers .cm-gutterElement").filter(
        has_text=re.compile(rf"^{line}$")
    )
    gutter = cell.locator(".cm-gutter.cm-breakpoint-gutter")
    expect(gutter).to_be_visible()
    row, column = number.bounding_box(), gutter.bounding_box()
    assert row is not None and column is not None
    page.mouse.click(column["x"] + column["width"] / 2, row["y"] + row["height"] / 2)
    expect(cell.locator(".cm-breakpoint-icon")).to_have_count(1)


def variable_shown(page: Page, name: str, value: str) -> Locator:
    """The Variables panel's row of ``name`` once it shows ``value``."""
    row = page.locator(".jp-DebuggerVariables .jp-TreeItem, .jp-DebuggerVariables li").filter(
        has=page.locator(".jp-DebuggerVariables-name", has_text=re.compile(rf"^{name}$"))
    )
    expect(row.first).to_contain_text(value, timeout=KERNEL_TIMEOUT)
    return row.first


def test_lua_debugger_stops_at_a_breakpoint_and_steps(page: Page, lab: Lab) -> None:
    (scenario,) = [s for s in SCENARIOS if s.kernel == "lua54"]
    nb = open_new_notebook(page, lab, scenario)
    nb.shots = "lua54-debugger"
    for old in ARTIFACTS.glob("lua54-debugger-[0-9][0-9]-*.png"):
        old.unlink()
    cell = nb.cells.nth(0)  # Shift+Enter appends another below it
    editor = cell.locator(".cm-content")
    editor.click()
    page.keyboard.insert_text(DEBUG_CELL)

    bug = nb.panel.locator(".jp-DebuggerBugButton button, button.jp-DebuggerBugButton").first
    expect(bug).to_be_enabled(timeout=KERNEL_TIMEOUT)
    bug.click()
    expect(bug).to_have_attribute("aria-pressed", "true", timeout=KERNEL_TIMEOUT)
    sidebar = page.locator(".jp-DebuggerSidebar")
    if not sidebar.is_visible():
        page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jp-debugger-sidebar"]').click()
    expect(sidebar).to_be_visible()
    set_breakpoint(page, cell, 2)
    nb.screenshot("breakpoint-set")

    editor.click()
    page.keyboard.press("Shift+Enter")
    # Stopped on line 2, inside the function: the frame, its line highlighted, its local.
    frames = page.locator(".jp-DebuggerCallstackFrame")
    expect(frames.first).to_contain_text("double", timeout=KERNEL_TIMEOUT)
    expect(cell.locator(".jp-DebuggerEditor-highlight")).to_have_count(1)
    expect(cell.locator(".jp-DebuggerEditor-highlight")).to_contain_text("local b = a * 2")
    variable_shown(page, "a", "20")
    expect(cell.locator(".jp-InputArea-prompt")).to_have_text(re.compile(r"\[\*\]"))
    nb.screenshot("stopped")

    page.locator(".jp-DebuggerSidebar [data-command='debugger:next']").first.click()
    expect(cell.locator(".jp-DebuggerEditor-highlight")).to_contain_text(
        "local c = b + 1", timeout=KERNEL_TIMEOUT
    )
    variable_shown(page, "b", "40")
    nb.screenshot("stepped")

    page.locator(".jp-DebuggerSidebar [data-command='debugger:continue']").first.click()
    nb.wait_done(cell)
    expect(cell.locator(".jp-OutputArea")).to_contain_text("answer\t41", timeout=KERNEL_TIMEOUT)
    expect(frames).to_have_count(0)
    nb.screenshot("finished")
