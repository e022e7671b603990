"""The public API is exactly what ``__all__`` says, and every name in it exists."""

from __future__ import annotations

import importlib
import inspect
import types
from pathlib import Path

import kernelsdk
import kernelsdk.testing


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    }


def test_kernelsdk_all_matches_public_names() -> None:
    importlib.import_module("kernelsdk.testing")  # importing a submodule must not add names
    exported = set(kernelsdk.__all__)
    assert len(exported) == len(kernelsdk.__all__), "duplicates in __all__"
    assert exported - {"__version__"} == public_names(kernelsdk)
    assert "__version__" in exported
    assert isinstance(kernelsdk.__version__, str)
    for name in kernelsdk.__all__:
        assert getattr(kernelsdk, name) is not None
        assert name in vars(kernelsdk)


def test_kernelsdk_all_resolves_with_star_import() -> None:
    namespace: dict[str, object] = {}
    exec("from kernelsdk import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(kernelsdk.__all__)
    for name, value in namespace.items():
        assert value is getattr(kernelsdk, name)


def test_public_objects_are_defined_in_private_modules() -> None:
    for name in kernelsdk.__all__:
        obj = getattr(kernelsdk, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            module = obj.__module__
            assert module.startswith("kernelsdk._"), (name, module)


def test_testing_all_matches_its_public_definitions() -> None:
    exported = set(kernelsdk.testing.__all__)
    assert len(exported) == len(kernelsdk.testing.__all__), "duplicates in __all__"
    for name in exported:
        assert hasattr(kernelsdk.testing, name), name
    # Everything defined in kernelsdk.testing itself (not imported into it) is exported.
    defined_here = {
        name
        for name in public_names(kernelsdk.testing)
        if getattr(getattr(kernelsdk.testing, name), "__module__", None) == "kernelsdk.testing"
    }
    assert exported == defined_here
    assert exported >= {"MemoryTransport", "TestClient", "open_test_kernel", "RequestResult"}
    namespace: dict[str, object] = {}
    exec("from kernelsdk.testing import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == exported


def test_testing_does_not_reexport_public_api_under_other_names() -> None:
    # Names imported into kernelsdk.testing that are part of the public API are the same objects.
    for name in public_names(kernelsdk.testing):
        if name in kernelsdk.__all__:
            assert getattr(kernelsdk.testing, name) is getattr(kernelsdk, name)


def test_py_typed_is_shipped() -> None:
    package_dir = Path(kernelsdk.__file__).parent
    assert (package_dir / "py.typed").is_file()


def test_native_bridge_is_public() -> None:
    # The bridge for C runtimes (docs/bridging-a-c-runtime.md) is part of the public API.
    import kernelsdk.native
    from kernelsdk._native import NativeOutput, NativeRunner

    assert kernelsdk.NativeRunner is NativeRunner is kernelsdk.native.NativeRunner
    assert kernelsdk.NativeOutput is NativeOutput is kernelsdk.native.NativeOutput
    assert set(kernelsdk.native.__all__) == {"NativeRunner", "NativeOutput"}
    assert {"NativeRunner", "NativeOutput"} <= set(kernelsdk.__all__)
    assert callable(NativeRunner.run) and callable(NativeRunner.interrupt)


def test_protocol_version() -> None:
    assert kernelsdk.PROTOCOL_VERSION == "5.5"
