"""papermill support for Lua notebooks: a translator that writes parameters as Lua.

papermill writes its injected-parameters cell through a translator chosen by the kernel's
language, ships translators only for the languages it knows, and finds no others by itself (it
has no entry point for them). Register this one before running papermill from Python::

    import kernelsdk_lua.papermill

    kernelsdk_lua.papermill.register()
    papermill.execute_notebook("in.ipynb", "out.ipynb", parameters={"n": 3})

Importing this module imports papermill; the kernel itself never does.
"""

from __future__ import annotations

import math
import re

import nbformat

# papermill ships no type information (no py.typed, no stubs): its names are Any here.
from papermill.models import Parameter  # type: ignore[import-untyped]
from papermill.translators import Translator, papermill_translators  # type: ignore[import-untyped]

__all__ = ["LuaTranslator", "register"]


class LuaTranslator(Translator):  # type: ignore[misc]  # Translator is untyped (see above)
    """Parameters for Lua: ``name = value`` assignments of globals, values as Lua literals
    (strings with Lua escapes, ``nil``, ``true``/``false``, tables for lists and dicts).

    Parameter names must be Lua names that are not keywords (``repeat``, ``end``... cannot
    be). ``inspect`` lists the ``name = value -- help`` lines of the parameters cell (what
    ``papermill --help-notebook`` shows, and what papermill checks passed parameters against).
    """

    PARAMETER = re.compile(
        r"^(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<value>.*?)\s*(?:--\s*(?P<help>.*))?$"
    )

    @classmethod
    def inspect(cls, parameters_cell: nbformat.NotebookNode) -> list[Parameter]:
        matches = (cls.PARAMETER.match(line) for line in parameters_cell.source.splitlines())
        return [Parameter(m["name"], "None", m["value"], m["help"] or "") for m in matches if m]

    @classmethod
    def comment(cls, cmt_str: str) -> str:
        return f"-- {cmt_str}".strip()

    @classmethod
    def translate_str(cls, val: str) -> str:
        def escape(ch: str) -> str:
            if ch in '"\\':
                return "\\" + ch
            if ch == "\n":
                return "\\n"
            if ord(ch) < 32 or ord(ch) == 127:
                return f"\\{ord(ch):03d}"
            return ch  # the source is UTF-8, and so is the Lua string

        return '"' + "".join(escape(ch) for ch in val) + '"'

    @classmethod
    def translate_none(cls, val: None) -> str:
        return "nil"

    @classmethod
    def translate_float(cls, val: float) -> str:
        if math.isnan(val):
            return "(0/0)"
        if math.isinf(val):
            return "math.huge" if val > 0 else "-math.huge"
        return repr(val)

    @classmethod
    def translate_dict(cls, val: dict[str, object]) -> str:
        items = (f"[{cls.translate(k)}] = {cls.translate(v)}" for k, v in val.items())
        return "{" + ", ".join(items) + "}"

    @classmethod
    def translate_list(cls, val: list[object]) -> str:
        return "{" + ", ".join(cls.translate(v) for v in val) + "}"


def register() -> None:
    """Make papermill use :class:`LuaTranslator` for notebooks in the Lua language."""
    papermill_translators.register("lua", LuaTranslator)
