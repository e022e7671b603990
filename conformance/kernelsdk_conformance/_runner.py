"""Results, and the runner that runs the registered checks against one kernel.

``load_checks`` registers the built-in checks (it imports the ``checks`` package); ``run`` loads
them, then runs them in registry order (schema last), sharing one kernel between the checks
that leave it usable. The registry itself (``check``, ``Context``, ``Skip``, ``Fail``,
``Options``) is ``_registry``; the checks import that, never this module.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from jupyter_client.kernelspec import KernelSpecManager

from ._client import KernelDied, NoReply, NoStatus, OverBudget
from ._registry import CHECKS, Context, Fail, Options, Skip
from .profiles import Profile, profile_for

Status = Literal["pass", "fail", "skip", "error"]


@dataclass
class Result:
    name: str
    status: Status
    message: str
    spec: str = ""
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_checks() -> None:
    """Register the built-in checks in ``CHECKS``, in their order (once; later calls do nothing)."""
    from . import checks  # noqa: F401  (importing the package registers its checks)


def run_checks(
    ctx: Context,
    names: Sequence[str] | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run the named checks (all, in registry order, when None); schema last."""
    order = [n for n in CHECKS if n != "schema"] + (["schema"] if "schema" in CHECKS else [])
    if names:
        unknown = [n for n in names if n not in CHECKS]
        if unknown:
            raise ValueError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(order)}")
        order = [n for n in order if n in names]
    results = []
    for name in order:
        info = CHECKS[name]
        start = time.monotonic()
        budget = ctx.options.budget_for(name)
        ctx.budget.start(budget)
        try:
            message = info.fn(ctx)
            status: Status = "pass"
            details: list[str] = []
        except Skip as exc:
            status, message, details = "skip", str(exc), []
        except Fail as exc:
            status, message, details = "fail", str(exc), []
        except NoStatus as exc:
            status, details = "skip", []
            message = (
                f"not checked: {exc}, and this check waits for it (found at start-up; the "
                "kernel_info check fails on it)"
            )
        except OverBudget as exc:
            status, message = "fail", f"took longer than {budget:g} s: waiting for {exc}"
            details = traceback.format_exception(exc)
        except (NoReply, KernelDied) as exc:
            status, message = "fail", f"{type(exc).__name__}: {exc}"
            details = traceback.format_exception(exc)
        except Exception as exc:
            status, message = "error", f"the check itself failed: {type(exc).__name__}: {exc}"
            details = traceback.format_exception(exc)
        finally:
            ctx.budget.stop()
        result = Result(
            name, status, message, info.spec, round(time.monotonic() - start, 2), details
        )
        results.append(result)
        if status in ("fail", "error"):
            ctx.discard_shared()  # a failure must not leak into the next check
        if on_result is not None:
            on_result(result)
    return results


def run(
    kernel_name: str,
    profile: Profile | None = None,
    *,
    checks: Sequence[str] | None = None,
    options: Options | None = None,
    spec_manager: KernelSpecManager | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run the conformance suite against the installed kernelspec ``kernel_name``.

    Args:
        kernel_name: a kernelspec name (``jupyter kernelspec list``).
        profile: the kernel's samples; default: the shipped profile for that name, or an
            empty one (checks that need samples then skip).
        checks: names of the checks to run (default: all).
        options: timeouts and the fuzz budget.
        on_result: called with each result as soon as it is known.

    Returns:
        One :class:`Result` per check.
    """
    load_checks()
    ctx = Context(
        kernel_name, profile or profile_for(kernel_name), options or Options(), spec_manager
    )
    try:
        return run_checks(ctx, checks, on_result)
    finally:
        ctx.close()
