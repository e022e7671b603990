"""Smoke tests of the benchmark harness: benchmarks/run.py in its tiny mode, and the A/B
comparison of two source trees (benchmarks/ab.py) on a few requests.

run.py runs against kernelsdk's own kernels (echo, and the benchmark-only ksdk-bench) and the
framework-free Python floor kernel (py-floor), so it needs neither ipykernel nor xeus-python:
the anchors are simply absent. It checks the structure and
sanity of the results, never a timing threshold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
AB = ROOT / "benchmarks" / "ab.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench")
    prefix = tmp / "prefix"
    subprocess.run(
        [sys.executable, "-m", "kernelsdk", "install", "echo", "--prefix", str(prefix)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    env = dict(os.environ)
    env["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    out = tmp / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--tiny",
            "--kernels",
            "echo,ksdk-bench,py-floor",
            "--out",
            str(out),
            "--name",
            "smoke",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "smoke.md").read_text(encoding="utf-8").startswith("## Benchmark run")
    data: dict[str, Any] = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    return data


def test_run_metadata(results: dict[str, Any]) -> None:
    assert results["schema"] == 1
    assert results["mode"] == "tiny"
    assert results["machine"]["nproc"] >= 1
    assert results["versions"]["kernelsdk"]
    assert set(results["kernels"]) == {"echo", "ksdk-bench", "py-floor"}
    assert results["kernels"]["echo"]["implementation"] == "echo"
    assert results["kernels"]["echo"]["spec"].endswith("kernel.json")
    assert results["anchors"] == [] and results["ratios"] == {}
    assert results["verified_messages"] > 0


def test_floor(results: dict[str, Any]) -> None:
    floor = results["floor"]
    for kind in ("raw", "signed"):
        assert floor[kind]["n"] > 0
        assert 0 < floor[kind]["p50"] <= floor[kind]["p99"] <= floor[kind]["max"]
    assert floor["pipelined_per_s"] > 0
    assert floor["client_decode_mib_per_s"] > 0


@pytest.mark.parametrize("kernel", ["echo", "ksdk-bench", "py-floor"])
def test_kernel_metrics(results: dict[str, Any], kernel: str) -> None:
    m = results["metrics"][kernel]
    startup = m["startup"]
    assert startup["n"] == len(startup["samples_ms"]) >= 1
    assert 0 < startup["min_ms"] <= startup["median_ms"] <= startup["max_ms"]
    for key in ("reply", "idle", "first_output"):
        s = m["execute"][key]
        assert s["n"] >= 1
        assert 0 < s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    p = m["pipelined"]
    assert p["in_order"] and p["all_ok"] and p["per_s"] > 0 and p["n"] >= 1
    io = m["iopub"]
    assert io["complete"] and io["mib_per_s"] > 0 and io["ttfb_ms"] > 0
    assert all(r["bytes"] == r["expected_bytes"] > 0 for r in io["runs"])
    idle = m["control"]["idle"]
    assert idle["control_n"] >= 1 and idle["control_p50"] > 0 and idle["hb_p50"] > 0
    assert idle["hb_missed"] == 0
    rss = m["rss"]
    assert 0 < rss["start_mib"] <= rss["peak_mib"]


def test_busy_control_only_where_the_kernel_can_be_busy(results: dict[str, Any]) -> None:
    assert set(results["metrics"]["echo"]["control"]) == {"idle"}
    bench = results["metrics"]["ksdk-bench"]["control"]
    assert {"idle", "sleep", "spin", "spin-inline"} <= set(bench)
    for mode in ("sleep", "spin"):
        assert bench[mode]["control_n"] >= 1
        assert bench[mode]["control_p50"] > 0


def test_targets_without_anchors_are_unknown(results: dict[str, Any]) -> None:
    rows = {(t["kernel"], t["metric"], t.get("anchor")): t for t in results["targets"]}
    assert rows[("echo", "execute.reply.p50", "xpython-raw")]["met"] is None
    assert all(t["met"] in (True, False, None) for t in results["targets"])


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", "HEAD"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _in_git_checkout(), reason="ab.py extracts a revision with git")
def test_ab_compares_head_with_the_working_tree() -> None:
    proc = subprocess.run(
        [sys.executable, str(AB), "HEAD", "--reps", "1", "--requests", "20", "--pipelined", "50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    assert result["schema"] == 1
    assert result["params"] == {"reps": 1, "requests": 20, "pipelined": 50, "warmup": 200}
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    base, new = result["trees"]["base"], result["trees"]["new"]
    assert base["spec"] == "HEAD" and base["commit"] == head
    assert new["spec"] == "working tree" and new["path"] == str(ROOT)
    # The extracted tree is gone, and the kernels with it.
    assert not Path(base["path"]).exists()
    metrics = {"rt_p50_us", "reply_p50_us", "cpu_us_per_request", "pipelined_per_s"}
    assert set(result["ratios"]) == set(result["paired_ratios"]) == metrics
    for side in ("base", "new"):
        assert set(result["medians"][side]) == metrics
        assert all(len(runs) == 1 for runs in result["runs"][side].values())
        medians = result["medians"][side]
        assert 0 < medians["reply_p50_us"] <= medians["rt_p50_us"]
        assert medians["pipelined_per_s"] > 0 and medians["cpu_us_per_request"] >= 0
    assert "execute round trip p50" in proc.stdout


def test_lua_debugger_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/lua_debugger.py (issue 14) in one round: its structure, never a timing."""
    pytest.importorskip("kernelsdk_lua")
    out = tmp_path / "lua_debugger.json"
    script = ROOT / "benchmarks" / "lua_debugger.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--rounds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    variants = {"before", "off", "started", "bp-elsewhere", "bp-in-cell"}
    assert result["rounds"] == 1 and set(result["results"]) == variants
    assert result["results"]["before"]["ratio"] == 1.0
    assert all(r["median_s"] > 0 and r["ratio"] > 0 for r in result["results"].values())
