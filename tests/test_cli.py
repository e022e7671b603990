"""``python -m kernelsdk``: install, list, remove and run, in-process and as real subprocesses.

Each test gets a tiny third-party distribution ``toykernels`` in ``tmp_path`` (a ``*.dist-info``
directory with ``entry_points.txt`` next to a module), registering the kernels ``toy`` and
``plain`` in the ``kernelsdk.kernels`` group. Every install goes to ``--prefix`` under
``tmp_path``, or to a user data dir redirected there: nothing outside ``tmp_path`` is written.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernelsdk import _runtime
from kernelsdk._cli import main
from kernelsdk._entrypoints import available_kernels, load_kernel
from kernelsdk._exceptions import ConfigError, KernelNotFoundError
from kernelsdk._install import installed, kernelspec_for

TOY_MODULE = textwrap.dedent(
    """
    from pathlib import Path


    class ToyKernel:
        implementation = "toy"
        language_info = {"name": "toylang", "file_extension": ".toy"}
        display_name = "Toy Kernel"
        interrupt_mode = "message"
        resources = Path(__file__).parent / "toy_resources"
        kernelspec_env = {"TOY_MODE": "1"}


    class PlainKernel:  # only the required attributes: everything else defaults
        implementation = "plain"
        language_info = {"name": "plainlang"}
    """
)

LOGOS = {
    "logo-32x32.png": b"\x89PNG\r\n\x1a\n32",
    "logo-64x64.png": b"\x89PNG\r\n\x1a\n64",
    "logo-svg.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "kernel.js": b"// toy\n",
}


class Toy:
    """The sandbox of one test: the toy distribution and private Jupyter directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.site = root / "site"
        self.prefix = root / "prefix"
        self.kernels = self.prefix / "share" / "jupyter" / "kernels"
        self.data_dir = root / "data"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(self.site), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "JUPYTER_DATA_DIR": str(self.data_dir),
            "JUPYTER_PATH": str(root / "jupyter-path"),
            "JUPYTER_CONFIG_DIR": str(root / "config"),
            "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(root / "ipython"),
        }
        self.env.pop("JUPYTER_PREFER_ENV_PATH", None)

    def create(self) -> None:
        self.site.mkdir()
        (self.site / "toykernels.py").write_text(TOY_MODULE, encoding="utf-8")
        resources = self.site / "toy_resources"
        resources.mkdir()
        for name, content in LOGOS.items():
            (resources / name).write_bytes(content)
        (resources / "kernel.json").write_text('{"argv": ["not", "this"]}', encoding="utf-8")
        (resources / "subdir").mkdir()
        (resources / "subdir" / "nested.txt").write_text("not copied", encoding="utf-8")
        dist = self.site / "toykernels-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: toykernels\nVersion: 1.0\n", encoding="utf-8"
        )
        (dist / "entry_points.txt").write_text(
            "[kernelsdk.kernels]\ntoy = toykernels:ToyKernel\nplain = toykernels:PlainKernel\n",
            encoding="utf-8",
        )

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -m kernelsdk ARGS`` in a subprocess."""
        return subprocess.run(
            [sys.executable, "-m", "kernelsdk", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
            env={**self.env, **env},
        )

    def spec(self, name: str, kernels: Path | None = None) -> dict[str, Any]:
        path = (kernels or self.kernels) / name / "kernel.json"
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return result


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Toy]:
    sandbox = Toy(tmp_path)
    sandbox.create()
    for key in ("JUPYTER_PREFER_ENV_PATH",):
        monkeypatch.delenv(key, raising=False)
    for key, value in sandbox.env.items():
        if key.startswith(("JUPYTER_", "IPYTHON")):
            monkeypatch.setenv(key, value)
    sys.modules.pop("toykernels", None)
    monkeypatch.syspath_prepend(str(sandbox.site))  # also invalidates the import caches
    yield sandbox
    sys.modules.pop("toykernels", None)


def user_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert ``proc`` failed as a user error (status 2, one message, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("kernelsdk: error: "), proc.stderr
    return proc.stderr


# The class is passed too, so a kernel start need not read every distribution's entry points.
ARGV_TAIL = [
    *("-m", "kernelsdk", "run", "toy", "-f", "{connection_file}"),
    *("--class", "toykernels:ToyKernel"),
]


# -- install --------------------------------------------------------------------------------


def test_install_writes_kernel_json_and_resources(toy: Toy) -> None:
    proc = toy.cli("install", "toy", "--prefix", str(toy.prefix))
    assert proc.returncode == 0, proc.stderr
    dest = toy.kernels / "toy"
    assert str(dest) in proc.stdout
    assert toy.spec("toy") == {
        "argv": [sys.executable, *ARGV_TAIL],
        "display_name": "Toy Kernel",
        "language": "toylang",
        "interrupt_mode": "message",
        "kernel_protocol_version": "5.5",
        "env": {"TOY_MODE": "1"},
        "metadata": {"supported_encryption": ["curve"]},
    }
    # Every regular file of `resources` but its kernel.json; no subdirectories, no leftovers.
    assert sorted(p.name for p in dest.iterdir()) == sorted([*LOGOS, "kernel.json"])
    for name, content in LOGOS.items():
        assert (dest / name).read_bytes() == content
    assert [p.name for p in toy.kernels.iterdir()] == ["toy"]


def test_install_defaults_for_a_minimal_class(toy: Toy) -> None:
    assert main(["install", "plain", "--prefix", str(toy.prefix)]) == 0
    spec = toy.spec("plain")
    assert spec["display_name"] == "Plain"
    assert spec["language"] == "plainlang"
    assert spec["interrupt_mode"] == "signal"
    assert spec["kernel_protocol_version"] == "5.5"
    assert "env" not in spec
    assert [p.name for p in (toy.kernels / "plain").iterdir()] == ["kernel.json"]


def test_install_name_display_name_and_env(toy: Toy) -> None:
    args = ["install", "toy", "--prefix", str(toy.prefix), "--name", "Toy-2"]
    args += ["--display-name", "Toy (debug)", "--env", "A=x=y", "--env", "TOY_MODE=2"]
    assert main(args) == 0
    spec = toy.spec("toy-2")  # kernelspec names are lower-cased, like jupyter's
    assert spec["argv"] == [sys.executable, *ARGV_TAIL]  # still runs the entry point "toy"
    assert spec["display_name"] == "Toy (debug)"
    assert spec["env"] == {"TOY_MODE": "2", "A": "x=y"}


def test_install_module_class_spec(toy: Toy) -> None:
    assert main(["install", "toykernels:ToyKernel", "--prefix", str(toy.prefix)]) == 0
    spec = toy.spec("toy")  # named after the class's implementation
    assert spec["argv"][1:5] == ["-m", "kernelsdk", "run", "toykernels:ToyKernel"]


def test_install_all_available_kernels(toy: Toy, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "--prefix", str(toy.prefix)]) == 0
    names = set(available_kernels())
    assert {"toy", "plain"} <= names
    assert {p.name for p in toy.kernels.iterdir()} == names
    out = capsys.readouterr().out
    assert out.count("Installed kernelspec") == len(names)


def test_jupyter_client_finds_the_installed_spec(toy: Toy) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    assert main(["install", "toy", "--prefix", str(toy.prefix)]) == 0
    ksm = KernelSpecManager(kernel_dirs=[str(toy.kernels)])
    assert ksm.find_kernel_specs()["toy"] == str(toy.kernels / "toy")
    spec = ksm.get_kernel_spec("toy")
    assert spec.argv == [sys.executable, *ARGV_TAIL]
    assert spec.display_name == "Toy Kernel"
    assert spec.language == "toylang"
    assert spec.interrupt_mode == "message"
    assert spec.env == {"TOY_MODE": "1"}
    assert installed([toy.kernels]) == {"toy": toy.kernels / "toy"}


def test_replace(toy: Toy) -> None:
    assert toy.cli("install", "toy", "--prefix", str(toy.prefix)).returncode == 0
    marker = toy.kernels / "toy" / "marker"
    marker.write_text("old", encoding="utf-8")

    proc = toy.cli("install", "toy", "--prefix", str(toy.prefix), "--display-name", "New")
    assert "--replace" in user_error(proc)
    assert marker.exists()
    assert toy.spec("toy")["display_name"] == "Toy Kernel"

    proc = toy.cli(
        "install", "toy", "--prefix", str(toy.prefix), "--display-name", "New", "--replace"
    )
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()  # replaced, not merged
    assert toy.spec("toy")["display_name"] == "New"
    assert [p.name for p in toy.kernels.iterdir()] == ["toy"]  # no temporary leftovers


def test_unknown_kernel_names_the_available_ones(toy: Toy) -> None:
    for args in (
        ["install", "nope", "--prefix", str(toy.prefix)],
        ["run", "nope", "-f", "conn.json"],
    ):
        stderr = user_error(toy.cli(*args))
        assert "'nope'" in stderr
        assert "available kernels:" in stderr
        assert "plain" in stderr and "toy" in stderr
    assert not toy.prefix.exists()


@pytest.mark.parametrize("spec", ["toykernels:Nope", "no_such_module_xyz:Kernel"])
def test_unknown_module_class_spec(toy: Toy, spec: str) -> None:
    stderr = user_error(toy.cli("install", spec, "--prefix", str(toy.prefix)))
    assert spec.split(":")[1 if "toykernels" in spec else 0] in stderr
    with pytest.raises(KernelNotFoundError):
        load_kernel(spec)


def test_unwritable_prefix(toy: Toy) -> None:
    toy.prefix.mkdir()
    (toy.prefix / "share").write_text("a file where a directory should be", encoding="utf-8")
    stderr = user_error(toy.cli("install", "toy", "--prefix", str(toy.prefix)))
    assert "cannot write kernelspec into" in stderr
    assert str(toy.kernels) in stderr

    a_file = toy.root / "prefix-file"
    a_file.write_text("", encoding="utf-8")
    stderr = user_error(toy.cli("install", "toy", "--prefix", str(a_file)))
    assert "cannot write kernelspec into" in stderr


def test_name_and_display_name_need_exactly_one_kernel(
    toy: Toy, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install", "toy", "plain", "--name", "x", "--prefix", str(toy.prefix)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelsdk: error: --name and --display-name need exactly one KERNEL")
    assert main(["install", "--display-name", "X", "--prefix", str(toy.prefix)]) == 2
    assert "exactly one KERNEL" in capsys.readouterr().err
    assert not toy.prefix.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["install", "toy", "--name", "bad name", "--prefix", "PREFIX"],
        ["install", "toy", "--env", "NOEQUALS", "--prefix", "PREFIX"],
        ["install", "toy", "--user", "--sys-prefix"],  # argparse: mutually exclusive
        ["run", "toy"],  # argparse: -f is required
        ["run", "toy", "-f", "c.json", "--packer", "pickle"],
        ["frobnicate"],
    ],
)
def test_usage_errors_return_2(
    toy: Toy, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(toy.prefix) if a == "PREFIX" else a for a in args]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert not toy.data_dir.exists() and not toy.prefix.exists()


def test_user_install_and_remove(toy: Toy) -> None:
    proc = toy.cli("install", "toy", "--user")
    assert proc.returncode == 0, proc.stderr
    kernels = toy.data_dir / "kernels"
    assert toy.spec("toy", kernels)["display_name"] == "Toy Kernel"
    proc = toy.cli("remove", "toy", "--user")
    assert proc.returncode == 0, proc.stderr
    assert not (kernels / "toy").exists()


# -- list and remove ------------------------------------------------------------------------


def test_list_and_remove(toy: Toy) -> None:
    # With JUPYTER_PATH pointing at the prefix, Jupyter (and `list`, `remove`) find the spec.
    env = {"JUPYTER_PATH": str(toy.prefix / "share" / "jupyter")}
    assert toy.cli("install", "toy", "--prefix", str(toy.prefix), "--name", "toy-a").returncode == 0
    assert toy.cli("install", "toy", "--user", "--name", "toy-b").returncode == 0

    proc = toy.cli("list", **env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    toy_at = next(i for i, line in enumerate(lines) if line.strip().startswith("toy "))
    assert "toykernels:ToyKernel" in lines[toy_at]
    assert f"toy-a: {toy.kernels / 'toy-a'}" in proc.stdout
    assert f"toy-b: {toy.data_dir / 'kernels' / 'toy-b'}" in proc.stdout
    plain_at = next(i for i, line in enumerate(lines) if line.strip().startswith("plain "))
    assert lines[plain_at + 1].strip() == "not installed"

    proc = toy.cli("remove", "toy-a", "toy-b", **env)  # no location: wherever Jupyter finds them
    assert proc.returncode == 0, proc.stderr
    assert not (toy.kernels / "toy-a").exists()
    assert not (toy.data_dir / "kernels" / "toy-b").exists()
    assert "toy-a" in proc.stdout and "toy-b" in proc.stdout

    assert "no kernelspec named 'toy-a'" in user_error(toy.cli("remove", "toy-a", **env))
    proc = toy.cli("list", **env)
    assert "toy-a" not in proc.stdout and "toy-b" not in proc.stdout


def test_remove_checks_every_name_first_and_spares_foreign_specs(toy: Toy) -> None:
    assert main(["install", "toy", "--prefix", str(toy.prefix)]) == 0
    foreign = toy.kernels / "python3"
    foreign.mkdir()
    (foreign / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    prefix = ["--prefix", str(toy.prefix)]
    assert "not installed by kernelsdk" in user_error(toy.cli("remove", "python3", *prefix))
    assert "'missing'" in user_error(toy.cli("remove", "toy", "missing", *prefix))
    assert (toy.kernels / "toy").exists() and foreign.exists()
    assert toy.cli("remove", "toy", *prefix).returncode == 0
    assert not (toy.kernels / "toy").exists() and foreign.exists()


# -- run ------------------------------------------------------------------------------------


def test_run_loads_the_class_and_calls_the_runtime(
    toy: Toy, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_run_kernel(
        cls: type, connection_file: str, *, packer: str, log_level: str, watch_parent: bool
    ) -> None:
        calls.append((cls, connection_file, packer, log_level, watch_parent))

    monkeypatch.setattr(_runtime, "run_kernel", fake_run_kernel)
    args = ["run", "toy", "-f", "conn.json", "--packer", "msgpack", "--log-level", "debug"]
    assert main(args) == 0
    assert main(["run", "toykernels:PlainKernel", "-f", "c.json", "--no-parent-watch"]) == 0
    toykernels = sys.modules["toykernels"]
    assert calls == [
        (toykernels.ToyKernel, "conn.json", "msgpack", "DEBUG", True),
        (toykernels.PlainKernel, "c.json", "json", "WARNING", False),
    ]


@pytest.mark.parametrize("hint", [False, True], ids=["name", "name-and-class"])
def test_run_path_stays_light(toy: Toy, hint: bool) -> None:
    """``run`` (every kernel start) imports neither jupyter_client nor jupyter_core, and with
    the ``--class`` an installed kernelspec passes, not even importlib.metadata."""
    args = ["run", "toy", "-f", "conn.json"] + (["--class", "toykernels:ToyKernel"] * hint)
    code = textwrap.dedent(
        f"""
        import sys
        import kernelsdk._runtime as runtime
        runtime.run_kernel = lambda cls, cf, **kw: print(cls.__name__, cf, kw)
        from kernelsdk._cli import main
        status = main({args!r})
        heavy = ("jupyter_client", "jupyter_core", "importlib.metadata")
        print(sorted(m for m in heavy if m in sys.modules))
        raise SystemExit(status)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=toy.env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "ToyKernel conn.json {'packer': 'json', 'log_level': 'WARNING', 'watch_parent': True}",
        "[]" if hint else "['importlib.metadata']",
    ]


def test_load_kernel_reads_entry_points_once(toy: Toy, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.entry_points
    calls = 0

    def counting(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    with pytest.raises(KernelNotFoundError, match=r"available kernels: .*plain.*toy"):
        load_kernel("nope")
    assert calls == 1
    assert load_kernel("TOY").__name__ == "ToyKernel"  # kernel names are case-insensitive
    assert calls == 2
    assert load_kernel("toykernels:ToyKernel").__name__ == "ToyKernel"  # no scan at all
    assert calls == 2
    # An installed kernelspec's hint: no scan either, unless the class has gone since.
    assert load_kernel("toy", hint="toykernels:ToyKernel").__name__ == "ToyKernel"
    assert calls == 2
    assert load_kernel("toy", hint="toykernels:MovedKernel").__name__ == "ToyKernel"
    assert load_kernel("toy", hint="gone_module:ToyKernel").__name__ == "ToyKernel"
    assert calls == 4
    with pytest.raises(ConfigError, match="not a kernel class"):
        load_kernel("toy", hint="toykernels:ToyKernel.language_info")  # not skipped


def test_kernelspec_for_extra_args() -> None:
    class K:
        language_info = {"name": "k"}

    spec = kernelspec_for("k", K, extra_args=["--packer", "msgpack"])
    assert spec.argv[-3:] == ["{connection_file}", "--packer", "msgpack"]
    assert spec.display_name == "k"  # no display_name, no implementation: the kernel name


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("kernelsdk ")
    assert main(["install", "--help"]) == 0
    assert "--replace" in capsys.readouterr().out


# -- end to end -----------------------------------------------------------------------------


def test_installed_echo_kernel_starts_under_jupyter_client(toy: Toy) -> None:
    """The argv kernelsdk writes really launches a kernel a Jupyter client can talk to."""
    if "echo" not in available_kernels():
        pytest.skip("the echo kernel (kernels/echo) is not installed")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    assert main(["install", "echo", "--prefix", str(toy.prefix)]) == 0
    km = KernelManager(
        kernel_name="echo", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(toy.kernels)])
    )
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("hello", timeout=30, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        km.cleanup_resources()


def test_a_family_stem_installs_every_version() -> None:
    from kernelsdk._cli import _expand_families

    available = ["echo", "lua51", "lua54", "lua5x", "luajit"]
    assert _expand_families(["lua"], available) == ["lua51", "lua54"]
    assert _expand_families(["lua54", "echo"], available) == ["lua54", "echo"]
    assert _expand_families(["nosuch", "m:C"], available) == ["nosuch", "m:C"]
    assert _expand_families([], available) == []
