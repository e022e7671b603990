"""The conformance suite finds a kernel package's profile through the entry point group
``kernelsdk_conformance.profiles`` (name: the kernelspec name, value: ``module:Class``), as
``python -m kernelsdk new`` declares it. Each test puts a stand-in distribution (a
``.dist-info`` with ``entry_points.txt``, and the module it names) on ``sys.path``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from kernelsdk_conformance import EchoProfile, load_profile, profile_for
from kernelsdk_conformance.profiles import ENTRY_POINT_GROUP, discovered_profile


def declare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str]) -> None:
    """A distribution declaring ``entries`` in the group, and a module ``discovery_demo``."""
    module = tmp_path / "discovery_demo.py"
    module.write_text(
        textwrap.dedent(
            """
            from kernelsdk_conformance import Profile

            class DemoProfile(Profile):
                kernel_name = "discovery-demo"
                code_hello_world = "print hello, world"

            class NotAProfile:
                pass
            """
        ),
        encoding="utf-8",
    )
    info = tmp_path / "discovery_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: discovery-demo\nVersion: 0.1\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "discovery_demo", raising=False)


def test_profile_for_finds_a_declared_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(tmp_path, monkeypatch, {"discovery-demo": "discovery_demo:DemoProfile"})
    profile = profile_for("discovery-demo")
    assert type(profile).__name__ == "DemoProfile"
    assert profile.code_hello_world == "print hello, world"
    # --profile NAME accepts a declared name as it accepts a shipped one
    assert type(load_profile("discovery-demo")).__name__ == "DemoProfile"


def test_a_shipped_profile_wins_over_a_declared_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(tmp_path, monkeypatch, {"echo": "discovery_demo:DemoProfile"})
    assert type(profile_for("echo")) is EchoProfile


def test_without_a_declaration_the_profile_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(tmp_path, monkeypatch, {"discovery-demo": "discovery_demo:DemoProfile"})
    assert discovered_profile("discovery-other") is None
    profile = profile_for("discovery-other")
    assert profile.kernel_name == "discovery-other"
    assert profile.code_hello_world is None
    with pytest.raises(ValueError, match="unknown profile"):
        load_profile("discovery-other")


def test_a_declaration_that_is_no_profile_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(tmp_path, monkeypatch, {"discovery-demo": "discovery_demo:NotAProfile"})
    with pytest.raises(ValueError, match=r"not a kernelsdk_conformance\.Profile subclass"):
        profile_for("discovery-demo")
