"""No import cycle anywhere, and the layers import only downwards (CONTRIBUTING.md, "Layers").

The graph is read from the source with ``ast`` (every ``import`` and ``from ... import``,
including those inside functions and ``if TYPE_CHECKING:`` blocks), not from ``sys.modules``,
so an import that happens only on some path counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Top-level package -> the directory that holds it.
PACKAGES = {
    "kernelsdk": ROOT,
    "kernelsdk_conformance": ROOT / "conformance",
    "kernelsdk_echo": ROOT / "kernels" / "echo",
    "kernelsdk_lua": ROOT / "kernels" / "lua",
}
#: The sans-IO protocol core (with connection files, which the registration handshake reads):
#: imports nothing from the runtime, Trio or pyzmq.
CORE = {
    "kernelsdk._client_protocol",
    "kernelsdk._connection",
    "kernelsdk._dap",
    "kernelsdk._events",
    "kernelsdk._exceptions",
    "kernelsdk._message",
    "kernelsdk._packers",
    "kernelsdk._protocol",
    "kernelsdk._registration",
    "kernelsdk._session",
    "kernelsdk._version",
    "kernelsdk.protocol",
}
IO_LIBRARIES = {"trio", "zmq", "mpi4py"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package, parent in PACKAGES.items():
        for path in sorted((parent / package).rglob("*.py")):
            parts = path.relative_to(parent).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """Every import in ``module``: the module named (absolute) and the names taken from it."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [alias.name for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for target, names in imported_names(module, path):
            submodules = {f"{target}.{name}" for name in names} & files.keys()
            # ``from package import submodule`` depends on the submodule; any other name taken
            # from a module (a function, a class) depends on that module.
            if len(submodules) < len(names) or not names:
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                targets.add(target)
            targets |= submodules
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]], nodes: set[str]) -> list[str] | None:
    """One cycle among ``nodes`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node] & nodes):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_every_package() -> None:
    graph = import_graph()
    for package in PACKAGES:
        assert package in graph
    assert "kernelsdk._protocol" in graph["kernelsdk._client_protocol"]
    assert "kernelsdk._kernel" in graph["kernelsdk"]
    assert "kernelsdk" in graph["kernelsdk_echo"]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package: str) -> None:
    graph = import_graph()
    nodes = {m for m in graph if m == package or m.startswith(package + ".")}
    assert find_cycle(graph, nodes) is None


def test_no_import_cycle_across_packages() -> None:
    graph = import_graph()
    assert find_cycle(graph, set(graph)) is None


def test_the_protocol_core_imports_only_the_core() -> None:
    """The sans-IO rule, statically: the core's modules import each other and nothing of
    the runtime (the run-time proof is tests/test_exports.py, with Trio and pyzmq blocked)."""
    graph = import_graph()
    files = module_files()
    for module in sorted(CORE):
        assert graph[module] <= CORE, (module, graph[module] - CORE)
        libraries = {name.split(".")[0] for name, _ in imported_names(module, files[module])}
        assert not libraries & IO_LIBRARIES, (module, libraries & IO_LIBRARIES)


def test_kernelsdk_never_imports_its_clients() -> None:
    """The SDK is imported by the kernels and the conformance suite, never the reverse."""
    graph = import_graph()
    for module, targets in graph.items():
        if module == "kernelsdk" or module.startswith("kernelsdk."):
            assert all(t == "kernelsdk" or t.startswith("kernelsdk.") for t in targets), module
