"""The packages of app/core (hub, dataset): their modules import one another one way, and never a
name another module keeps private, so each thing has one place and a reader can follow the arrows."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app.core.hub", "app.core.dataset")


def _modules(package: str) -> dict[str, Path]:
    folder = ROOT.joinpath(*package.split("."))
    found = {}
    for path in sorted(folder.glob("*.py")):
        found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def _from_imports(path: Path, module: str) -> list[tuple[str, str]]:
    """(module, name) of every ``from module import name`` in a file, at any depth: imports inside
    functions and under ``if TYPE_CHECKING`` count too, as a reader follows them all."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found += [(source, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_the_modules_of_a_package_import_one_another_one_way(package):
    modules = _modules(package)
    assert len(modules) > 2, f"{package} has no modules to check"
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for source, name in _from_imports(path, module):
            if f"{source}.{name}" in modules:  # from app.core.hub import download
                targets.add(f"{source}.{name}")
            elif source in modules and source != package:
                targets.add(source)
        graph[module] = targets - {module}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"{package}: an import cycle {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_reaches_into_another_modules_private_names(package):
    modules = _modules(package)
    wrong = [
        f"{module} imports {source}.{name}"
        for module, path in modules.items()
        for source, name in _from_imports(path, module)
        if source.startswith(f"{package}.") and source != module and name.startswith("_")
    ]
    assert not wrong, "\n".join(wrong)
