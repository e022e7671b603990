"""The kernel whose cells are Python, run inside the host program: :class:`PythonKernel`.

A cell is compiled and executed in the kernel's :attr:`~PythonKernel.namespace` (where the
host puts its data), through :meth:`~kernelsdk.ExecuteContext.run_blocking`: with safe points
on the host's thread at its next ``poll``, otherwise on a worker thread. The namespace's own
``print`` and ``display`` send to the cell's output, so nothing process-wide (``sys.stdout``)
is replaced and two kernels in one process never mix their output.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import inspect
import io
import keyword
import re
import reprlib
import sys
import threading
import traceback
from typing import Any, ClassVar, TextIO

from .._context import ExecuteContext, MimeBundle
from .._exceptions import ExecutionError, StdinNotAllowedError
from .._kernel import BaseKernel, Completions, IsComplete
from .._protocol import interrupt_error
from ._interruptible import cooperative_wait

#: Rich representations, in the order frontends prefer them, by their ``_repr_*_`` method.
_REPR_METHODS: tuple[tuple[str, str], ...] = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)

#: The dotted name being typed at the end of the code before the cursor.
_COMPLETABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\.?$")


def mime_bundle(obj: object) -> MimeBundle:
    """``obj``'s rich representations (IPython's ``_repr_*_`` protocol) plus ``text/plain``;
    a matplotlib figure as a PNG image."""
    figure = _matplotlib_figure_png(obj)
    if figure is not None:
        return {"image/png": figure, "text/plain": repr(obj)}
    bundle: MimeBundle = {}
    mimebundle = getattr(obj, "_repr_mimebundle_", None)
    if callable(mimebundle):
        data = mimebundle()
        if isinstance(data, tuple):  # (data, metadata)
            data = data[0]
        if isinstance(data, dict):
            bundle.update(data)
    for method, mimetype in _REPR_METHODS:
        fn = getattr(obj, method, None)
        if mimetype in bundle or not callable(fn) or isinstance(obj, type):
            continue
        value = fn()
        if value is None:
            continue
        if isinstance(value, bytes):  # images: base64 text on the wire
            value = base64.b64encode(value).decode("ascii")
        bundle[mimetype] = value
    bundle.setdefault("text/plain", repr(obj))
    return bundle


def _matplotlib_figure_png(obj: object) -> str | None:
    """A matplotlib figure drawn as base64 PNG, or None if ``obj`` is not one. matplotlib is
    looked up, not imported: a host that never imported it has no figure to show."""
    figure_module = sys.modules.get("matplotlib.figure")
    if figure_module is None or not isinstance(obj, figure_module.Figure):
        return None
    buffer = io.BytesIO()
    obj.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _CellOutput:
    """Where the namespace's ``print`` and ``display`` go: the running cell of one kernel.

    Set for the thread that runs the cell and only while it does; a ``print`` from elsewhere
    (a host callback a cell defined, called later by the host) is an ordinary ``print``.
    """

    def __init__(self) -> None:
        self.ctx: ExecuteContext | None = None
        self.thread: int | None = None

    def current(self) -> ExecuteContext | None:
        ctx = self.ctx
        return ctx if ctx is not None and self.thread == threading.get_ident() else None

    def print(
        self,
        *values: object,
        sep: str | None = " ",
        end: str | None = "\n",
        file: TextIO | None = None,
        flush: bool = False,
    ) -> None:
        ctx = self.current()
        if ctx is None or file not in (None, sys.stdout, sys.stderr):
            builtins.print(*values, sep=sep, end=end, file=file, flush=flush)
            return
        text = (" " if sep is None else sep).join(map(str, values)) + ("\n" if end is None else end)
        ctx.stream("stderr" if file is sys.stderr else "stdout", text)

    def input(self, prompt: object = "") -> str:
        ctx = self.current()
        if ctx is None:
            return builtins.input(prompt)
        try:
            # An interrupt cuts the request off; raised when it has (see cooperative_wait).
            with cooperative_wait():
                return ctx.input_from_thread(str(prompt))
        except RuntimeError as exc:  # the cell runs on the kernel's own Trio thread
            raise StdinNotAllowedError(
                "input() cannot wait for the frontend in a kernel running on the host's "
                "event loop (the loop would stop); use a thread with safe points"
            ) from exc

    def display(self, *objs: object, **options: Any) -> None:
        ctx = self.current()
        if ctx is None:
            for obj in objs:
                builtins.print(repr(obj))
            return
        for obj in objs:
            ctx.display(mime_bundle(obj), display_id=options.get("display_id"))


class PythonKernel(BaseKernel):
    """A kernel whose cells are Python, executed in the host program's process.

    Args:
        namespace: the globals cells run in (a new dict by default); put the host's data
            there, or use :meth:`EmbeddedKernel.expose
            <kernelsdk.embed.EmbeddedKernel.expose>`.

    The value of a cell's last expression is its result (shown with its ``_repr_*_``
    methods, else ``repr``). ``print`` and ``display(obj, ...)`` in the namespace send to
    the cell's output, ``input`` asks the frontend. An error is the cell's error reply,
    with a traceback of the cell's own frames; ``SystemExit`` and ``KeyboardInterrupt`` in a
    cell are errors of the cell, never of the host. Completion looks names up in the
    namespace without running code.
    """

    implementation = "kernelsdk-embed-python"
    banner = "Python, embedded in a running program (kernelsdk.embed)"
    language_info: ClassVar[dict[str, Any]] = {
        "name": "python",
        "version": ".".join(map(str, sys.version_info[:3])),
        "mimetype": "text/x-python",
        "file_extension": ".py",
        "pygments_lexer": "ipython3",
        "codemirror_mode": {"name": "ipython", "version": 3},
        "nbconvert_exporter": "python",
    }

    def __init__(self, namespace: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.namespace: dict[str, Any] = {} if namespace is None else namespace
        self._output = _CellOutput()
        self.namespace.setdefault("__name__", "__main__")
        self.namespace.setdefault("__builtins__", builtins)
        self.namespace["print"] = self._output.print
        self.namespace["display"] = self._output.display
        self.namespace["input"] = self._output.input
        self._sources: dict[str, list[str]] = {}  # cell "file name" -> its lines

    async def do_execute(self, code: str, ctx: ExecuteContext) -> MimeBundle | str | None:
        return await ctx.run_blocking(self.run_cell, code, ctx)

    def run_cell(self, code: str, ctx: ExecuteContext) -> MimeBundle | None:
        """Run ``code`` on the calling thread with ``ctx`` as its output; return the result's
        mime bundle (None when the last statement is not an expression, or is None).

        Raises:
            ExecutionError: the cell raised (its type, message and the cell's traceback).
        """
        filename = f"<cell {ctx.execution_count}>"
        self._sources[filename] = code.splitlines()
        output = self._output
        output.ctx, output.thread = ctx, threading.get_ident()
        try:
            value = self._exec(code, filename)
        except (Exception, KeyboardInterrupt, SystemExit) as exc:
            raise self._error(exc) from None
        finally:
            output.ctx = output.thread = None
        if value is None:
            return None
        self.namespace["_"] = value
        return mime_bundle(value)

    def _exec(self, code: str, filename: str) -> object:
        tree = ast.parse(code, filename, "exec")
        last: ast.expr | None = None
        if tree.body and isinstance(final := tree.body[-1], ast.Expr):
            tree.body.pop()  # evaluated on its own below: its value is the cell's result
            last = final.value
        exec(compile(tree, filename, "exec"), self.namespace)  # running cells is the job
        if last is None:
            return None
        return eval(compile(ast.Expression(last), filename, "eval"), self.namespace)

    def _error(self, exc: BaseException) -> ExecutionError:
        """The cell's error, its traceback cut to the frames of cells (not this module's)."""
        lines: list[str] = []
        cell_frames = traceback.extract_tb(exc.__traceback__)
        # The runner's own frames (this module's, and the parser's for a syntax error) come
        # before the first cell frame.
        while cell_frames and cell_frames[0].filename not in self._sources:
            cell_frames.pop(0)
        if cell_frames:
            lines.append("Traceback (most recent call last):\n")
        for frame in cell_frames:
            source = frame.line
            cell_lines = self._sources.get(frame.filename)
            if cell_lines is not None and frame.lineno and 0 < frame.lineno <= len(cell_lines):
                source = cell_lines[frame.lineno - 1].strip()
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
            if source:
                lines.append(f"    {source}\n")
        lines.extend(traceback.format_exception_only(type(exc), exc))
        # Frontends join the lines with newlines.
        lines = [line.rstrip("\n") for line in lines]
        evalue = str(exc)
        if isinstance(exc, KeyboardInterrupt):
            evalue = evalue or interrupt_error()["evalue"]  # as every kernel says it
        return ExecutionError(type(exc).__name__, evalue, lines)

    # -- introspection, on the kernel thread ------------------------------------------------

    async def do_complete(self, code: str, cursor_pos: int) -> Completions:
        before = code[:cursor_pos]
        match = _COMPLETABLE.search(before)
        if match is None:
            return Completions([], cursor_pos, cursor_pos)
        text = match.group()
        base, dot, prefix = text.rpartition(".")
        if dot:
            obj = self._lookup(base)
            names = [] if obj is _MISSING else _attributes(obj)
            matches = [f"{base}.{n}" for n in names if n.startswith(prefix)]
        else:
            # list() of a dict is one C call: safe while the host thread changes it.
            names = [*self.namespace, *dir(builtins), *keyword.kwlist]
            matches = [n for n in names if n.startswith(prefix)]
        matches = sorted(set(matches), key=lambda n: (n.rpartition(".")[2].startswith("_"), n))
        return Completions(matches, match.start(), cursor_pos)

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int) -> MimeBundle | None:
        """The name at the cursor: its type, a short repr, its signature and docstring
        (found by lookups alone, as completion does; a ``repr`` is the only code it runs)."""
        start = cursor_pos
        while start > 0 and (code[start - 1].isalnum() or code[start - 1] in "_."):
            start -= 1
        end = cursor_pos
        while end < len(code) and (code[end].isalnum() or code[end] == "_"):
            end += 1
        dotted = code[start:end].strip(".")
        if not dotted or not _COMPLETABLE.fullmatch(dotted):
            return None
        obj = self._lookup(dotted)
        if obj is _MISSING:
            return None
        lines = [f"{dotted}: {type(obj).__module__}.{type(obj).__qualname__}"]
        if callable(obj):
            with contextlib.suppress(TypeError, ValueError):  # builtins without one
                lines.append(f"signature: {dotted}{inspect.signature(obj)}")
        else:
            try:
                lines.append(f"value: {reprlib.repr(obj)}")
            except Exception as exc:
                lines.append(f"value: <repr failed: {type(exc).__name__}>")
        # A plain value's docstring would be its type's ("Convert a string or number to...").
        doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
        if doc:
            lines += ["", doc if detail_level else doc.split("\n\n")[0]]
        return {"text/plain": "\n".join(lines)}

    def _lookup(self, dotted: str) -> object:
        """The object a dotted name denotes, by dict and attribute lookups only (no call,
        no evaluation: completing must never run the host's code beyond a property)."""
        first, *rest = dotted.split(".")
        obj = self.namespace.get(first, getattr(builtins, first, _MISSING))
        for name in rest:
            if obj is _MISSING:
                break
            try:
                obj = getattr(obj, name, _MISSING)
            except Exception:
                return _MISSING
        return obj

    async def do_is_complete(self, code: str) -> IsComplete:
        import codeop

        try:
            compiled = codeop.compile_command(code, "<cell>", "exec")
        except (SyntaxError, ValueError, OverflowError):
            return IsComplete("invalid")
        if compiled is None:
            last = code.rstrip("\n").splitlines()[-1] if code.strip() else ""
            indent = last[: len(last) - len(last.lstrip())]
            return IsComplete(
                "incomplete", indent + ("    " if last.rstrip().endswith(":") else "")
            )
        return IsComplete("complete")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _attributes(obj: object) -> list[str]:
    try:
        return dir(obj)
    except Exception:
        return []
