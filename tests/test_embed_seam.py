"""Detach-on-shutdown over real sockets with a real jupyter_client: what an embedded kernel's
frontends see (``open_kernel(on_shutdown="detach")``, served from a thread of this process).

Timeouts only stop a hung test; nothing asserts how long anything takes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from jupyter_client.blocking.client import BlockingKernelClient
from kernelsdk_echo import EchoKernel

from kernelsdk import ConnectionInfo, KernelServer, open_kernel

TIMEOUT = 30  # only reached when something hangs


class ServedInThread:
    """``open_kernel`` in a Trio loop of its own thread, as an embedding host does."""

    def __init__(self, connection_file: Path) -> None:
        self.connection_file = connection_file
        self.kernel = EchoKernel()
        self.ready = threading.Event()
        self.server: KernelServer | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        info = ConnectionInfo(key="seam-test-key")
        with trio.CancelScope() as self._scope:
            async with open_kernel(
                self.kernel,
                info,
                connection_file=str(self.connection_file),
                warn_unencrypted=False,
                on_shutdown="detach",
            ) as self.server:
                self._token = trio.lowlevel.current_trio_token()
                self.ready.set()
                await trio.sleep_forever()

    def start(self) -> None:
        self._thread.start()
        assert self.ready.wait(TIMEOUT)

    def stop(self) -> None:
        assert self._scope is not None and self._token is not None
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedInThread]:
    kernel = ServedInThread(tmp_path / "kernel.json")
    kernel.start()
    yield kernel
    kernel.stop()


@contextmanager
def client_of(path: Path) -> Iterator[BlockingKernelClient]:
    kc = BlockingKernelClient(connection_file=str(path))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=TIMEOUT)
        yield kc
    finally:
        kc.stop_channels()
        kc.context.destroy(linger=0)


def control_reply(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    while True:
        reply: dict[str, Any] = kc.get_control_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def test_shutdown_detaches_and_a_second_client_attaches(served: ServedInThread) -> None:
    with client_of(served.connection_file) as first:
        assert first.execute_interactive("one", timeout=TIMEOUT)["content"]["status"] == "ok"
        reply = control_reply(first, first.shutdown())
        assert reply["content"] == {"status": "ok", "restart": False}
    assert served.server is not None and served.server.detach_count == 1
    with client_of(served.connection_file) as second:
        reply = second.execute_interactive("two", timeout=TIMEOUT)
        assert reply["content"]["status"] == "ok"
        # The kernel's state lives on: the execution count continues from the first client's.
        assert reply["content"]["execution_count"] == 2


def test_restart_is_refused_with_a_clear_error(served: ServedInThread) -> None:
    with client_of(served.connection_file) as kc:
        reply = control_reply(kc, kc.shutdown(restart=True))
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "RestartRefused"
        assert "embedded in a host program" in reply["content"]["evalue"]
        assert kc.execute_interactive("on", timeout=TIMEOUT)["content"]["status"] == "ok"
