"""JupyterLab in Chromium attaching to the running in-situ simulation (issue 11).

examples/insitu/heat.c runs on 2 MPI ranks (the mpich wheel's mpiexec, as in
tests/test_embed_insitu.py); ``python -m kernelsdk install --attach NAME`` writes its
"Attach: NAME" kernelspec into the tests' Jupyter environment; the JupyterLab server, browser
and page are those of tests/test_e2e_jupyterlab.py. From the launcher a notebook opens on the
attach kernel; a cell prints the step from every rank (rank-labelled, one step), a collective
cell gathers T to rank 0 and displays a matplotlib image, and a last cell moves the end of the
run near: the simulation exits on its own, every rank is gone, and the connection file with
them. Screenshots of every step: ``artifacts/e2e-jupyterlab/insitu-*.png``.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import JupyterEnv

# The JupyterLab server, browser and page fixtures (the module skips itself where Chromium or
# Playwright is missing), and the simulation's build and launcher.
from test_e2e_jupyterlab import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    KERNEL_TIMEOUT,
    Lab,
    Locator,
    Page,
    Scenario,
    browser,
    expect,
    lab,
    open_new_notebook,
    page,
)
from test_embed_insitu import (  # noqa: F401 (fixture)
    GATHER_AND_PLOT,
    TIMEOUT,
    Heat,
    _install_attach,
    heat_binary,
)

BIN = Path(sys.executable).parent
pytestmark = [
    pytest.mark.skipif(not (BIN / "mpicc").exists(), reason="no mpicc (pip install mpich)"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler"),
    pytest.mark.timeout(300),
]

SHOTS = "insitu"
STEP_CELL = "print('step', int(step), 'of rank', rank, 'of', size)"
STEP_LINE = re.compile(r"^\[rank (\d+)\] step (\d+) of rank (\d+) of 2$", re.MULTILINE)


@pytest.fixture
def heat(jupyter_env: JupyterEnv, heat_binary: Path) -> Iterator[Heat]:  # noqa: F811
    """The simulation on 2 ranks, and its attach kernelspec; ended (at worst killed) after."""
    sim = Heat(heat_binary, 2, jupyter_env)
    try:
        _install_attach(jupyter_env, sim.name)
        yield sim
    finally:
        sim.kill()


def stdout_of(cell: Locator) -> str:
    stdout = cell.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
    return "\n".join(stdout.all_inner_texts())


def test_jupyterlab_attaches_to_the_simulation_and_shows_the_field(
    heat: Heat,
    page: Page,  # noqa: F811
    lab: Lab,  # noqa: F811
) -> None:
    scenario = Scenario(
        kernel=f"attach-{heat.name}",
        display_name=f"Attach: {heat.name}",
        print_source=STEP_CELL,
        printed="",
    )
    # The launcher shows the attach kernelspec like any other; opening it attaches.
    nb = open_new_notebook(page, lab, scenario)
    nb.shots = SHOTS
    for old in ARTIFACTS.glob(f"{SHOTS}-[0-9][0-9]-*.png"):
        old.unlink()
    nb.screenshot("attached")
    ranks = heat.rank_pids()
    assert len(ranks) == 2
    (session,) = lab.api("GET", "/api/sessions")
    assert session["kernel"]["name"] == f"attach-{heat.name}"

    # Every rank prints, labelled, at one and the same step.
    cell, count = nb.run(STEP_CELL)
    assert count == 1
    out = cell.locator(".jp-OutputArea")
    for rank in (0, 1):
        expect(out).to_contain_text(f"[rank {rank}] step ")
    lines = STEP_LINE.findall(stdout_of(cell))
    assert sorted((label, own) for label, _, own in lines) == [("0", "0"), ("1", "1")], lines
    (first,) = {int(s) for _, s, _ in lines}
    nb.screenshot("step-from-every-rank")

    # A collective cell: T gathered to rank 0, displayed as a matplotlib PNG.
    cell, count = nb.run(GATHER_AND_PLOT)
    assert count == 2
    image = cell.locator(".jp-RenderedImage img")
    expect(image).to_be_visible()
    expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    assert image.evaluate("img => img.complete && img.naturalWidth") > 0  # decoded, not broken
    expect(cell.locator(".jp-OutputArea")).to_contain_text("[rank 0] gathered (64, 64) True")
    image.scroll_into_view_if_needed()
    nb.screenshot("gathered-field")

    # The simulation ran on between the cells.
    cell, count = nb.run(STEP_CELL)
    lines = STEP_LINE.findall(stdout_of(cell))
    assert len(lines) == 2, lines
    (later,) = {int(s) for _, s, _ in lines}
    assert later > first

    # End the run from the notebook: 20 steps from now on every rank (rank 0's word counts).
    cell, count = nb.run("nsteps = int(step) + 20\nprint('ending at', int(nsteps))")
    end = int(re.findall(r"\[rank 0\] ending at (\d+)", stdout_of(cell))[0])
    nb.screenshot("run-ending")
    status, rest = heat.wait()
    assert status == 0, heat.errors()
    assert f"heat: done after {end} steps" in rest
    assert not heat.connection_file.exists()
    deadline = time.monotonic() + TIMEOUT
    while [p for p in ranks if Path(f"/proc/{p}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in ranks if Path(f"/proc/{p}").exists()], "a rank outlived the run"
    # JupyterLab learns that the kernel is gone: it says so, its restarter finds no simulation
    # to attach to, and the notebook is left without a kernel.
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("appears to have died", timeout=KERNEL_TIMEOUT)
    nb.screenshot("kernel-died")
    dialog.locator(".jp-mod-accept").click()
    expect(dialog).to_have_count(0)
    status_indicator = nb.panel.locator(".jp-Notebook-ExecutionIndicator")
    expect(status_indicator).to_have_attribute(
        "data-status", re.compile(r"^(dead|disconnected|unknown)$"), timeout=KERNEL_TIMEOUT
    )
    nb.screenshot("simulation-ended")
    # The server has let the dead kernel go (the notebook's session ends with the page).
    while lab.api("GET", "/api/kernels") and time.monotonic() < deadline + TIMEOUT:
        time.sleep(0.2)
    assert lab.api("GET", "/api/kernels") == []
