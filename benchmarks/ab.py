"""A/B: the echo kernel from two kernelsdk source trees, interleaved in one run.

``python benchmarks/ab.py BASE [NEW] [--reps N] [--requests N] [--pipelined N]``

BASE and NEW are each a git revision (extracted with ``git archive`` into a temporary
directory) or a directory holding a kernelsdk tree; NEW defaults to this working tree, as it is
(uncommitted changes included). Each tree's echo kernel runs as ``python -m kernelsdk run echo
-f CONN --class kernelsdk_echo:EchoKernel`` with ``PYTHONPATH=<tree>:<tree>/kernels/echo`` and
``PYTHONSAFEPATH=1`` (no working directory on sys.path), so it imports that tree's kernelsdk
whatever is installed (checked before the run). Only flags every tree knows are passed.

Both kernels stay up for the whole run and are measured rep by rep, alternately, the first one
changing every repetition (base new, new base, ...), so drift of the machine hits both alike.
Every repetition measures, per kernel:

- the execute round trip: ``--requests`` sequential ``execute_request`` for the cell ``x``,
  each timed from the send until both its ``execute_reply`` and its ``idle`` are in; the p50;
  also the p50 to the reply alone and the kernel's CPU time per request (all threads, from
  /proc in clock ticks: 10 ms over the whole loop, so 10 µs per request at 1000 requests);
- pipelined throughput: ``--pipelined`` requests, signed in advance and sent back to back,
  timed until the last one's ``idle``; requests per second.

The client is the benchmark client (benchmarks/client.py), the same for both kernels: every
message received is verified. Prints the medians over repetitions, their ratios new/base, the
median of each repetition's ratio new/base (paired: less sensitive to slow drift), and one JSON
line last. The temporary trees and the kernel processes are removed at the end, also
on an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import zmq
from client import KernelDied, KernelProcess, RawClient, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
CELL = "x"
#: What each repetition records per kernel, and the direction in which a ratio new/base above
#: 1 goes.
METRICS = {
    "rt_p50_us": "slower",
    "reply_p50_us": "slower",
    "cpu_us_per_request": "more CPU",
    "pipelined_per_s": "faster",
}
SIDES = ("base", "new")


def log(msg: str) -> None:
    print(f"[ab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class Tree:
    """One side of the comparison: where its sources are and what they are."""

    side: str
    spec: str
    path: Path
    commit: str | None
    dirty: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "commit": self.commit,
            "dirty": self.dirty,
            "path": str(self.path),
        }


def resolve(side: str, spec: str | None, scratch: Path) -> Tree:
    """A tree for ``spec``: this working tree (None), a directory, or a revision extracted
    into ``scratch``."""
    if spec is None:
        status = git("status", "--porcelain", "--", "kernelsdk", "kernels/echo")
        return Tree(side, "working tree", ROOT, git("rev-parse", "HEAD"), dirty=bool(status))
    if Path(spec).is_dir():
        path = Path(spec).resolve()
        return Tree(side, spec, path, None)
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"ab.py: {spec!r} is neither a directory nor a git revision") from None
    path = scratch / side
    path.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "kernelsdk", "kernels/echo"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    return Tree(side, spec, path, commit)


def kernel_env(tree: Tree) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{tree.path}{os.pathsep}{tree.path / 'kernels' / 'echo'}"
    # ``python -m`` would otherwise put its working directory first on sys.path (3.11+).
    env["PYTHONSAFEPATH"] = "1"
    # Measuring subprocesses (coverage's .pth hook) would slow one kernel or both.
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG", "JPY_PARENT_PID"):
        env.pop(name, None)
    return env


def check_imports(tree: Tree, env: dict[str, str]) -> None:
    """The kernel's interpreter, with its environment, imports kernelsdk and the echo kernel
    from ``tree`` (not from an installed copy)."""
    code = "import kernelsdk as k, kernelsdk_echo as e; print(k.__file__); print(e.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    ).stdout.split()
    for module in out:
        if not Path(module).resolve().is_relative_to(tree.path):
            raise SystemExit(
                f"ab.py: the {tree.side} kernel would import {module}, not {tree.path}"
            )


@dataclass
class Side:
    """A running kernel from one tree, its client, and what each repetition measured."""

    tree: Tree
    process: KernelProcess
    client: RawClient | None = None
    runs: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})

    def start(self) -> None:
        self.process.launch(self.tree.side)
        self.client = RawClient(self.process.info)  # type: ignore[arg-type]
        try:
            self.client.wait_ready(TIMEOUT)
        except KernelDied as exc:
            raise KernelDied(f"{self.tree.side}: {exc}\n{self.process.log_tail()}") from None

    def stop(self) -> None:
        self.process.stop(self.client)
        if self.client is not None:
            self.client.close()

    def sequential(self, n: int) -> tuple[float, float, float]:
        """p50 of the round trip to reply and idle, p50 to the reply, CPU per request (µs)."""
        assert self.client is not None
        done, replied = [], []
        cpu0 = cpu_seconds(self.process.pid)
        for _ in range(n):
            t_reply, t_idle, _, _ = self.client.run_cell(CELL, TIMEOUT)
            done.append(max(t_reply, t_idle))
            replied.append(t_reply)
        cpu = cpu_seconds(self.process.pid) - cpu0
        return 1e6 * statistics.median(done), 1e6 * statistics.median(replied), 1e6 * cpu / n

    def pipelined(self, n: int) -> float:
        """Requests per second: ``n`` requests sent at once, until the last one's idle."""
        client = self.client
        assert client is not None
        content = {
            "code": CELL,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        batch = [client.frames("execute_request", content) for _ in range(n)]
        pending = {msg_id for msg_id, _ in batch}
        last = batch[-1][0]
        poller = zmq.Poller()
        poller.register(client.shell, zmq.POLLIN)
        poller.register(client.iopub, zmq.POLLIN)
        idle = False
        t0 = time.perf_counter()
        for _, frames in batch:
            client.shell.send_multipart(frames)
        deadline = time.monotonic() + TIMEOUT
        while pending or not idle:
            if time.monotonic() > deadline:
                raise KernelDied(f"{self.tree.side}: {len(pending)}/{n} replies missing")
            for got in client.recv_any(1.0, poller):
                if got.channel == "shell":
                    if got.msg.content.get("status") != "ok":
                        raise KernelDied(f"{self.tree.side}: {got.msg.content}")
                    pending.discard(got.parent_id or "")
                elif (
                    got.parent_id == last
                    and got.msg_type == "status"
                    and got.msg.content.get("execution_state") == "idle"
                ):
                    idle = True
        seconds = time.perf_counter() - t0
        client.drain(0.02)
        return n / seconds


def order(rep: int) -> tuple[int, int]:
    """Which side goes first: base in even repetitions, new in odd ones."""
    return (0, 1) if rep % 2 == 0 else (1, 0)


def medians(side: Side) -> dict[str, float]:
    return {m: statistics.median(v) for m, v in side.runs.items()}


def ratio(new: float, base: float) -> float | None:
    """new/base, or None when the base measured zero: CPU time comes from /proc in clock ticks
    (10 ms here), so a short run can read 0 on both sides."""
    return new / base if base else None


def paired_ratios(base: Side, new: Side) -> dict[str, float | None]:
    """The median over repetitions of new/base within each repetition: the two kernels of a
    repetition ran seconds apart, so this cancels slower drift of the machine."""
    result: dict[str, float | None] = {}
    for m in METRICS:
        pairs = [ratio(n, b) for n, b in zip(new.runs[m], base.runs[m], strict=True)]
        known = [r for r in pairs if r is not None]
        result[m] = statistics.median(known) if known else None
    return result


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    load_start = os.getloadavg()
    trees = [
        resolve("base", args.base, scratch),
        resolve("new", args.new, scratch),
    ]
    sides: list[Side] = []
    try:
        for tree in trees:
            env = kernel_env(tree)
            check_imports(tree, env)
            argv = [
                sys.executable,
                "-m",
                "kernelsdk",
                "run",
                "echo",
                "-f",
                "{connection_file}",
                "--class",
                "kernelsdk_echo:EchoKernel",
            ]
            side = Side(tree, KernelProcess(f"echo-{tree.side}", argv, env, scratch))
            sides.append(side)
            side.start()
            log(f"{tree.side}: {tree.spec} ({tree.commit or tree.path}), pid {side.process.pid}")
        for side in sides:  # warm-up: imports, caches, the allocator
            side.sequential(args.warmup)
            side.pipelined(min(args.pipelined, 200))
        for rep in range(args.reps):
            first, second = order(rep)
            for i in (first, second):
                rt, reply, cpu = sides[i].sequential(args.requests)
                sides[i].runs["rt_p50_us"].append(rt)
                sides[i].runs["reply_p50_us"].append(reply)
                sides[i].runs["cpu_us_per_request"].append(cpu)
            for i in (first, second):
                sides[i].runs["pipelined_per_s"].append(sides[i].pipelined(args.pipelined))
            log(
                f"rep {rep + 1}/{args.reps}: "
                + "; ".join(
                    f"{s.tree.side} rt {s.runs['rt_p50_us'][-1]:.1f} us, "
                    f"{s.runs['pipelined_per_s'][-1]:.0f}/s"
                    for s in (sides[first], sides[second])
                )
            )
    finally:
        for side in sides:
            side.stop()
    med = {s.tree.side: medians(s) for s in sides}
    return {
        "schema": 1,
        "kernel": "echo",
        "cell": CELL,
        "params": {
            "reps": args.reps,
            "requests": args.requests,
            "pipelined": args.pipelined,
            "warmup": args.warmup,
        },
        "machine": {
            "python": platform.python_version(),
            "nproc": os.cpu_count(),
            "loadavg_start": list(load_start),
            "loadavg_end": list(os.getloadavg()),
        },
        "trees": {t.side: t.describe() for t in trees},
        "medians": med,
        "ratios": {m: ratio(med["new"][m], med["base"][m]) for m in METRICS},
        "paired_ratios": paired_ratios(sides[0], sides[1]),
        "runs": {s.tree.side: s.runs for s in sides},
    }


def load(averages: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in averages)


def shown(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3f}"


def report(result: dict[str, Any]) -> str:
    med, ratios, paired = result["medians"], result["ratios"], result["paired_ratios"]
    trees = result["trees"]
    lines = [
        f"base: {trees['base']['spec']} ({trees['base']['commit'] or trees['base']['path']})",
        f"new:  {trees['new']['spec']} ({trees['new']['commit'] or trees['new']['path']})"
        + (" + uncommitted changes" if trees["new"]["dirty"] else ""),
        f"medians over {result['params']['reps']} repetitions; "
        f"load average {load(result['machine']['loadavg_start'])} at the start, "
        f"{load(result['machine']['loadavg_end'])} at the end",
        "new/base: the ratio of the medians; paired: the median of the repetitions' ratios",
        "",
        f"| {'metric':<34} | {'base':>10} | {'new':>10} | {'new/base':>8} | {'paired':>8} |",
        f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 10}|{'-' * 10}|",
    ]
    labels = {
        "rt_p50_us": "execute round trip p50 (µs)",
        "reply_p50_us": "execute to reply p50 (µs)",
        "cpu_us_per_request": "kernel CPU per request (µs)",
        "pipelined_per_s": f"pipelined {result['params']['pipelined']} (requests/s)",
    }
    for metric, direction in METRICS.items():
        lines.append(
            f"| {labels[metric]:<34} | {med['base'][metric]:>10.1f} | {med['new'][metric]:>10.1f}"
            f" | {shown(ratios[metric]):>8} | {shown(paired[metric]):>8} |  >1: new {direction}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare the echo kernel's hot path between two kernelsdk trees, "
        "interleaved in one run (see docs/performance.md)."
    )
    parser.add_argument("base", metavar="BASE", help="git revision or directory of the base tree")
    parser.add_argument(
        "new",
        metavar="NEW",
        nargs="?",
        help="git revision or directory of the new tree (default: this working tree, as it is)",
    )
    parser.add_argument("--reps", type=int, default=7, help="repetitions (default 7)")
    parser.add_argument(
        "--requests", type=int, default=1000, help="sequential requests per repetition (1000)"
    )
    parser.add_argument(
        "--pipelined", type=int, default=2000, help="pipelined requests per repetition (2000)"
    )
    parser.add_argument("--warmup", type=int, default=200, help="sequential warm-up requests")
    args = parser.parse_args(argv)
    if min(args.reps, args.requests, args.pipelined) < 1 or args.warmup < 0:
        parser.error("--reps, --requests and --pipelined must be at least 1")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the clean-up below

    signal.signal(signal.SIGTERM, terminate)
    scratch = Path(tempfile.mkdtemp(prefix="ksdk-ab-"))
    try:
        result = run(args, scratch)
    except KernelDied as exc:
        print(f"ab.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(report(result))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
