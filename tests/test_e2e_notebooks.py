"""The example notebooks in ``examples/`` through nbclient, papermill and nbconvert.

* nbclient (what ``jupyter execute`` and nbconvert use) runs each example notebook;
* papermill runs it with parameters injected after its ``parameters``-tagged cell;
* nbconvert renders the executed notebooks to HTML (``--no-input``: whatever text the HTML
  holds came from the kernel's outputs).

papermill writes the injected cell in the kernel's language through a *translator*, found by
kernel name or language; it ships translators for Python, R, Julia... only, and has no plugin
entry point for them, so a kernel's users register one through its Python API before running
papermill (``papermill.translators.papermill_translators.register(language, Translator)``).
``EchoTranslator`` below is the one for the echo language, where every line is text;
the Lua kernel ships its own, ``kernelsdk_lua.papermill.LuaTranslator``.

Another kernel is one more ``Example``, with its translator.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import kernelsdk_lua.papermill
import nbformat
import papermill
import pytest
from conftest import JupyterEnv
from nbclient import NotebookClient
from papermill.translators import Translator, papermill_translators

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
NBCONVERT = str(Path(sys.executable).with_name("jupyter-nbconvert"))
pytestmark = pytest.mark.usefixtures("jupyter_env")


class EchoTranslator(Translator):
    """Parameters for the echo language: ``name = value`` lines, which the kernel echoes."""

    @classmethod
    def comment(cls, cmt_str: str) -> str:
        return f"# {cmt_str}".strip()

    @classmethod
    def translate_dict(cls, val: dict[str, object]) -> str:
        return (
            "{" + ", ".join(f"{cls.translate(k)}: {cls.translate(v)}" for k, v in val.items()) + "}"
        )

    @classmethod
    def translate_list(cls, val: list[object]) -> str:
        return "[" + ", ".join(cls.translate(v) for v in val) + "]"


@dataclass(frozen=True)
class Example:
    notebook: str  # in examples/
    kernel: str
    language: str
    translator: type[Translator]
    parameters: dict[str, object]
    # Text each code cell's outputs must contain, in order, without injected parameters.
    outputs: tuple[str, ...]
    # Text the injected-parameters cell's source must contain.
    injected: tuple[str, ...]
    # Text its outputs must contain (echo echoes it; Lua assignments show nothing).
    injected_outputs: tuple[str, ...] = ()
    # Text the outputs of the cells after it must contain: they ran with the parameters.
    parameterized: tuple[str, ...] = ()
    # HTML nbconvert must render from the outputs without injected parameters (rich output).
    rendered: tuple[str, ...] = ()


EXAMPLES = [
    Example(
        notebook="echo.ipynb",
        kernel="echo",
        language="echo",
        translator=EchoTranslator,
        parameters={"greeting": "hello from papermill", "repeat": 3},
        outputs=('greeting = "hello"', "hello", "parrots repeat\\\nwhat they hear"),
        injected=('greeting = "hello from papermill"', "repeat = 3"),
        injected_outputs=('greeting = "hello from papermill"', "repeat = 3"),
    ),
    Example(
        notebook="lua.ipynb",
        kernel="lua54",
        language="lua",
        translator=kernelsdk_lua.papermill.LuaTranslator,
        parameters={"greeting": 'hello from "papermill"', "times": 3, "shout": True},
        outputs=("", "hello #1\nhello #2", '{"hello"}', "<HTML>"),
        injected=('greeting = "hello from \\"papermill\\""', "times = 3", "shout = true"),
        parameterized=('hello from "papermill" #3', '{"HELLO", "FROM", "PAPERMILL"}'),
        rendered=('<b class="lua-example">1 words</b>',),
    ),
]
IDS = [e.notebook for e in EXAMPLES]


def output_text(cell: nbformat.NotebookNode) -> str:
    """The text of a code cell's outputs: streams, then text/plain of the others."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in {"execute_result", "display_data"}:
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


def render_html(path: Path) -> str:
    """``jupyter nbconvert --to html --no-input``: the HTML of the outputs only."""
    proc = subprocess.run(
        [NBCONVERT, "--to", "html", "--no-input", "--output-dir", str(path.parent), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return path.with_suffix(".html").read_text(encoding="utf-8")


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_contains(html: str, text: str) -> bool:
    """``text`` is in the HTML (nbconvert may or may not escape quotes)."""
    escaped = html_escaped(text)
    return any(t in html for t in (escaped, escaped.replace('"', "&quot;")))


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_nbclient_runs_example_and_nbconvert_renders_it(example: Example, tmp_path: Path) -> None:
    nb = nbformat.read(EXAMPLES_DIR / example.notebook, as_version=4)
    assert nb.metadata.kernelspec.name == example.kernel
    NotebookClient(nb, timeout=60, startup_timeout=60).execute()
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code_cells] == list(range(1, len(code_cells) + 1))
    assert len(code_cells) == len(example.outputs)
    for cell, expected in zip(code_cells, example.outputs, strict=True):
        assert expected in output_text(cell), (cell.source, cell.outputs)
    assert nb.metadata.language_info.name == example.language
    nbformat.validate(nb)

    executed = tmp_path / example.notebook
    nbformat.write(nb, executed)
    html = render_html(executed)
    for cell, expected in zip(code_cells, example.outputs, strict=True):
        if any(o.output_type == "display_data" for o in cell.outputs):
            continue  # rendered from its richest mime type: see example.rendered
        for line in expected.splitlines():
            assert html_contains(html, line), line
    for expected in example.rendered:
        assert expected in html, expected


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_papermill_injects_parameters(
    example: Example, tmp_path: Path, jupyter_env: JupyterEnv
) -> None:
    papermill_translators.register(example.language, example.translator)
    output = tmp_path / example.notebook
    nb = papermill.execute_notebook(
        str(EXAMPLES_DIR / example.notebook),
        str(output),
        parameters=example.parameters,
        kernel_name=example.kernel,
        cwd=str(tmp_path),
        progress_bar=False,
        start_timeout=60,
        execution_timeout=60,
    )
    cells = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in cells]
    # The injected cell comes right after the parameters cell.
    assert "parameters" in tags[0]
    assert "injected-parameters" in tags[1]
    injected = cells[1]
    for expected in example.injected:
        assert expected in injected.source
    for expected in example.injected_outputs:
        assert expected in output_text(injected), injected.outputs
    after = "\n".join(output_text(c) for c in cells[2:])
    for expected in example.parameterized:
        assert expected in after, [c.outputs for c in cells[2:]]
    # Every cell ran, in order, without errors.
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert nb.metadata.papermill.parameters == example.parameters
    assert nb.metadata.papermill.exception is not True

    html = render_html(output)
    for expected in (*example.injected_outputs, *example.parameterized):
        assert html_contains(html, expected), expected


def test_lua_translator_values_reach_lua_intact() -> None:
    """What ``LuaTranslator`` writes is Lua that evaluates to the parameters' values."""
    parameters: dict[str, object] = {
        "s": 'say "hi"\\ to\n\tthe world: caf\u00e9 \u2713 \x01',
        "n": None,
        "i": -7,
        "f": 2.5,
        "b": False,
        "l": [1, "two", [3.5, True]],
        "d": {"k": "v", "nested": {"x": [1, 2]}},
        "big": math.inf,
    }
    code = kernelsdk_lua.papermill.LuaTranslator.codify(parameters)
    check = "display.json({s = s, i = i, f = f, b = b, l = l, d = d, n_is_nil = n == nil, "
    check += "big_is_huge = big == math.huge})"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code + check)])
    NotebookClient(nb, kernel_name="lua54", timeout=60, startup_timeout=60).execute()
    (output,) = nb.cells[0].outputs
    expected = {k: v for k, v in parameters.items() if k not in {"n", "big"}}
    assert output.data["application/json"] == {**expected, "n_is_nil": True, "big_is_huge": True}


def test_papermill_inspects_lua_parameters() -> None:
    kernelsdk_lua.papermill.register()
    parameters = papermill.inspect_notebook(str(EXAMPLES_DIR / "lua.ipynb"))
    assert {name: p["default"] for name, p in parameters.items()} == {
        "greeting": '"hello"',
        "times": "2",
        "shout": "false",
    }
    assert parameters["times"]["help"] == "how many times to greet"
