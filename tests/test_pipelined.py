"""10 000 execute requests pipelined on one shell DEALER: nothing lost, nothing reordered.

A lean raw-zmq client signs every request up front (jupyter_client's Session), sends them all,
then reads. Replies must come back in send order, and IOPub must show, for each request in
turn, exactly busy, execute_input, stream, execute_result, idle: every output of a request
before its idle, and a request's idle before the next request's busy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from conftest import JupyterEnv, KernelPair, start_kernel_pair, stop_kernel_pair
from jupyter_client.session import DELIM, Session

N = 10_000
STALL = 60.0  # seconds without any progress before giving up (only a hang reaches it)
EXPECTED = ["busy", "execute_input", "stream", "execute_result", "idle"]


@pytest.fixture(scope="module")
def echo_kernel(jupyter_env: JupyterEnv) -> Iterator[KernelPair]:
    km, kc = start_kernel_pair(jupyter_env, "echo", "tcp")
    kc.stop_channels()  # only the raw client below talks to it
    yield km, kc
    stop_kernel_pair(km, kc)


class Lean:
    """Verify and decode frames without jupyter_client's per-message overhead."""

    def __init__(self, key: bytes) -> None:
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)

    def decode(self, frames: list[bytes]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        i = frames.index(DELIM)
        signature, parts = frames[i + 1], frames[i + 2 : i + 6]
        h = self._hmac.copy()
        for p in parts:
            h.update(p)
        assert hmac.compare_digest(h.hexdigest().encode(), signature), "bad signature from kernel"
        header, parent, _metadata, content = (json.loads(p) for p in parts)
        return header, parent, content


@pytest.mark.timeout(300)
def test_ten_thousand_pipelined_executes(echo_kernel: KernelPair) -> None:
    km, _ = echo_kernel
    session = Session(key=km.session.key, signature_scheme="hmac-sha256")
    lean = Lean(km.session.key)
    ctx = zmq.Context()
    try:
        shell = ctx.socket(zmq.DEALER)
        iopub = ctx.socket(zmq.SUB)
        for sock in (shell, iopub):
            sock.linger = 0
            sock.rcvhwm = 0  # the client buffers everything: it reads only after sending
            sock.sndhwm = 0
        shell.identity = uuid.uuid4().hex.encode()
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
        shell.connect(km._make_url("shell"))
        iopub.connect(km._make_url("iopub"))
        # Subscribed once our own welcome arrives.
        assert iopub.poll(30_000), "no iopub_welcome"
        header, _, _ = lean.decode(iopub.recv_multipart())
        assert header["msg_type"] == "iopub_welcome"

        codes = [f"cell {i}" for i in range(N)]
        msgs = [
            session.msg(
                "execute_request",
                {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            )
            for code in codes
        ]
        ids = [m["header"]["msg_id"] for m in msgs]
        index = {msg_id: i for i, msg_id in enumerate(ids)}
        wire = [session.serialize(m) for m in msgs]
        started = time.perf_counter()
        for frames in wire:
            shell.send_multipart(frames)
        sent = time.perf_counter()

        replies: list[str] = []
        stream: list[tuple[int, str, dict[str, Any]]] = []  # (request index, kind, content)
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        while len(replies) < N or len(stream) < N * len(EXPECTED):
            ready = dict(poller.poll(int(STALL * 1000)))
            assert ready, (
                f"stalled: {len(replies)} replies, {len(stream)} IOPub messages of "
                f"{N} / {N * len(EXPECTED)}"
            )
            while shell.poll(0):
                header, parent, content = lean.decode(shell.recv_multipart())
                assert header["msg_type"] == "execute_reply"
                assert content["status"] == "ok", content
                replies.append(parent["msg_id"])
            while iopub.poll(0):
                header, parent, content = lean.decode(iopub.recv_multipart())
                if header["msg_type"] == "iopub_welcome":
                    continue
                i = index[parent["msg_id"]]
                kind = header["msg_type"]
                if kind == "status":
                    kind = content["execution_state"]
                stream.append((i, kind, content))
        done = time.perf_counter()
        print(
            f"{N} pipelined executes: sent in {sent - started:.2f} s, "
            f"all replies and outputs in {done - started:.2f} s"
        )

        assert replies == ids, "replies missing or out of order"
        expected_order = [(i, kind) for i in range(N) for kind in EXPECTED]
        assert [(i, kind) for i, kind, _ in stream] == expected_order
        for k in range(0, len(stream), len(EXPECTED)):
            i = stream[k][0]
            execute_input, out, result = (stream[k + j][2] for j in (1, 2, 3))
            assert execute_input["code"] == codes[i]
            assert out == {"name": "stdout", "text": codes[i] + "\n"}
            assert result["data"] == {"text/plain": codes[i]}
            assert result["execution_count"] == execute_input["execution_count"]
        counts = [stream[k + 1][2]["execution_count"] for k in range(0, len(stream), 5)]
        assert counts == list(range(counts[0], counts[0] + N))
        # Nothing more is pending.
        time.sleep(0.2)
        assert not shell.poll(0)
    finally:
        ctx.destroy(linger=0)


@pytest.mark.timeout(120)
def test_replies_wait_for_a_slow_reader(jupyter_env: JupyterEnv) -> None:
    """A client with jupyter_client's default socket options sends 5000 kernel_info requests
    and reads the replies only after the kernel has answered them all (it watches IOPub for
    the 5000 idles). Every reply must still be delivered: a lost reply hangs a client."""
    n = 5000
    km, kc = start_kernel_pair(jupyter_env, "echo", "ipc")  # ipc: no TCP buffers in between
    kc.stop_channels()
    ctx = zmq.Context()
    try:
        session = Session(key=km.session.key, signature_scheme="hmac-sha256")
        shell = ctx.socket(zmq.DEALER)  # default HWMs, like jupyter_client's channels
        iopub = ctx.socket(zmq.SUB)
        iopub.rcvhwm = 0
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
        shell.connect(km._make_url("shell"))
        iopub.connect(km._make_url("iopub"))
        assert iopub.poll(30_000), "no iopub_welcome"
        iopub.recv_multipart()
        for _ in range(n):
            shell.send_multipart(session.serialize(session.msg("kernel_info_request", {})))
        idle = 0
        while idle < n:
            assert iopub.poll(int(STALL * 1000)), f"stalled after {idle} idles"
            if b'"idle"' in iopub.recv_multipart()[-1]:
                idle += 1
        replies = 0
        while shell.poll(500):
            shell.recv_multipart()
            replies += 1
        assert replies == n
    finally:
        ctx.destroy(linger=0)
        stop_kernel_pair(km, kc)
