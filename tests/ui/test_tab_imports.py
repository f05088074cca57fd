"""Tabs never import each other: what two tabs share lives in app/ui/common (or in app/core),
so that a tab can be read, changed or removed on its own."""

from __future__ import annotations

import ast
from pathlib import Path

UI = Path(__file__).resolve().parents[2] / "app" / "ui"
TABS = ("dataset", "generate", "library", "train")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in the file, at any depth (lazy imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def cross_tab_imports(ui_root: Path) -> list[str]:
    problems = []
    for tab in TABS:
        for path in sorted((ui_root / tab).rglob("*.py")):
            for line, module in imported_modules(path):
                parts = module.split(".")
                if parts[:2] == ["app", "ui"] and len(parts) > 2 and parts[2] in TABS and parts[2] != tab:
                    problems.append(f"{path.relative_to(ui_root.parent.parent)}:{line} imports {module}")
    return problems


def test_no_tab_package_imports_another_tab():
    assert all((UI / tab).is_dir() for tab in TABS)
    problems = cross_tab_imports(UI)
    assert not problems, "tabs import each other (move the shared thing to app/ui/common or app/core):\n" + "\n".join(
        problems
    )


def test_the_check_sees_a_cross_tab_import(tmp_path):
    for tab in TABS:
        (tmp_path / "app" / "ui" / tab).mkdir(parents=True)
    (tmp_path / "app" / "ui" / "train" / "panel.py").write_text(
        "from app.ui.train.train_ops import TrainOps\n"
        "def later():\n    from app.ui.generate.generate_ops import describe_error\n",
        encoding="utf-8",
    )
    assert cross_tab_imports(tmp_path / "app" / "ui") == [
        "app/ui/train/panel.py:3 imports app.ui.generate.generate_ops"
    ]
