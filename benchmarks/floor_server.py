"""The floor: a ROUTER that sends every message straight back (no decoding, no signing).

``python floor_server.py PORT`` binds tcp://127.0.0.1:PORT, prints ``ready`` and echoes until
it receives a message whose last frame is ``b"stop"``.
"""

from __future__ import annotations

import sys

import zmq


def main() -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.bind(f"tcp://127.0.0.1:{int(sys.argv[1])}")
    print("ready", flush=True)
    while True:
        frames = sock.recv_multipart(copy=True)
        if frames[-1] == b"stop":
            break
        sock.send_multipart(frames)
    sock.close(linger=0)
    ctx.term()


if __name__ == "__main__":
    main()
