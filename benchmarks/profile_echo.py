"""Profile a kernelsdk kernel's hot path with py-spy while the benchmark client drives it.

``.venv-bench/bin/python benchmarks/profile_echo.py [--kernel echo] [--requests 3000]
[--mode sequential|pipelined|output] [--out DIR]``

The kernel runs under ``py-spy record --format raw`` (collapsed stacks); afterwards the stacks
are summarised as self time and inclusive time per function (top N). Needs py-spy (installed
in .venv-bench by scripts/bench) and permission to ptrace (root, or a child process).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

from client import KernelProcess, RawClient
from kernel_defs import DEFS, find_spec


def summarise(raw: Path, top: int) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        # py-spy frames look like "function (file.py:line)": drop the line for grouping
        names = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames]
        self_t[names[-1]] += n
        for name in set(names):
            incl[name] += n
    out = [f"{total} samples", "", "self time:"]
    out += [f"{100 * c / total:6.1f}%  {name}" for name, c in self_t.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"{100 * c / total:6.1f}%  {name}" for name, c in incl.most_common(top)]
    return "\n".join(out)


# (category, substrings of a frame): the first category, from the leaf up, that matches.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("epoll wait (trio get_events)", ("EpollIOManager.get_events",)),
    ("zmq send (pyzmq/libzmq)", ("Socket.send ", "Socket.send_multipart")),
    ("zmq recv (pyzmq/libzmq)", ("Socket.recv", "Socket.get ", "Socket.getsockopt")),
    ("HMAC signing/verifying", ("hmac.py", "Session.sign", "Session._verify")),
    ("JSON encode", ("json/encoder.py", "json_pack")),
    ("JSON decode", ("json/decoder.py", "json_unpack")),
    ("clock / ids (UtcClock, uuid)", ("_clock.py", "uuid.py")),
    ("message objects (attrs Header/Message, to_dict)", ("kernelsdk._message", "_message.py")),
    ("protocol core (_protocol, _session, _events)", ("_protocol.py", "_session.py", "_events")),
    ("zmq driver (_trio_zmq, _zmq_transport)", ("_trio_zmq.py", "_zmq_transport.py")),
    ("Trio scheduler, channels, cancel scopes", ("trio/",)),
    ("server tasks (_server, _context)", ("_server.py", "_context.py")),
    ("the kernel's own code", ("kernelsdk_echo", "bench_kernel")),
]


def categorise(raw: Path) -> str:
    """Time after start-up (stacks under ``run_kernel``, imports excluded)
    by category."""
    cats: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if "run_kernel" not in stack or "_find_and_load" in stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        for frame in reversed(frames):
            cat = next((c for c, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if cat is not None:
                cats[cat] += n
                break
        else:
            cats["other"] += n
    out = [f"Kernel threads after start-up: {total} samples"]
    out += [f"{100 * c / max(total, 1):6.1f}%  {name}" for name, c in cats.most_common()]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernel", default="echo")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--mode", choices=["sequential", "pipelined", "output"], default="sequential")
    ap.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "kbench-profile"))
    args = ap.parse_args()
    spec = find_spec(args.kernel)
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spec is None or pyspy is None:
        print("need the kernel's kernelspec and py-spy", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"{args.kernel}-{args.mode}.txt"
    argv = [pyspy, "record", "--nonblocking", "--format", "raw", "-r", str(args.rate)]
    argv += ["-o", str(raw), "--"]
    kp = KernelProcess(args.kernel, [*argv, *spec.argv], spec.env, out)
    client = RawClient(kp.launch("profile"))
    client.wait_ready(60)
    d = DEFS[args.kernel]
    t0 = time.perf_counter()
    if args.mode == "sequential":
        for _ in range(args.requests):
            client.run_cell(d.rt_cell, 60)
    elif args.mode == "pipelined":
        for _ in range(args.requests):
            client.execute(d.rt_cell)
        for _ in range(args.requests):
            client.recv_from(client.shell, 60)
    else:
        for cell in d.output(args.requests * 64 * 1024, 64 * 1024).cells:
            client.execute(cell)
        for _ in range(len(d.output(args.requests * 64 * 1024, 64 * 1024).cells)):
            client.recv_from(client.shell, 60)
    elapsed = time.perf_counter() - t0
    client.drain(0.2)
    kp.stop(client, timeout=10)  # py-spy writes its file when the kernel exits
    client.close()
    deadline = time.monotonic() + 30
    while not raw.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    print(f"{args.kernel} {args.mode}: {args.requests} requests in {elapsed:.2f} s")
    print(categorise(raw))
    print()
    print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
