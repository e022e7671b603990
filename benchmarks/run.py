"""Benchmark kernelsdk's kernels against ipykernel and xeus-python in one interleaved run.

Usually started by ``scripts/bench`` (which builds ``.venv-bench``); runs in any environment
that has kernelsdk, the echo kernel and the kernelspecs to compare. Kernels whose kernelspec is
missing are skipped (and listed in the results). See docs/performance.md.

Each metric is measured round-robin: for every repetition, every kernel in turn (the order
rotating), so drift of a shared machine hits all kernels alike.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import zmq
from client import (
    KernelDied,
    KernelProcess,
    RawClient,
    cpu_seconds,
    free_ports,
    request_builder,
    rss_kib,
)
from kernel_defs import ANCHORS, BENCH_DIR, DEFAULT_KERNELS, DEFS, launch_spec
from report import check_targets, markdown, ratios, summary_ms

from kernelsdk import ConnectionInfo
from kernelsdk.protocol import Channel, Session

TIMEOUT = 120.0
#: A pipelined reply that does not come within this long is counted as lost.
REPLY_GAP = 30.0
OUTPUT_CHUNK = 64 * 1024


@dataclass
class Params:
    launches: int = 10
    requests: int = 2000
    warmup: int = 200
    pipelined: int = 2000
    iopub_mib: float = 50.0
    control_seconds: float = 5.0
    control_idle_samples: int = 200
    floor_requests: int = 5000
    repeat: int = 3
    settle: float = 1.0


QUICK = Params(
    launches=3,
    requests=400,
    warmup=50,
    pipelined=500,
    iopub_mib=8.0,
    control_seconds=1.5,
    control_idle_samples=50,
    floor_requests=1000,
    repeat=2,
)
TINY = Params(
    launches=1,
    requests=20,
    warmup=5,
    pipelined=20,
    iopub_mib=0.25,
    control_seconds=0.3,
    control_idle_samples=5,
    floor_requests=50,
    repeat=1,
    settle=0.2,
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rotations(kernels: list[str], repeat: int) -> Iterator[tuple[int, str]]:
    """(repetition, kernel) round-robin, the starting kernel rotating every repetition."""
    n = len(kernels)
    for r in range(repeat):
        for i in range(n):
            yield r, kernels[(r + i) % n]


# -- the floor --------------------------------------------------------------------------


def measure_floor(p: Params, ctx: zmq.Context[Any]) -> dict[str, Any]:
    port = free_ports(1)[0]
    server = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "floor_server.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("floor server did not start")
        info = ConnectionInfo(key="floor-key", shell_port=port)
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(info.endpoint("shell_port"))
        client = RawClient.__new__(RawClient)  # only frames() is used: no kernel sockets
        client.session = Session(info.key.encode(), info.signature_scheme)
        client.protocol = request_builder(client.session, "floor")
        content = {"code": "x", "silent": False, "store_history": True, "user_expressions": {}}
        _, fixed = client.frames("execute_request", content)
        for _ in range(100):  # warm-up
            sock.send_multipart(fixed)
            sock.recv_multipart()
        raw = []
        for _ in range(p.floor_requests):
            t0 = time.perf_counter()
            sock.send_multipart(fixed)
            sock.recv_multipart()
            raw.append(time.perf_counter() - t0)
        signed = []
        for _ in range(p.floor_requests):
            t0 = time.perf_counter()
            _, frames = client.frames("execute_request", content)
            sock.send_multipart(frames)
            client.session.deserialize(sock.recv_multipart())
            signed.append(time.perf_counter() - t0)
        batch = [client.frames("execute_request", content)[1] for _ in range(p.pipelined)]
        t0 = time.perf_counter()
        for frames in batch:
            sock.send_multipart(frames)
        for _ in batch:
            client.session.deserialize(sock.recv_multipart())
        pipelined_s = time.perf_counter() - t0
        # The client's own ceiling for IOPub: verify and decode 64 KiB stream messages.
        stream = {"name": "stdout", "text": "x" * OUTPUT_CHUNK}
        # What a kernel would publish, which no client sends: built unchecked.
        msgs = [
            client.protocol.unchecked_message(
                Channel.IOPUB, client.protocol.header("stream"), stream
            ).frames
            for _ in range(200)
        ]
        t0 = time.perf_counter()
        for frames in msgs:
            client.session.deserialize(frames)
        decode_s = time.perf_counter() - t0
        sock.send_multipart([b"stop"])
        sock.close()
        return {
            "raw": summary_ms(raw),
            "signed": summary_ms(signed),
            "pipelined_n": p.pipelined,
            "pipelined_per_s": round(p.pipelined / pipelined_s, 1),
            "client_decode_mib_per_s": round(200 * OUTPUT_CHUNK / decode_s / 2**20, 1),
        }
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(5)
        if server.poll() is None:
            server.kill()
            server.wait()


# -- kernels ----------------------------------------------------------------------------


class Bench:
    def __init__(self, kernels: list[str], p: Params, workdir: Path) -> None:
        self.kernels = kernels
        self.p = p
        self.workdir = workdir
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.specs = {k: launch_spec(k) for k in kernels}
        self.sessions: dict[str, tuple[KernelProcess, RawClient]] = {}
        self.metrics: dict[str, dict[str, Any]] = {k: {} for k in kernels}
        self.kernel_info: dict[str, dict[str, Any]] = {}
        self.verified = 0
        self.lenient: dict[str, int] = {}
        self.lenient_reasons: dict[str, set[str]] = {}

    def _process(self, name: str) -> KernelProcess:
        spec = self.specs[name]
        assert spec is not None
        encrypted = name in DEFS and DEFS[name].encrypted
        return KernelProcess(name, spec.argv, spec.env, self.workdir, encrypted=encrypted)

    def _connect(self, kp: KernelProcess, tag: str) -> RawClient:
        info = kp.launch(tag)
        return RawClient(info, self.ctx)

    def _first_reply(self, kp: KernelProcess, client: RawClient) -> tuple[float, Any]:
        """Seconds from launch to the first kernel_info_reply (re-asked every second)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            client.send("shell", "kernel_info_request", {})
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                got = client.recv_from(client.shell, 0.05)
                if got is not None and got.msg_type == "kernel_info_reply":
                    # A reply to an earlier ask counts too: the kernel answered.
                    return time.perf_counter() - kp.launched_at, got.msg.content
                if not kp.alive():
                    raise KernelDied(f"{kp.name} exited at startup:\n{kp.log_tail()}")
        raise KernelDied(f"{kp.name} never answered kernel_info within {TIMEOUT} s")

    def _close(self, kp: KernelProcess, client: RawClient) -> None:
        kp.stop(client)
        self.verified += client.stats.verified
        self.lenient[kp.name] = self.lenient.get(kp.name, 0) + client.stats.lenient
        self.lenient_reasons.setdefault(kp.name, set()).update(client.stats.lenient_reasons)
        client.close()

    # -- startup --------------------------------------------------------------------------

    def startup(self) -> None:
        samples: dict[str, list[float]] = {k: [] for k in self.kernels}
        for r, name in rotations(self.kernels, self.p.launches):
            kp = self._process(name)
            client = self._connect(kp, f"start{r}")
            try:
                elapsed, _ = self._first_reply(kp, client)
                samples[name].append(elapsed)
            finally:
                self._close(kp, client)
        for name, s in samples.items():
            ms = sorted(x * 1000 for x in s)
            self.metrics[name]["startup"] = {
                "n": len(ms),
                "median_ms": round(statistics.median(ms), 2),
                "max_ms": round(ms[-1], 2),
                "min_ms": round(ms[0], 2),
                "samples_ms": [round(x, 2) for x in ms],
            }
            log(f"startup {name}: median {self.metrics[name]['startup']['median_ms']} ms")

    # -- long-lived sessions ----------------------------------------------------------------

    @contextlib.contextmanager
    def guard(self, name: str, phase: str) -> Iterator[None]:
        """A kernel that fails a measurement gets an error recorded, not the run aborted; a
        dead kernel is restarted for the next phases."""
        try:
            yield
        except KernelDied as exc:
            log(f"{phase} {name}: FAILED: {exc}")
            self.metrics[name].setdefault("errors", []).append(f"{phase}: {exc}")
            kp, client = self.sessions[name]
            if kp.alive():
                client.drain(0.5)
            else:
                self._close(kp, client)
                self._open_session(name, f"restart{len(self.metrics[name]['errors'])}")

    def _open_session(self, name: str, tag: str = "session") -> dict[str, Any]:
        kp = self._process(name)
        client = self._connect(kp, tag)
        try:
            _, info = self._first_reply(kp, client)
            client.wait_ready(TIMEOUT)
        except BaseException:
            self._close(kp, client)  # never leave a kernel process behind
            raise
        self.sessions[name] = (kp, client)
        return dict(info)

    def open_sessions(self) -> None:
        for name in self.kernels:
            info = self._open_session(name)
            self.kernel_info[name] = {
                "implementation": info.get("implementation"),
                "implementation_version": info.get("implementation_version"),
                "language": info.get("language_info", {}).get("name"),
                "language_version": info.get("language_info", {}).get("version"),
                "protocol_version": info.get("protocol_version"),
            }
        time.sleep(self.p.settle)  # let start-up work (lazy imports, threads) settle before RSS
        for name, (kp, client) in self.sessions.items():
            # One trivial cell first: a kernel's RSS "after start" includes being usable.
            with self.guard(name, "first cell"):
                client.run_cell(DEFS[name].rt_cell, TIMEOUT)
            client.drain()
            mem = rss_kib(kp.pid)
            self.metrics[name]["rss"] = {
                "start_mib": round(mem["rss_kib"] / 1024, 1),
                "processes": mem["processes"],
            }

    def close_sessions(self) -> None:
        for name, (kp, client) in self.sessions.items():
            mem = rss_kib(kp.pid)
            self.metrics[name]["rss"]["peak_mib"] = round(mem["hwm_kib"] / 1024, 1)
            self.metrics[name]["rss"]["end_mib"] = round(mem["rss_kib"] / 1024, 1)
            self._close(kp, client)
        self.sessions.clear()

    # -- execute round trips ----------------------------------------------------------------

    def execute(self) -> None:
        for name, (_, client) in self.sessions.items():
            for _ in range(self.p.warmup):
                client.run_cell(DEFS[name].rt_cell, TIMEOUT)
            client.drain()
        reply: dict[str, list[float]] = {k: [] for k in self.kernels}
        idle: dict[str, list[float]] = {k: [] for k in self.kernels}
        first: dict[str, list[float]] = {k: [] for k in self.kernels}
        cpu: dict[str, float] = dict.fromkeys(self.kernels, 0.0)
        chunk = max(1, self.p.requests // self.p.repeat)
        for _, name in rotations(self.kernels, self.p.repeat):
            kp, client = self.sessions[name]
            code = DEFS[name].rt_cell
            with self.guard(name, "execute"):
                cpu0 = cpu_seconds(kp.pid)
                for _ in range(chunk):
                    t_reply, t_idle, t_out, _ = client.run_cell(code, TIMEOUT)
                    reply[name].append(t_reply)
                    idle[name].append(t_idle)
                    if t_out:
                        first[name].append(t_out)
                cpu[name] += cpu_seconds(kp.pid) - cpu0
                client.drain(0.02)
        for name in self.kernels:
            self.metrics[name]["execute"] = {
                "cell": DEFS[name].rt_cell,
                "reply": summary_ms(reply[name]),
                "idle": summary_ms(idle[name]),
                "first_output": summary_ms(first[name]),
                # The kernel process's CPU time (all threads) per request: clock ticks of
                # 10 ms, so meaningful over many requests only.
                "cpu_ms_per_request": round(1000 * cpu[name] / max(1, len(reply[name])), 3),
            }
            log(f"execute {name}: reply {self.metrics[name]['execute']['reply'].get('p50')} ms")

    def pipelined(self) -> None:
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in self.kernels}
        n = self.p.pipelined
        for _, name in rotations(self.kernels, self.p.repeat):
            with self.guard(name, "pipelined"):
                runs[name].append(self._pipelined_once(name))
        for name in self.kernels:
            if not runs[name]:
                self.metrics[name]["pipelined"] = {"n": n, "runs": []}
                continue
            best = sorted(runs[name], key=lambda r: r["per_s"])
            median = best[len(best) // 2]
            self.metrics[name]["pipelined"] = {
                "n": n,
                "per_s": median["per_s"],
                "seconds": median["seconds"],
                "cpu_ms_per_request": median["cpu_ms_per_request"],
                "in_order": all(r["in_order"] for r in runs[name]),
                "all_ok": all(r["all_ok"] for r in runs[name]),
                "runs": runs[name],
            }
            log(f"pipelined {name}: {median['per_s']} req/s")

    def _pipelined_once(self, name: str) -> dict[str, Any]:
        n = self.p.pipelined
        _, client = self.sessions[name]
        content = {
            "code": DEFS[name].rt_cell,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        batch = [client.frames("execute_request", content) for _ in range(n)]
        ids = [m for m, _ in batch]
        kp = self.sessions[name][0]
        cpu0 = cpu_seconds(kp.pid)
        t0 = time.perf_counter()
        for _, frames in batch:
            client.shell.send_multipart(frames)
        order_ok = True
        statuses_ok = True
        for i, expected in enumerate(ids):
            got = client.recv_from(client.shell, REPLY_GAP)
            if got is None:
                raise KernelDied(f"{i}/{n} pipelined replies, then none for {REPLY_GAP} s")
            order_ok &= got.parent_id == expected
            statuses_ok &= got.msg.content.get("status") == "ok"
        t_replies = time.perf_counter() - t0
        cpu_s = cpu_seconds(kp.pid) - cpu0
        last, t_idle = ids[-1], None
        deadline = time.monotonic() + 10  # IOPub may drop messages (PUB high-water mark)
        while t_idle is None and time.monotonic() < deadline:
            got = client.recv_from(client.iopub, 1.0)
            if (
                got is not None
                and got.parent_id == last
                and got.msg_type == "status"
                and got.msg.content.get("execution_state") == "idle"
            ):
                t_idle = time.perf_counter() - t0
        client.drain(0.05)
        return {
            "seconds": round(t_replies, 4),
            "per_s": round(n / t_replies, 1),
            "seconds_to_last_idle": None if t_idle is None else round(t_idle, 4),
            "cpu_ms_per_request": round(1000 * cpu_s / n, 3),
            "in_order": order_ok,
            "all_ok": statuses_ok,
        }

    def iopub(self) -> None:
        total = int(self.p.iopub_mib * 1024 * 1024)
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in self.kernels}
        for _, name in rotations(self.kernels, self.p.repeat):
            with self.guard(name, "iopub"):
                runs[name].append(self._iopub_once(name, total))
        for name in self.kernels:
            if not runs[name]:
                self.metrics[name]["iopub"] = {"runs": [], "complete": False}
                continue
            ordered = sorted(runs[name], key=lambda r: r["mib_per_s"])
            median = ordered[len(ordered) // 2]
            ttfbs = sorted(r["ttfb_ms"] for r in runs[name] if r["ttfb_ms"] is not None)
            self.metrics[name]["iopub"] = {
                "mib": round(median["bytes"] / 2**20, 2),
                "mib_per_s": median["mib_per_s"],
                "ttfb_ms": ttfbs[len(ttfbs) // 2] if ttfbs else None,
                "complete": all(r["bytes"] == r["expected_bytes"] for r in runs[name]),
                "runs": runs[name],
            }
            log(f"iopub {name}: {median['mib_per_s']} MiB/s, ttfb {median['ttfb_ms']} ms")

    def _iopub_once(self, name: str, total: int) -> dict[str, Any]:
        _, client = self.sessions[name]
        plan = DEFS[name].output(total, OUTPUT_CHUNK)
        content = {
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        batch = [client.frames("execute_request", {**content, "code": c}) for c in plan.cells]
        ids = {m for m, _ in batch}
        last = batch[-1][0]
        received = 0
        t_end = 0.0
        first: float | None = None
        replies = 0
        done = False
        t0 = time.perf_counter()
        for _, frames in batch:
            client.shell.send_multipart(frames)
        deadline = time.monotonic() + TIMEOUT
        while not (done and replies == len(batch)):
            if time.monotonic() > deadline:
                raise KernelDied(f"output run unfinished after {TIMEOUT} s ({received} B)")
            for got in client.recv_any(1.0, client._shell_iopub):
                if got.parent_id not in ids:
                    continue
                if got.channel == "shell":
                    replies += 1
                    continue
                c = got.msg.content
                if got.msg_type == "stream" and c.get("name") == "stdout":
                    if first is None:
                        first = got.t - t0
                    received += len(c.get("text", ""))
                elif got.msg_type == "execute_result":
                    received += len(c.get("data", {}).get("text/plain", ""))
                elif (
                    got.msg_type == "status"
                    and got.parent_id == last
                    and c.get("execution_state") == "idle"
                ):
                    done = True
                    t_end = got.t - t0
        client.drain(0.05)
        return {
            "seconds": round(t_end, 4),
            "bytes": received,
            "expected_bytes": plan.expected_bytes,
            "mib_per_s": round(received / t_end / 2**20, 2),
            "ttfb_ms": None if first is None else round(first * 1000, 3),
            "cells": len(plan.cells),
        }

    # -- control and heartbeat ------------------------------------------------------------

    @staticmethod
    def _control_rtt(client: RawClient, timeout: float) -> float:
        t0 = time.perf_counter()
        client.request("control", "kernel_info_request", {}, timeout)
        return time.perf_counter() - t0

    def control(self) -> None:
        for name in self.kernels:
            self.metrics[name]["control"] = {}
        for _, name in rotations(self.kernels, self.p.repeat):
            _, client = self.sessions[name]
            ctl, hb, missed = [], [], 0
            with self.guard(name, "control idle"):
                for _ in range(max(1, self.p.control_idle_samples // self.p.repeat)):
                    ctl.append(self._control_rtt(client, 10))
                    rtt = client.ping(1.0)
                    if rtt is None:
                        missed += 1
                    else:
                        hb.append(rtt)
            self._add_control(name, "idle", ctl, hb, missed)
        modes = ("sleep", "spin", "spin-inline")
        for mode in modes:
            for _, name in rotations(self.kernels, 1):
                d = DEFS[name]
                make = {"sleep": d.sleep, "spin": d.spin, "spin-inline": d.spin_inline}[mode]
                if make is None:
                    continue
                with self.guard(name, f"control {mode}"):
                    self._busy(name, mode, make(self.p.control_seconds))

    def _add_control(
        self, name: str, mode: str, ctl: list[float], hb: list[float], missed: int
    ) -> None:
        node = self.metrics[name]["control"].setdefault(mode, {"_ctl": [], "_hb": [], "_m": 0})
        node["_ctl"] += ctl
        node["_hb"] += hb
        node["_m"] += missed
        c, h = summary_ms(node["_ctl"]), summary_ms(node["_hb"])
        node.update(
            {
                "control_n": c.get("n", 0),
                "control_p50": c.get("p50"),
                "control_p99": c.get("p99"),
                "control_max": c.get("max"),
                "hb_n": h.get("n", 0),
                "hb_p50": h.get("p50"),
                "hb_p99": h.get("p99"),
                "hb_max": h.get("max"),
                "hb_missed": node["_m"],
            }
        )

    def _busy(self, name: str, mode: str, code: str) -> None:
        """Control and heartbeat round trips while ``code`` keeps the shell busy."""
        _, client = self.sessions[name]
        msg_id = client.execute(code)
        deadline = time.monotonic() + TIMEOUT
        # Wait until the cell runs (its execute_input on IOPub), at most 0.2 s: a kernel that
        # blocks its event loop (spin-inline) publishes execute_input only after the cell.
        started = False
        wait_until = min(deadline, time.monotonic() + 0.2)
        while not started and time.monotonic() < wait_until:
            got = client.recv_from(client.iopub, max(0.0, wait_until - time.monotonic()))
            started = got is not None and got.parent_id == msg_id
            started = started and got is not None and got.msg_type == "execute_input"
        time.sleep(0.05)
        ctl: list[float] = []
        hb: list[float] = []
        missed = 0
        end_by = time.monotonic() + self.p.control_seconds + 30
        while not client.shell.poll(0) and time.monotonic() < end_by:
            rtt = client.ping(1.0)
            if rtt is None:
                missed += 1
            else:
                hb.append(rtt)
            if client.shell.poll(0):
                break
            ctl.append(self._control_rtt(client, self.p.control_seconds + 30))
            time.sleep(0.01)
        reply = client.recv_from(client.shell, TIMEOUT)
        if reply is None or reply.parent_id != msg_id:
            raise KernelDied(f"{name}: {mode} cell did not reply")
        client.drain(0.1)
        self._add_control(name, mode, ctl, hb, missed)
        c = self.metrics[name]["control"][mode]
        log(f"{mode} {name}: control p50 {c['control_p50']} ms, hb p50 {c['hb_p50']} ms")

    def finish_control(self) -> None:
        for name in self.kernels:
            for node in self.metrics[name].get("control", {}).values():
                for k in ("_ctl", "_hb", "_m"):
                    node.pop(k, None)


# -- the run ------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Params, str]:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a shorter run (about a minute)")
    ap.add_argument("--tiny", action="store_true", help="a smoke run (seconds; no statistics)")
    ap.add_argument(
        "--kernels",
        default=",".join(DEFAULT_KERNELS),
        help=f"comma-separated kernelspec names (default {','.join(DEFAULT_KERNELS)})",
    )
    ap.add_argument("--repeat", type=int, help="round-robin repetitions per metric")
    ap.add_argument("--out", default=str(BENCH_DIR / "results"), help="directory for results")
    ap.add_argument("--name", help="file name stem for the results (default: date and mode)")
    ap.add_argument("--no-floor", action="store_true", help="skip the raw pyzmq floor")
    ap.add_argument("--skip", default="", help="comma-separated phases to skip")
    for f in (
        "launches",
        "requests",
        "warmup",
        "pipelined",
        "iopub_mib",
        "control_seconds",
        "control_idle_samples",
        "floor_requests",
    ):
        typ = float if f in ("iopub_mib", "control_seconds") else int
        ap.add_argument("--" + f.replace("_", "-"), type=typ, dest=f)
    args = ap.parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    base = {"tiny": TINY, "quick": QUICK, "full": Params()}[mode]
    p = Params(**asdict(base))
    for f in asdict(p):
        if getattr(args, f, None) is not None:
            setattr(p, f, getattr(args, f))
    if args.repeat is not None:
        p.repeat = args.repeat
    return args, p, mode


def main(argv: list[str] | None = None) -> int:
    args, p, mode = parse(argv)
    wanted = [k.strip() for k in args.kernels.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in DEFS]
    if unknown:
        print(f"unknown kernels {unknown}; known: {sorted(DEFS)}", file=sys.stderr)
        return 2
    kernels = [k for k in wanted if launch_spec(k) is not None]
    skipped = [k for k in wanted if k not in kernels]
    for k in skipped:
        log(f"kernel {k!r}: no kernelspec found, skipped")
    if not kernels:
        print("no kernel to benchmark", file=sys.stderr)
        return 2
    skip = set(filter(None, args.skip.split(",")))
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "schema": 1,
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": mode,
        "command": os.environ.get("KBENCH_COMMAND") or " ".join([sys.executable, *sys.argv]),
        "params": asdict(p),
        "machine": machine(),
        "versions": {
            "python": platform.python_version(),
            "kernelsdk": _version("kernelsdk"),
            "kernelsdk-echo": _version("kernelsdk-echo"),
            "ipykernel": _version("ipykernel"),
            "xeus-python": _version("xeus-python"),
            "pyzmq": zmq.pyzmq_version(),
            "libzmq": zmq.zmq_version(),
            "trio": _version("trio"),
        },
        "kernels": {},
        "skipped": skipped,
        "anchors": [a for a in ANCHORS if a in kernels],
        "floor": None,
        "metrics": {},
        "notes": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="kbench-"))
    bench = Bench(kernels, p, workdir)
    t_start = time.monotonic()
    try:
        if not args.no_floor and "floor" not in skip:
            log("floor")
            results["floor"] = measure_floor(p, bench.ctx)
        if "startup" not in skip:
            log("startup")
            bench.startup()
        log("sessions")
        bench.open_sessions()
        for phase in ("execute", "pipelined", "iopub", "control"):
            if phase not in skip:
                log(phase)
                getattr(bench, phase)()
        bench.finish_control()
        bench.close_sessions()
    finally:
        for kp, client in list(bench.sessions.values()):
            bench._close(kp, client)
        bench.ctx.destroy(linger=0)
    results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["duration_s"] = round(time.monotonic() - t_start, 1)
    results["verified_messages"] = bench.verified
    for k in kernels:
        spec = bench.specs[k]
        assert spec is not None
        results["kernels"][k] = {
            "label": DEFS[k].label,
            "ours": DEFS[k].ours,
            "spec": spec.source,
            "argv": spec.argv,
            **bench.kernel_info.get(k, {}),
        }
    results["metrics"] = bench.metrics
    for k, m in bench.metrics.items():
        if "iopub" in m and not m["iopub"]["complete"]:
            results["notes"].append(f"{k}: IOPub output incomplete (see iopub.runs)")
        for err in m.get("errors", []):
            results["notes"].append(f"{k}: FAILED {err}")
        if "pipelined" in m and not (
            m["pipelined"].get("in_order", True) and m["pipelined"].get("all_ok", True)
        ):
            results["notes"].append(f"{k}: pipelined replies out of order or not ok")
    for k, n in bench.lenient.items():
        if n:
            reasons = "; ".join(sorted(bench.lenient_reasons[k]))
            results["notes"].append(
                f"{k}: {n} correctly signed messages broke the message spec ({reasons}); accepted"
            )
    results["ratios"] = ratios(results)
    results["targets"] = check_targets(results)
    results["notes"].append(
        f"{bench.verified} messages received, every one signature-checked; "
        f"run took {results['duration_s']} s"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"{started.strftime('%Y%m%dT%H%M%SZ')}-{mode}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    md = markdown(results)
    (out / f"{stem}.md").write_text(md, encoding="utf-8")
    print(md)
    log(f"results: {out / stem}.json and .md")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
