"""Lua source text for Python values: how strings and data travel from Python into Lua.

The driver is only ever called with Lua expressions (see ``LuaState.call``), so every value
Python hands to Lua is written as a literal: cell code and names as string literals, comm data
as table constructors.
"""

from __future__ import annotations

from typing import Any


def lua_literal(text: str | bytes) -> str:
    """A Lua string literal for ``text`` (decimal escapes: safe for any byte)."""
    data = text.encode() if isinstance(text, str) else text
    out = ['"']
    for b in data:
        if 32 <= b < 127 and b not in (34, 92):
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def lua_table_literal(value: Any) -> str:
    """Lua constructor syntax for a JSON-like value (comm data travelling to Lua)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value and abs(value) != float("inf") else "0/0"
    if isinstance(value, str):
        return lua_literal(value)
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua_table_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"[{lua_literal(str(k))}] = {lua_table_literal(v)}" for k, v in value.items()
            )
            + "}"
        )
    return lua_literal(str(value))
