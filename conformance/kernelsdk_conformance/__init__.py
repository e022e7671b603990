"""kernelsdk-conformance: a protocol conformance suite for any Jupyter kernel.

Run it from the command line (``python -m kernelsdk conformance KERNEL``) or from Python::

    from kernelsdk_conformance import run, EchoProfile
    results = run("echo", EchoProfile())
    assert not [r for r in results if r.status in ("fail", "error")]
"""

from __future__ import annotations

from ._registry import CHECKS, Context, Fail, Options, Skip, check
from ._runner import Result, run
from .profiles import (
    PROFILES,
    EchoProfile,
    LuaProfile,
    Profile,
    Python3Profile,
    XPythonProfile,
    load_profile,
    profile_for,
)
from .report import exit_status, format_results

__all__ = [
    "CHECKS",
    "PROFILES",
    "Context",
    "EchoProfile",
    "Fail",
    "LuaProfile",
    "Options",
    "Profile",
    "Python3Profile",
    "Result",
    "Skip",
    "XPythonProfile",
    "check",
    "exit_status",
    "format_results",
    "load_profile",
    "profile_for",
    "run",
]
