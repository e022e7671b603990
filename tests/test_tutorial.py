"""The tutorial's kernel (docs/tutorial.md, its first Python block) as a real kernel process:
installed with ``python -m kernelsdk install``, run by nbclient in a notebook."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
from conftest import JupyterEnv
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


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
