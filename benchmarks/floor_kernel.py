"""The Python floor kernel: the fastest an echo kernel written in Python on pyzmq can be.

Benchmark-only, not built on kernelsdk and not a real kernel: one thread, blocking pyzmq
calls, no event loop, no validation beyond the signature, no replay history. It answers
``kernel_info_request`` and ``execute_request`` (echo semantics: the code is printed and
returned, the same six messages per request as the echo kernel), on shell and control, and
``shutdown_request``. The heartbeat is a ``zmq.proxy`` thread like kernelsdk's.

It exists to bound what the SDK's design can reach: whatever this costs per request, a
Python kernel pays at least that (``docs/performance.md``).

``python floor_kernel.py -f CONNECTION_FILE``
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
import uuid
from typing import Any

import zmq

DELIM = b"<IDS|MSG>"


def main() -> None:
    with open(sys.argv[sys.argv.index("-f") + 1], encoding="utf-8") as f:
        info = json.load(f)
    key = info["key"].encode()
    digest = info.get("signature_scheme", "hmac-sha256").partition("-")[2]
    mac = hmac.new(key, digestmod=digest)
    url = f"{info['transport']}://{info['ip']}:"
    ctx = zmq.Context()
    shell, control, stdin = (ctx.socket(zmq.ROUTER) for _ in range(3))
    iopub = ctx.socket(zmq.PUB)
    for sock, port in (
        (shell, "shell_port"),
        (control, "control_port"),
        (stdin, "stdin_port"),
        (iopub, "iopub_port"),
    ):
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.bind(url + str(info[port]))
    hb = ctx.socket(zmq.ROUTER)
    hb.bind(url + str(info["hb_port"]))
    threading.Thread(target=zmq.proxy, args=(hb, hb), daemon=True).start()

    session = uuid.uuid4().hex
    counter = 0
    dumps, loads = json.dumps, json.loads

    def frames(msg_type: str, content: dict[str, Any], parent: bytes) -> list[bytes]:
        nonlocal counter
        counter += 1
        header = dumps(
            {
                "msg_id": f"{session}_{counter}",
                "msg_type": msg_type,
                "session": session,
                "username": "floor",
                "version": "5.3",
                "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            }
        ).encode()
        parts = [header, parent, b"{}", dumps(content).encode()]
        h = mac.copy()
        for p in parts:
            h.update(p)
        return [DELIM, h.hexdigest().encode(), *parts]

    def pub(msg_type: str, content: dict[str, Any], parent: bytes) -> None:
        iopub.send_multipart(
            [f"kernel.{session}.{msg_type}".encode(), *frames(msg_type, content, parent)]
        )

    count = 0
    poller = zmq.Poller()
    poller.register(shell, zmq.POLLIN)
    poller.register(control, zmq.POLLIN)
    while True:
        for sock, _ in poller.poll():
            msg = sock.recv_multipart()
            i = msg.index(DELIM)
            h = mac.copy()
            for p in msg[i + 2 : i + 6]:
                h.update(p)
            if not hmac.compare_digest(h.hexdigest().encode(), msg[i + 1]):
                continue
            parent = msg[i + 2]
            msg_type = loads(parent)["msg_type"]
            pub("status", {"execution_state": "busy"}, parent)
            if msg_type == "execute_request":
                code = loads(msg[i + 5])["code"]
                count += 1
                pub("execute_input", {"code": code, "execution_count": count}, parent)
                pub("stream", {"name": "stdout", "text": code + "\n"}, parent)
                pub(
                    "execute_result",
                    {"data": {"text/plain": code}, "metadata": {}, "execution_count": count},
                    parent,
                )
                reply = {
                    "status": "ok",
                    "execution_count": count,
                    "payload": [],
                    "user_expressions": {},
                }
            elif msg_type == "kernel_info_request":
                reply = {
                    "status": "ok",
                    "protocol_version": "5.3",
                    "implementation": "floor",
                    "implementation_version": "0",
                    "banner": "",
                    "language_info": {"name": "echo"},
                }
            elif msg_type == "shutdown_request":
                reply = {"status": "ok", "restart": False}
            else:
                reply = {
                    "status": "error",
                    "ename": "NotImplemented",
                    "evalue": msg_type,
                    "traceback": [],
                }
            sock.send_multipart(
                [*msg[:i], *frames(msg_type.replace("_request", "_reply"), reply, parent)]
            )
            pub("status", {"execution_state": "idle"}, parent)
            if msg_type == "shutdown_request":
                time.sleep(0.1)
                return


if __name__ == "__main__":
    main()
