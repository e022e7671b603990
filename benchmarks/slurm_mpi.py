"""Per-cell cost of MPI kernels run as Slurm jobs through the kernelsdk-slurm provisioner
(issue 15).

``python benchmarks/slurm_mpi.py [--ranks 1,2,4,8,16] [--cells 50] [--kernels echo,lua54]``

Starts a real single-node Slurm cluster (tests/slurm_cluster.py: needs slurm-wlm, munge and
root), or uses the running one named by ``--use-cluster`` (its slurm.conf). For each kernel and
rank count it installs ``KERNEL --slurm --mpi N --slurm-arg=--overcommit`` (more ranks than
cores: oversubscribed), starts it with jupyter_client's KernelManager and measures, after 5
warm-up cells, the round trip of ``--cells`` cells through ``execute_interactive``:

- ``quiet``: a cell with no output (echo: an empty line; Lua: ``local a = 1``): the fan-out of
  the request to every rank and the gathering of every rank's report;
- ``print``: a cell printing one line on every rank (echo: ``x``; Lua: ``print(mpi.rank)``),
  so N labelled lines reach the client;
- ``allreduce`` (Lua): ``mpi.allreduce(mpi.rank, "sum")`` on every rank, no output.

Also the start (from ``start_kernel``, which runs sbatch, to the first reply) and rank 0's CPU
time per cell (``cpu0_ms``, from /proc: the serial part of the fan-out and the gathering, which
the oversubscription of this machine does not inflate as it does the round trip). Prints a
table (p50 and mean ms) and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CELLS: dict[str, dict[str, str]] = {
    "echo": {"quiet": "", "print": "x"},
    "lua54": {
        "quiet": "local a = 1",
        "print": "print(mpi.rank)",
        "allreduce": 'local s = mpi.allreduce(mpi.rank, "sum")',
    },
}


def install(prefix: Path, kernel: str, ranks: int) -> str:
    name = f"{kernel}-slurm-mpi{ranks}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "kernelsdk",
            "install",
            kernel,
            "--slurm",
            "--mpi",
            str(ranks),
            "--slurm-arg=--overcommit",
            "--prefix",
            str(prefix),
            "--replace",
        ],
        check=True,
        capture_output=True,
    )
    return name


TICK = os.sysconf("SC_CLK_TCK")


def rank0_pid(job: str) -> int | None:
    """The process of rank 0 of the job's kernel (MPICH's hydra sets PMI_RANK)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if (
            f"SLURM_JOB_ID={job}".encode() in environ
            and b"kernelsdk\0run" in cmdline
            and b"python" in cmdline.split(b"\0")[0]  # not the launcher
            and (b"PMI_RANK=0" in environ or not any(e.startswith(b"PMI_RANK=") for e in environ))
        ):
            return int(entry)
    return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure(name: str, cells: dict[str, str], count: int) -> dict[str, Any]:
    km = KernelManager(kernel_name=name)
    t0 = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=300)
        result: dict[str, Any] = {"start_s": round(time.perf_counter() - t0, 2)}
        pid = rank0_pid(str(getattr(km.provisioner, "job_id", "")))
        for what, code in cells.items():
            for _ in range(5):
                kc.execute_interactive(code, timeout=120, output_hook=lambda m: None)
            times = []
            cpu = cpu_seconds(pid) if pid else 0.0
            for _ in range(count):
                t = time.perf_counter()
                reply = kc.execute_interactive(code, timeout=120, output_hook=lambda m: None)
                times.append((time.perf_counter() - t) * 1000)
                assert reply["content"]["status"] == "ok", reply["content"]
            result[what] = {
                "p50_ms": round(statistics.median(times), 2),
                "mean_ms": round(statistics.fmean(times), 2),
            }
            if pid:
                result[what]["cpu0_ms"] = round((cpu_seconds(pid) - cpu) * 1000 / count, 2)
        return result
    finally:
        kc.stop_channels()
        km.shutdown_kernel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2,4,8,16")
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--kernels", default="echo,lua54")
    parser.add_argument("--use-cluster", metavar="SLURM_CONF")
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    kernels = args.kernels.split(",")
    root = Path(tempfile.mkdtemp(prefix="ksdk-slurm-bench-"))
    os.environ.update(
        JUPYTER_PATH=str(root / "share" / "jupyter"),
        JUPYTER_DATA_DIR=str(root / "data"),
        JUPYTER_RUNTIME_DIR=str(root / "rt"),
        KERNELSDK_NO_ENCRYPTION_WARNING="1",
    )
    results: dict[str, dict[int, Any]] = {}

    def run_all() -> None:
        for kernel in kernels:
            for n in ranks:
                name = install(root, kernel, n)
                results.setdefault(kernel, {})[n] = r = measure(name, CELLS[kernel], args.cells)
                print(kernel, n, json.dumps(r), flush=True)

    if args.use_cluster:
        os.environ["SLURM_CONF"] = args.use_cluster
        run_all()
    else:
        from slurm_cluster import SlurmCluster

        with SlurmCluster() as cluster:
            print(f"cluster: node {cluster.node}, {cluster.cpus} CPUs", flush=True)
            run_all()
    print()
    print(
        "| kernel | ranks | start s | " + " | ".join(f"{c} p50 / mean ms" for c in CELLS["lua54"])
    )
    print("|---|---|---|" + "---|" * len(CELLS["lua54"]))
    for kernel, by_ranks in results.items():
        for n, r in by_ranks.items():
            cols = [
                f"{r[c]['p50_ms']} / {r[c]['mean_ms']} (cpu0 {r[c].get('cpu0_ms', '?')})"
                if c in r
                else ""
                for c in CELLS["lua54"]
            ]
            print(f"| {kernel} | {n} | {r['start_s']} | " + " | ".join(cols) + " |")
    print(json.dumps({"cpus": os.cpu_count(), "cells": args.cells, "results": results}))


if __name__ == "__main__":
    main()
