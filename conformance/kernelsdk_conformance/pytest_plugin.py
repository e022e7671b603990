"""Run the suite from pytest: one test per check, in your own test module.

    # test_mykernel_conformance.py
    from kernelsdk_conformance.pytest_plugin import conformance_tests
    from my_profiles import MyKernelProfile

    test_conformance = conformance_tests("mykernel", MyKernelProfile())

The whole suite runs once, on the first of those tests; each test then reports its check:
passed, skipped with the check's reason, or failed with its message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ._registry import CHECKS, Options
from ._runner import Result, load_checks, run
from .profiles import Profile


def conformance_tests(
    kernel_name: str,
    profile: Profile | None = None,
    *,
    checks: Sequence[str] | None = None,
    options: Options | None = None,
) -> Callable[..., None]:
    """A test function parametrized over the checks (assign it to a ``test_*`` name)."""
    load_checks()

    names = list(checks or CHECKS)
    cache: dict[str, Result] = {}

    @pytest.mark.parametrize("check_name", names)
    def test_conformance(check_name: str) -> None:
        if not cache:
            for result in run(kernel_name, profile, checks=names, options=options):
                cache[result.name] = result
        result = cache[check_name]
        if result.status == "skip":
            pytest.skip(result.message)
        if result.status != "pass":
            pytest.fail(f"{result.status}: {result.message}", pytrace=False)

    extra: Any = test_conformance
    extra.__doc__ = f"Conformance of kernel {kernel_name!r}, one test per check."
    return test_conformance
