"""A fresh virtual environment outside the checkout, shared by the slow install tests.

``tutorial_project()`` follows step 1 of docs/tutorial.md as written: next to a copy of the
checkout (``ROOT/kernelsdk``: its tracked and new files, as in the working tree), it runs the
step's commands in ``ROOT``, which make the project directory ``ROOT/calc`` and its
``.venv`` with kernelsdk installed from the copy. tests/test_tutorial.py goes on with the
tutorial in it; tests/test_scaffold.py adds the conformance suite and a generated kernel to the
same venv. The venv is made once per pytest session (the first test that asks), with the
venv's pip as it is (the machine's pip configuration, like scripts/setup), and removed at exit.

Every command runs with a clean environment: PATH without the test venv, no PYTHONPATH, and
the Jupyter and IPython directories inside ``ROOT``.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
TUTORIAL = CHECKOUT / "docs" / "tutorial.md"
CONSOLE_BLOCK = re.compile(r"^```console\n(.*?)^```", re.S | re.M)


@dataclass
class Command:
    """One ``$ command`` of a console block and the output lines written under it."""

    line: str
    output: list[str]


def console_blocks(text: str) -> list[list[Command]]:
    """The ``console`` blocks of a Markdown page, as commands with their expected output."""
    blocks = []
    for body in CONSOLE_BLOCK.findall(text):
        commands: list[Command] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                commands.append(Command(line[2:], []))
            elif commands:
                commands[-1].output.append(line)
        blocks.append(commands)
    return blocks


def copy_checkout(dest: Path) -> None:
    """Copy the checkout's tracked and new (not ignored) files, as in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = CHECKOUT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@dataclass
class Project:
    root: Path  # holds kernelsdk/ (the checkout's copy), calc/ and the Jupyter directories
    env: dict[str, str]

    @property
    def checkout(self) -> Path:
        return self.root / "kernelsdk"

    @property
    def calc(self) -> Path:
        return self.root / "calc"

    @property
    def bin(self) -> Path:
        return self.calc / ".venv" / "bin"

    def bash(self, script: str, cwd: Path, timeout: float = 600) -> str:
        """Run ``script`` in bash (errexit); return its stdout and stderr, fail loudly."""
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{script}\n---\n{proc.stdout}"
        return proc.stdout

    def run(self, *argv: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
        """Run a program of the venv (``python``, ``pytest``...)."""
        proc = subprocess.run(
            [str(self.bin / str(argv[0])), *map(str, argv[1:])],
            cwd=cwd or self.calc,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"{argv} exit {proc.returncode}:\n{proc.stdout}"
        return proc.stdout


def clean_env(root: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "IPYTHON", "PYTHON", "VIRTUAL_ENV", "KSDK_"))
    }
    env.update(
        {
            "PATH": os.pathsep.join(path),
            "JUPYTER_PATH": str(root / "jupyter-path"),
            "JUPYTER_DATA_DIR": str(root / "jupyter-data"),
            "JUPYTER_CONFIG_DIR": str(root / "jupyter-config"),
            "JUPYTER_RUNTIME_DIR": str(root / "jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(root / "ipython"),
        }
    )
    return env


@functools.cache
def tutorial_project() -> Project:
    """Step 1 of the tutorial, as written, next to a copy of the checkout (once a session)."""
    root = Path(tempfile.mkdtemp(prefix="ksdk-fresh-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    project = Project(root, clean_env(root))
    copy_checkout(project.checkout)
    step1 = console_blocks(TUTORIAL.read_text(encoding="utf-8"))[0]
    assert [c.line.split()[0] for c in step1] == ["mkdir", "python", "pip"], step1
    project.bash("\n".join(c.line for c in step1), cwd=root)
    assert (project.bin / "python").exists()
    return project
