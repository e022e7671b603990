"""The public API is policed, as trio's ``_tests/test_exports.py`` polices trio's.

Five public namespaces: ``kernelsdk`` (the kernel author's names), ``kernelsdk.protocol`` (the
sans-IO protocol core, like ``trio.lowlevel``), ``kernelsdk.testing``, ``kernelsdk.mpi`` and
``kernelsdk.embed``.
For each: ``__all__`` is exactly what is public there and every name in it resolves; every
public object is public in exactly one of them; events and result classes are final and
frozen; static tools see every name; the protocol core imports without Trio or pyzmq.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import subprocess
import sys
import textwrap
import types
import typing
from pathlib import Path

import attrs
import pytest

import kernelsdk
import kernelsdk.embed
import kernelsdk.mpi
import kernelsdk.protocol
import kernelsdk.testing

ROOT = Path(__file__).resolve().parent.parent
NAMESPACES = [kernelsdk, kernelsdk.protocol, kernelsdk.testing, kernelsdk.mpi, kernelsdk.embed]
#: The namespaces that only re-export objects defined in private modules.
REEXPORTING = [kernelsdk, kernelsdk.protocol]
#: attrs classes that are public but deliberately mutable, and why.
MUTABLE = {
    # The client protocol's record of one request in flight: it fills it in as the reply and
    # the idle arrive (a driver only reads it).
    kernelsdk.protocol.RequestProgress,
}


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    }


def is_own(obj: object, module: types.ModuleType) -> bool:
    """Defined in ``module`` itself or in one of its private submodules."""
    origin = getattr(obj, "__module__", None) or ""
    return origin == module.__name__ or origin.startswith(module.__name__ + "._")


def exported_objects() -> list[tuple[str, str, object]]:
    return [(m.__name__, name, getattr(m, name)) for m in NAMESPACES for name in m.__all__]


@pytest.mark.parametrize("module", NAMESPACES, ids=lambda m: m.__name__)
def test_all_has_no_duplicates_and_resolves(module: types.ModuleType) -> None:
    assert len(set(module.__all__)) == len(module.__all__), "duplicates in __all__"
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(module.__all__)
    for name, value in namespace.items():
        assert value is getattr(module, name)


@pytest.mark.parametrize("module", REEXPORTING, ids=lambda m: m.__name__)
def test_all_is_exactly_the_public_names(module: types.ModuleType) -> None:
    # Importing the other public modules must not add names (nor must loading the lazy ones).
    assert set(module.__all__) - {"__version__"} == public_names(module)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("kernelsdk._"), (name, obj.__module__)


@pytest.mark.parametrize(
    "module", [kernelsdk.testing, kernelsdk.mpi, kernelsdk.embed], ids=lambda m: m.__name__
)
def test_everything_defined_in_a_namespace_is_exported(module: types.ModuleType) -> None:
    # Classes and functions defined there (not imported into it) are exactly its __all__.
    defined_here = {
        name
        for name in public_names(module)
        if (inspect.isclass(getattr(module, name)) or inspect.isfunction(getattr(module, name)))
        and is_own(getattr(module, name), module)
    }
    assert set(module.__all__) == defined_here


def test_every_public_object_is_public_in_exactly_one_place() -> None:
    places: dict[str, list[str]] = {}
    by_identity: dict[int, list[str]] = {}
    for module_name, name, obj in exported_objects():
        places.setdefault(name, []).append(module_name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            by_identity.setdefault(id(obj), []).append(f"{module_name}.{name}")
    assert {name: where for name, where in places.items() if len(where) > 1} == {}
    assert [where for where in by_identity.values() if len(where) > 1] == []


def test_no_public_namespace_reexports_another_public_name_under_a_new_name() -> None:
    # kernelsdk.testing may import kernelsdk.BaseKernel, but only as BaseKernel.
    exported = {id(obj): name for _, name, obj in exported_objects()}
    for module in NAMESPACES:
        for name in public_names(module):
            obj = getattr(module, name)
            if id(obj) in exported and (inspect.isclass(obj) or inspect.isfunction(obj)):
                assert exported[id(obj)] == name, (module.__name__, name)


def test_protocol_names_are_not_in_the_authors_namespace() -> None:
    assert not set(kernelsdk.protocol.__all__) & set(kernelsdk.__all__)
    for name in ["Session", "KernelProtocol", "ClientProtocol", "Message", "Channel", "Event"]:
        assert not hasattr(kernelsdk, name), name
    # The types in the author's and the runtime's public signatures are exported.
    assert {"Transport", "MimeBundle", "ExecuteContext", "KernelServer"} <= set(kernelsdk.__all__)
    assert {"Event", "ClientEvent"} <= set(kernelsdk.protocol.__all__)


def final_and_frozen_problems(cls: type) -> list[str]:
    problems = []
    if not getattr(cls, "__final__", False):
        problems.append(f"{cls.__qualname__} is not @final")
    if cls not in MUTABLE:
        fields = attrs.fields(cls)
        instance = object.__new__(cls)
        if fields:
            try:
                setattr(instance, fields[0].name, None)
            except attrs.exceptions.FrozenInstanceError:
                pass
            else:
                problems.append(f"{cls.__qualname__} is not frozen")
    return problems


def test_attrs_classes_are_final_and_frozen() -> None:
    """Events and results are nouns: match on their class, never subclass or mutate them."""
    problems = []
    for _, _, obj in exported_objects():
        if inspect.isclass(obj) and attrs.has(obj):
            problems += final_and_frozen_problems(obj)
    assert problems == []


@pytest.mark.parametrize("union", ["Event", "ClientEvent"])
def test_event_unions_are_public_final_frozen_classes(union: str) -> None:
    members = typing.get_args(getattr(kernelsdk.protocol, union))
    assert len(members) >= 4
    for cls in members:
        assert getattr(kernelsdk.protocol, cls.__name__) is cls, cls
        assert attrs.has(cls) and final_and_frozen_problems(cls) == []


def test_other_public_classes_are_final_or_meant_to_be_subclassed() -> None:
    """Only these public classes are open: the author subclasses BaseKernel, drivers implement
    Transport, exceptions form a hierarchy, enums are final by themselves. The rest are listed
    as they are today, so a new public class has to choose."""
    not_yet_final = {
        "Comm",
        "CommManager",
        "ExecuteContext",
        "InMemoryHistory",
        "KernelServer",
        "NativeOutput",
        "NativeRunner",
        "ClientProtocol",
        "KernelProtocol",
        "Session",
        "MemoryTransport",
        "TestClient",
        "RootKernel",
        # The embedded Python kernel: hosts extend it (the C API's kind "python" does).
        "PythonKernel",
        # A kernel's debugger subclasses it, as a kernel subclasses BaseKernel.
        "Debugger",
    }
    open_classes = set()
    for _, name, obj in exported_objects():
        if not inspect.isclass(obj) or getattr(obj, "__final__", False):
            continue
        if issubclass(obj, BaseException | enum.Enum) or obj is kernelsdk.BaseKernel:
            continue
        if getattr(obj, "_is_protocol", False):  # typing.Protocol: Transport
            continue
        open_classes.add(name)
    assert open_classes <= not_yet_final, open_classes - not_yet_final


def test_core_imports_without_trio_or_pyzmq() -> None:
    """The sans-IO rule: ``kernelsdk`` and ``kernelsdk.protocol`` load neither, and a message
    round-trips through the protocol core with both blocked."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["trio"] = None  # any import of them raises ImportError
        sys.modules["zmq"] = None
        import kernelsdk
        from kernelsdk import BaseKernel, Completions, ConnectionInfo, KernelSpec
        # What a Jupyter server loads to find embedded kernels (the attach provisioner).
        from kernelsdk.embed._files import find_embedded
        from kernelsdk.protocol import (
            Channel, ClientProtocol, Header, KernelProtocol, Message, Request, Session,
        )
        session = Session(key=b"secret")
        message = Message(Header(msg_id="1", msg_type="kernel_info_request", session="s",
                                 date="2026-01-01T00:00:00Z"))
        frames = session.serialize(message)
        assert session.deserialize(frames).header.msg_id == "1"
        clock = lambda: "2026-01-01T00:00:00Z"
        kernel = KernelProtocol(Session(key=b"secret"), session_id="k", clock=clock)
        client = ClientProtocol(Session(key=b"secret"), session_id="c", clock=clock)
        out = client.request(Channel.SHELL, "kernel_info_request")
        event = kernel.receive(out.channel, [b"peer", *out.frames])
        assert isinstance(event, Request), event
        assert event.message.header.msg_type == "kernel_info_request"
        try:
            kernelsdk.open_kernel
        except ImportError:
            pass
        else:
            raise AssertionError("the runtime loaded without Trio")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"trio", "zmq"})
        assert loaded == ["trio", "zmq"], loaded  # only the blocking entries
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"


def test_lazy_names_load_on_first_use() -> None:
    lazy = kernelsdk._LAZY
    assert set(lazy) <= set(kernelsdk.__all__)
    for name, module in lazy.items():
        assert getattr(kernelsdk, name) is getattr(
            importlib.import_module(module, "kernelsdk"), name
        )
        assert name in vars(kernelsdk)  # cached after the first access
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        kernelsdk.nonexistent  # noqa: B018


def test_static_tools_see_every_public_name(tmp_path: Path) -> None:
    """mypy sees every name in every ``__all__``, lazy ones included, with its real type (a
    module ``__getattr__`` visible to mypy would type every name, even a misspelt one, Any)."""
    lines = ["from typing import reveal_type", ""]
    for module_name, name, _ in exported_objects():
        lines.append(f"from {module_name} import {name} as _{module_name.replace('.', '_')}_{name}")
    lines.append("")
    for module_name, name, _ in exported_objects():
        lines.append(f"reveal_type(_{module_name.replace('.', '_')}_{name})")
    lines.append("import kernelsdk")
    lines.append("kernelsdk.not_a_public_name  # must be an error")
    check = tmp_path / "check_exports.py"
    check.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(check)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    output = proc.stdout.splitlines()
    errors = [line for line in output if ": error:" in line]
    assert len(errors) == 1 and 'Module has no attribute "not_a_public_name"' in errors[0], (
        proc.stdout + proc.stderr
    )
    revealed = [line.split("Revealed type is ", 1)[1] for line in output if "Revealed type" in line]
    assert len(revealed) == len(exported_objects())
    assert '"Any"' not in revealed, output


def test_py_typed_is_shipped() -> None:
    package_dir = Path(kernelsdk.__file__).parent
    assert (package_dir / "py.typed").is_file()


def test_native_bridge_is_public_once() -> None:
    # The bridge for C runtimes (docs/bridging-a-c-runtime.md) is in kernelsdk, and only there.
    from kernelsdk._native import NativeOutput, NativeRunner

    assert kernelsdk.NativeRunner is NativeRunner
    assert kernelsdk.NativeOutput is NativeOutput
    assert not (Path(kernelsdk.__file__).parent / "native.py").exists()
    assert callable(NativeRunner.run) and callable(NativeRunner.interrupt)


def test_protocol_version() -> None:
    assert kernelsdk.protocol.PROTOCOL_VERSION == "5.5"


def test_every_subpackage_ships_in_the_wheel() -> None:
    """setuptools' explicit ``packages`` list leaves out a subpackage nobody adds to it (the
    wheel had no kernelsdk/mpi/ after mpi.py became a package)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for init in (root / "kernelsdk").rglob("__init__.py")
    }
    assert found == listed
