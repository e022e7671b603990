"""display_data, update_display_data and clear_output, and silent display."""

from __future__ import annotations

from kernelsdk.testing import open_test_kernel

from .conftest import Scripted, types

# -- display --------------------------------------------------------------------------------------


async def test_display_update_and_clear() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("display")
        assert [m.msg_type for m in result.outputs] == [
            "display_data",
            "display_data",
            "update_display_data",
            "clear_output",
        ]
        first, second, update, clear = result.outputs
        assert first.content == {
            "data": {"text/plain": "a"},
            "metadata": {"m": 1},
            "transient": {"display_id": "d1"},
        }
        assert second.content["data"] == {"text/plain": "b", "text/html": "<b>b</b>"}
        assert second.content["transient"] == {}
        assert second.buffers == (b"buf",)
        assert update.content == {
            "data": {"text/plain": "c"},
            "metadata": {},
            "transient": {"display_id": "d1"},
        }
        assert clear.content == {"wait": True}
        assert result.reply.content["status"] == "ok"


async def test_silent_display_publishes_nothing() -> None:
    async with open_test_kernel(Scripted()) as client:
        result = await client.execute("display", silent=True)
        assert types(result) == ["status", "status"]
