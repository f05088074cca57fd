"""DESIGN.md section 3: imports go one way (ui -> worker.protocol/core; worker -> engine -> core)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"
HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate")
QT = ("PySide6", "shiboken6", "superqt", "pyqtgraph", "pytestqt")


def _modules(package: str) -> list[tuple[str, Path]]:
    root = APP / package
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(APP.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of everything a file imports (at any depth, including inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from app.worker import protocol" names app.worker.protocol, not all of app.worker.
            names.update(f"{prefix}.{a.name}" for a in node.names)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


ALLOWED_OURS = {
    "core": ("app.core",),
    "engine": ("app.core", "app.engine"),
    "worker": ("app.core", "app.engine", "app.worker"),
    "ui": ("app.core", "app.worker.protocol", "app.ui"),
}


@pytest.mark.parametrize("layer", sorted(ALLOWED_OURS))
def test_internal_import_arrows(layer):
    wrong = []
    for module, path in _modules(layer):
        for name in _imports(path, module):
            if name == "app" or not name.startswith("app."):
                continue
            if name == "app.__version__":
                continue
            if not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_OURS[layer]):
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_core_imports_neither_qt_nor_torch():
    wrong = [f"{m} imports {n}" for m, p in _modules("core") for n in _imports(p, m) if _top(n) in HEAVY + QT]
    assert not wrong, "\n".join(wrong)


def test_engine_and_worker_never_import_qt():
    wrong = [
        f"{m} imports {n}"
        for layer in ("engine", "worker")
        for m, p in _modules(layer)
        for n in _imports(p, m)
        if _top(n) in QT
    ]
    assert not wrong, "\n".join(wrong)


def test_ui_never_imports_heavy_libraries_statically():
    wrong = [f"{m} imports {n}" for m, p in _modules("ui") for n in _imports(p, m) if _top(n) in HEAVY]
    assert not wrong, "\n".join(wrong)


def test_importing_all_of_ui_leaves_torch_out_of_sys_modules():
    """The real check: import every module of app.ui (and the GUI entry points) in a fresh process."""
    modules = [m for m, _ in _modules("ui")] + ["app", "app.cli", "app.__main__"]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the GUI pulled in {loaded}"


def test_core_imports_without_qt_or_torch_in_a_fresh_process():
    modules = [m for m, _ in _modules("core")]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        f"print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in {HEAVY + QT!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
