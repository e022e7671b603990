"""docs/tutorial.md, run as written.

* ``test_tutorial_word_by_word``: every command and file of the page, in order, in a fresh
  virtual environment outside the checkout (tests/fresh_venv.py), from installing kernelsdk
  to a session in ``jupyter console`` whose transcript must match the page's.
* ``test_tutorial_kernel_runs_a_notebook``: the tutorial's kernel (its first Python block) as a
  real kernel process, installed with ``python -m kernelsdk install``, run by nbclient.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import JupyterEnv
from fresh_venv import Project, console_blocks, tutorial_project
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.S | re.M)
ACTIVATE = ". .venv/bin/activate\n"


def run_console_session(project: Project, command: str, transcript: list[str]) -> None:
    """``command`` (a ``jupyter console``) fed the transcript's ``In [n]:`` lines; every other
    transcript line must come out, in order."""
    inputs = [re.sub(r"^In \[\d+\]: ", "", line) for line in transcript if line.startswith("In [")]
    expected = [line for line in transcript if not line.startswith("In [")]
    feed = "".join(f"{line}\n" for line in inputs)
    script = f"{ACTIVATE}printf %s {shlex.quote(feed)} | {command} --simple-prompt"
    output = project.bash(script, cwd=project.calc, timeout=120)
    at = 0
    for line in expected:
        found = output.find(line, at)
        assert found >= 0, f"{line!r} not in the console's output:\n{output}"
        at = found + len(line)


@pytest.mark.timeout(900)
def test_tutorial_word_by_word() -> None:
    project = tutorial_project()  # step 1: mkdir calc, the venv, pip install ../kernelsdk
    text = TUTORIAL.read_text(encoding="utf-8")
    kernel, check = PYTHON_BLOCK.findall(text)[:2]
    # Step 2: the kernel module. Step 3: its in-memory test, run by the venv's Python.
    (project.calc / "calc_kernel.py").write_text(kernel, encoding="utf-8")
    (project.calc / "check_calc.py").write_text(kernel + "\n\n" + check, encoding="utf-8")
    project.run("python", "check_calc.py")
    # Step 4: pyproject.toml, then the commands of steps 4 and 5.
    (project.calc / "pyproject.toml").write_text(TOML_BLOCK.findall(text)[0], encoding="utf-8")
    blocks = console_blocks(text)[1:]
    assert blocks, "the tutorial has no console blocks after step 1"
    ran = []
    for block in blocks:
        for command in block:
            if command.line.startswith("jupyter console"):
                run_console_session(project, command.line, command.output)
            else:
                output = project.bash(ACTIVATE + command.line, cwd=project.calc)
                output = output.replace(f"{project.calc}/", "")
                for line in command.output:
                    assert line in output, f"{line!r} not in the output of {command.line}"
            ran.append(command.line.split()[0])
    assert ran == ["pip", "python", "jupyter"], ran


def test_tutorial_kernel_runs_a_notebook(jupyter_env: JupyterEnv, tmp_path: Path) -> None:
    text = TUTORIAL.read_text(encoding="utf-8")
    kernel_source = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)[0]
    (tmp_path / "calc_kernel.py").write_text(kernel_source, encoding="utf-8")
    assert len(kernel_source.splitlines()) <= 60
    install = ["install", "calc_kernel:CalcKernel", "--name", "calc"]
    where = ["--env", f"PYTHONPATH={tmp_path}", "--prefix", str(jupyter_env.prefix)]
    proc = subprocess.run(
        [sys.executable, "-m", "kernelsdk", *install, *where],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    nb = new_notebook(cells=[new_code_cell("side = 3"), new_code_cell("side ** 2")])
    NotebookClient(nb, kernel_name="calc", timeout=60, startup_timeout=60).execute()
    assert nb.cells[0].outputs[0]["text"] == "side = 3\n"
    result = nb.cells[1].outputs[0]
    assert result["output_type"] == "execute_result"
    assert result["data"]["text/plain"] == "9"
    assert nbformat.validate(nb) is None
