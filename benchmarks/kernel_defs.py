"""The kernels benchmarked, the cells each one runs, and how each is launched.

Every kernel except ``ksdk-bench`` is launched from its installed kernelspec (``kernel.json``
found on Jupyter's data path; run with ``JUPYTER_PREFER_ENV_PATH=1`` so the benchmark venv's
specs win). ``argv[0]`` of ``python``/``python3``/``python3.X`` is replaced by this
interpreter, as jupyter_client does.

Cells per kernel (documented in docs/performance.md):

* round trip: echo ``x`` (stdout ``x`` and result ``x``); Python kernels ``print('x'); 'x'``
  (the same two outputs), so every kernel publishes the same messages per request;
* output: Python kernels print COUNT lines of SIZE bytes in one cell (a loop in a function);
  the echo kernel gets COUNT/2 cells of SIZE characters and echoes each twice (stdout and
  result); ksdk-bench's ``out COUNT SIZE``. Bytes counted: stdout text plus ``text/plain`` results;
* sleep / spin: ``time.sleep(S)`` / a busy ``while`` loop for Python kernels and ksdk-bench;
  the echo kernel can do neither (n/a);
* echo-mpiN: the echo kernel on N MPI ranks (``BENCH_MPI=1``), the same cells;
* echo+curve, python3+curve: the echo kernel and ipykernel launched with CurveZMQ keys in
  their connection file (JEP 145; ipykernel 7.3+), the benchmark client encrypting too: the
  same cells as ``echo`` and ``python3``, so their ratio is the cost of encryption;
* lua54 (kernels/lua, when installed): ``print("x");`` then the expression ``"x"`` (the ``;``
  keeps Lua from parsing ``print("x")"x"`` as a call); output with ``io.write`` in a loop;
  sleep through ``os.execute("sleep S")``; spin on ``os.clock()``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ANCHORS = ("python3", "xpython", "xpython-raw")
DEFAULT_KERNELS = ("echo", "ksdk-bench", "py-floor", "lua54", "python3", "xpython", "xpython-raw")


@dataclass(frozen=True)
class OutputPlan:
    """The cells that make about ``total`` bytes of output, and the bytes expected."""

    cells: list[str]
    expected_bytes: int


@dataclass(frozen=True)
class KernelDef:
    name: str
    label: str
    ours: bool
    rt_cell: str
    output: Callable[[int, int], OutputPlan]
    sleep: Callable[[float], str] | None
    spin: Callable[[float], str] | None
    spin_inline: Callable[[float], str] | None = None
    #: The kernelspec launched (default: ``name``), and whether its transport is encrypted.
    spec: str | None = None
    encrypted: bool = False


def _python_output(total: int, size: int) -> OutputPlan:
    count = max(1, total // size)
    # Inside a function: xeus-python's raw mode loses the output of a cell whose last
    # statement is a loop that prints (measured with xeus-python 0.19.0).
    code = f"def _out():\n    for _ in range({count}):\n        print('x' * {size - 1})\n_out()\n"
    return OutputPlan([code], count * size)


def _echo_output(total: int, size: int) -> OutputPlan:
    # Each cell of SIZE characters comes back as stdout (SIZE + 1: print adds "\n") and as
    # the result (SIZE).
    cells = max(1, total // (2 * size))
    return OutputPlan(["x" * size] * cells, cells * (2 * size + 1))


def _bench_output(total: int, size: int) -> OutputPlan:
    count = max(1, total // size)
    return OutputPlan([f"out {count} {size}"], count * size)


def _py_sleep(s: float) -> str:
    return f"import time\ntime.sleep({s})\n"


def _py_spin(s: float) -> str:
    return f"import time\n_end = time.monotonic() + {s}\nwhile time.monotonic() < _end:\n    pass\n"


PY_RT = "print('x'); 'x'"


def _lua_output(total: int, size: int) -> OutputPlan:
    count = max(1, total // size)
    code = f'for _ = 1, {count} do io.write(string.rep("x", {size - 1}), "\\n") end'
    return OutputPlan([code], count * size)


def _lua_sleep(s: float) -> str:
    # Lua has no sleep: a child process, waited for in C (the GIL is released by cffi).
    return f'os.execute("sleep {s}")'


def _lua_spin(s: float) -> str:
    return f"local t = os.clock() + {s} while os.clock() < t do end"


DEFS: dict[str, KernelDef] = {
    "echo": KernelDef("echo", "echo (kernelsdk)", True, "x", _echo_output, None, None),
    "ksdk-bench": KernelDef(
        "ksdk-bench",
        "ksdk-bench (kernelsdk, benchmark-only)",
        True,
        "x",
        _bench_output,
        lambda s: f"sleep {s}",
        lambda s: f"spin {s}",
        lambda s: f"spin-inline {s}",
    ),
    # The Python floor (benchmarks/floor_kernel.py): no SDK, blocking pyzmq, echo semantics.
    "py-floor": KernelDef(
        "py-floor", "Python floor (no SDK)", False, "x", _echo_output, None, None
    ),
    # kernels/lua (installed by `BENCH_LUA=1 scripts/bench`); skipped when not installed.
    "lua54": KernelDef(
        "lua54", "Lua 5.4 (kernelsdk)", True, 'print("x");\n"x"', _lua_output, _lua_sleep, _lua_spin
    ),
    # MPI variants of echo (installed by `BENCH_MPI=1 scripts/bench`): every rank echoes, so
    # output is N times larger; the round trip and pipelined numbers are what they are for.
    **{
        f"echo-mpi{n}": KernelDef(
            f"echo-mpi{n}",
            f"echo on {n} MPI rank{'s' if n > 1 else ''}",
            True,
            "x",
            _echo_output,
            None,
            None,
        )
        for n in (1, 2, 4, 8)
    },
    "python3": KernelDef("python3", "ipykernel", False, PY_RT, _python_output, _py_sleep, _py_spin),
    # The cost of CurveZMQ (JEP 145): the same kernels, every socket encrypted.
    "echo+curve": KernelDef(
        "echo+curve",
        "echo, CurveZMQ",
        True,
        "x",
        _echo_output,
        None,
        None,
        spec="echo",
        encrypted=True,
    ),
    "python3+curve": KernelDef(
        "python3+curve",
        "ipykernel, CurveZMQ",
        False,
        PY_RT,
        _python_output,
        _py_sleep,
        _py_spin,
        spec="python3",
        encrypted=True,
    ),
    "xpython": KernelDef(
        "xpython", "xeus-python", False, PY_RT, _python_output, _py_sleep, _py_spin
    ),
    "xpython-raw": KernelDef(
        "xpython-raw", "xeus-python raw", False, PY_RT, _python_output, _py_sleep, _py_spin
    ),
}


@dataclass(frozen=True)
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    source: str


def _kernel_dirs() -> list[Path]:
    from jupyter_core.paths import jupyter_path

    return [Path(p) for p in jupyter_path("kernels")]


def launch_spec(name: str) -> LaunchSpec | None:
    """How to launch benchmarked kernel ``name`` (its kernelspec may be another's, e.g.
    ``echo+curve`` launches ``echo``), or None when that is not installed."""
    kernel = DEFS.get(name)
    return find_spec((kernel.spec or name) if kernel is not None else name)


def find_spec(name: str) -> LaunchSpec | None:
    """How to launch kernel ``name``, or None when it is not installed."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if name == "ksdk-bench":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "kernelsdk", "run", "bench_kernel:BenchKernel"]
        return LaunchSpec([*argv, "-f", "{connection_file}"], env, "builtin (benchmarks/)")
    if name == "py-floor":
        argv = [sys.executable, str(BENCH_DIR / "floor_kernel.py")]
        return LaunchSpec([*argv, "-f", "{connection_file}"], env, "builtin (benchmarks/)")
    for d in _kernel_dirs():
        spec_file = d / name / "kernel.json"
        if not spec_file.is_file():
            continue
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        argv = list(spec["argv"])
        py = f"python{sys.version_info[0]}"
        if argv[0] in ("python", py, f"{py}.{sys.version_info[1]}"):
            argv[0] = sys.executable
        elif not os.path.isabs(argv[0]):
            argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
        env.update(spec.get("env", {}))
        return LaunchSpec(argv, env, str(spec_file))
    return None
