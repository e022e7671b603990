"""Statistics, ratios against the anchors, target checks and the Markdown report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# (key, label, unit, better) for the headline table and the ratios; the key is a path in a
# kernel's metrics dict.
HEADLINE: list[tuple[str, str, str, str]] = [
    ("startup.median_ms", "startup to kernel_info_reply, median", "ms", "lower"),
    ("startup.max_ms", "startup, max", "ms", "lower"),
    ("execute.reply.p50", "execute → reply p50", "ms", "lower"),
    ("execute.reply.p90", "execute → reply p90", "ms", "lower"),
    ("execute.reply.p99", "execute → reply p99", "ms", "lower"),
    ("execute.first_output.p50", "execute → first output p50", "ms", "lower"),
    ("execute.idle.p50", "execute → idle p50", "ms", "lower"),
    ("execute.idle.p90", "execute → idle p90", "ms", "lower"),
    ("execute.idle.p99", "execute → idle p99", "ms", "lower"),
    ("execute.cpu_ms_per_request", "kernel CPU per request (sequential)", "ms", "lower"),
    ("pipelined.per_s", "pipelined throughput", "req/s", "higher"),
    ("pipelined.cpu_ms_per_request", "kernel CPU per request (pipelined)", "ms", "lower"),
    ("iopub.mib_per_s", "IOPub output throughput", "MiB/s", "higher"),
    ("iopub.ttfb_ms", "IOPub time to first byte", "ms", "lower"),
    ("control.idle.control_p50", "control kernel_info p50, shell idle", "ms", "lower"),
    ("control.idle.hb_p50", "heartbeat p50, shell idle", "ms", "lower"),
    ("control.sleep.control_p50", "control p50, shell sleeping", "ms", "lower"),
    ("control.sleep.control_max", "control max, shell sleeping", "ms", "lower"),
    ("control.sleep.hb_p50", "heartbeat p50, shell sleeping", "ms", "lower"),
    ("control.spin.control_p50", "control p50, shell spinning", "ms", "lower"),
    ("control.spin.control_max", "control max, shell spinning", "ms", "lower"),
    ("control.spin.hb_p50", "heartbeat p50, shell spinning", "ms", "lower"),
    ("control.spin.hb_missed", "heartbeats missed (1 s), spinning", "", "lower"),
    ("control.spin-inline.control_p50", "control p50, Trio thread spinning", "ms", "lower"),
    ("control.spin-inline.hb_p50", "heartbeat p50, Trio thread spinning", "ms", "lower"),
    ("rss.start_mib", "RSS after start", "MiB", "lower"),
    ("rss.peak_mib", "RSS peak (VmHWM)", "MiB", "lower"),
]

# (kernel, key, anchor, op, bound, text): the targets that this harness can check.
TARGETS: list[tuple[str, str, str, str, float, str]] = [
    ("echo", "execute.reply.p50", "xpython-raw", "<=", 0.5, "execute round trip p50 ≤ 0.5x"),
    ("echo", "startup.median_ms", "xpython", "<=", 1.0, "startup ≤ 1.0x"),
    ("echo", "pipelined.per_s", "xpython-raw", ">=", 3.0, "pipelined throughput ≥ 3x"),
    ("echo", "iopub.mib_per_s", "xpython", ">=", 2.0, "IOPub throughput ≥ 2x"),
    ("echo", "rss.start_mib", "xpython-raw", "<=", 1.0, "RSS after start ≤ 1.0x"),
    ("lua54", "execute.reply.p50", "xpython-raw", "<=", 0.7, "execute round trip p50 ≤ 0.7x"),
]
ABSOLUTE_TARGETS: list[tuple[str, str, str, float, str]] = [
    ("echo", "iopub.ttfb_ms", "<=", 5.0, "IOPub first byte ≤ 5 ms (output run)"),
    ("echo", "execute.first_output.p50", "<=", 5.0, "first output of a cell p50 ≤ 5 ms"),
    # The Lua target's shape, measured on the benchmark kernel (the Lua kernel is elsewhere).
    ("ksdk-bench", "control.spin.control_p50", "<=", 1.0, "control p50 ≤ 1 ms while spinning"),
    ("ksdk-bench", "control.spin.hb_p50", "<=", 1.0, "heartbeat p50 ≤ 1 ms while spinning"),
    ("lua54", "control.spin.control_p50", "<=", 1.0, "control p50 ≤ 1 ms while Lua spins"),
    ("lua54", "control.spin.hb_p50", "<=", 1.0, "heartbeat p50 ≤ 1 ms while Lua spins"),
]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """p50/p90/p99/mean/min/max in milliseconds of samples given in seconds."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 4),
        "p90": round(percentile(ms, 90), 4),
        "p99": round(percentile(ms, 99), 4),
        "mean": round(sum(ms) / len(ms), 4),
        "min": round(min(ms), 4),
        "max": round(max(ms), 4),
    }


def lookup(metrics: dict[str, Any], key: str) -> float | None:
    node: Any = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def ratios(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """ratios[anchor][kernel][key] = kernel value / anchor value."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    metrics = results["metrics"]
    for anchor in results["anchors"]:
        if anchor not in metrics:
            continue
        per: dict[str, dict[str, float]] = {}
        for kernel, m in metrics.items():
            row = {}
            for key, *_ in HEADLINE:
                a, v = lookup(metrics[anchor], key), lookup(m, key)
                if a and v is not None:
                    row[key] = round(v / a, 4)
            per[kernel] = row
        out[anchor] = per
    return out


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    metrics = results["metrics"]
    for kernel, key, anchor, op, bound, text in TARGETS:
        k, a = metrics.get(kernel), metrics.get(anchor)
        v = lookup(k, key) if k else None
        av = lookup(a, key) if a else None
        ratio = v / av if v is not None and av else None
        met = None if ratio is None else (ratio <= bound if op == "<=" else ratio >= bound)
        rows.append(
            {
                "kernel": kernel,
                "target": f"{text} {anchor}",
                "metric": key,
                "value": v,
                "anchor": anchor,
                "anchor_value": av,
                "ratio": None if ratio is None else round(ratio, 3),
                "met": met,
            }
        )
    for kernel, key, op, bound, text in ABSOLUTE_TARGETS:
        k = metrics.get(kernel)
        v = lookup(k, key) if k else None
        met = None if v is None else (v <= bound if op == "<=" else v >= bound)
        rows.append(
            {"kernel": kernel, "target": text, "metric": key, "value": v, "ratio": None, "met": met}
        )
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if v else "0"


def markdown(results: dict[str, Any]) -> str:
    metrics = results["metrics"]
    kernels = list(metrics)
    m = results["machine"]
    lines = [
        f"## Benchmark run {results['date']} ({results['mode']})",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['nproc']} cores, Linux {m['kernel']}, "
        f"load average at start {m['loadavg_start']}, at end {m['loadavg_end']}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
        "",
        "| metric | " + " | ".join(kernels) + " |",
        "|---|" + "---:|" * len(kernels),
    ]
    for key, label, unit, better in HEADLINE:
        vals = [lookup(metrics[k], key) for k in kernels]
        if all(v is None for v in vals):
            continue
        arrow = "↓" if better == "lower" else "↑"
        unit_s = f" ({unit})" if unit else ""
        lines.append(f"| {label}{unit_s} {arrow} | " + " | ".join(_fmt(v) for v in vals) + " |")
    floor = results.get("floor")
    if floor:
        lines += [
            "",
            "Raw pyzmq floor (DEALER → ROUTER echo process, tcp 127.0.0.1): round trip p50 "
            f"{_fmt(floor['raw']['p50'])} ms / p99 {_fmt(floor['raw']['p99'])} ms unsigned; "
            f"{_fmt(floor['signed']['p50'])} ms / p99 {_fmt(floor['signed']['p99'])} ms with "
            f"this client's signing and verification; pipelined {_fmt(floor['pipelined_per_s'])}"
            " msg/s; the client verifies and decodes 64 KiB stream messages at "
            f"{_fmt(floor.get('client_decode_mib_per_s'))} MiB/s (a ceiling for IOPub).",
        ]
    for anchor, per in results["ratios"].items():
        lines += [
            "",
            f"Ratios against **{anchor}** (value ÷ {anchor}; ↓ lower is better, ↑ higher):",
            "",
            "| metric | " + " | ".join(kernels) + " |",
            "|---|" + "---:|" * len(kernels),
        ]
        for key, label, _, better in HEADLINE:
            vals = [per.get(k, {}).get(key) for k in kernels]
            if all(v is None for v in vals):
                continue
            arrow = "↓" if better == "lower" else "↑"
            lines.append(
                f"| {label} {arrow} | "
                + " | ".join("n/a" if v is None else f"{v:.2f}x" for v in vals)
                + " |"
            )
    lines += ["", "Targets (issue 6):", "", "| kernel | target | value | ratio | met |"]
    lines.append("|---|---|---:|---:|---|")
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        ratio = "" if t["ratio"] is None else f"{t['ratio']:.3f}x"
        lines.append(f"| {t['kernel']} | {t['target']} | {_fmt(t['value'])} | {ratio} | {met} |")
    if results.get("notes"):
        lines += ["", *[f"- {n}" for n in results["notes"]]]
    return "\n".join(lines) + "\n"
