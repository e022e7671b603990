"""The echo kernel: every cell comes back as stdout and as the cell's result."""

import re
from pathlib import Path

from kernelsdk import BaseKernel, Completions, ExecuteContext, IsComplete

WORD_CHARS = r"[\w.]*"


def word_at(code: str, pos: int) -> tuple[int, int]:
    """The span of the word around the cursor."""
    start = pos - len(re.search(WORD_CHARS + "$", code[:pos]).group())  # type: ignore[union-attr]
    end = pos + len(re.match(WORD_CHARS, code[pos:]).group())  # type: ignore[union-attr]
    return start, end


class EchoKernel(BaseKernel):
    implementation = "echo"
    implementation_version = "0.1.0"
    language_info = {"name": "echo", "mimetype": "text/plain", "file_extension": ".txt"}
    banner = "Echo kernel: every cell comes back to you"
    display_name = "Echo"
    resources = Path(__file__).parent / "resources"
    # Cells share nothing but the set of words seen, changed on the Trio thread only.
    concurrent_subshells = True

    def __init__(self) -> None:
        super().__init__()
        self.words: set[str] = set()

    async def do_execute(self, code: str, ctx: ExecuteContext) -> str:
        self.words.update(re.findall(r"[\w.]+", code))
        ctx.print(code)
        return code

    async def do_complete(self, code: str, cursor_pos: int) -> Completions:
        start, _ = word_at(code, cursor_pos)
        prefix = code[start:cursor_pos]
        return Completions(sorted(w for w in self.words if w.startswith(prefix)), start, cursor_pos)

    async def do_inspect(
        self, code: str, cursor_pos: int, detail_level: int
    ) -> dict[str, str] | None:
        start, end = word_at(code, cursor_pos)
        word = code[start:end]
        if word not in self.words:
            return None
        return {"text/plain": f"{word}: a word this kernel has echoed before"}

    async def do_is_complete(self, code: str) -> IsComplete:
        return IsComplete("incomplete" if code.endswith("\\") else "complete")
