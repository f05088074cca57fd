"""Pictures the user excluded from training (Dataset tab: right-click > Exclude from training).

Kept in the dataset folder itself, in ``.loraloom-exclude``: one path per line, relative to the
folder, ``/``-separated. It travels with the folder, so training (GUI or ``loraloom train``)
and ``dataset check`` see the same choice. The scan turns each listed picture into a blocking
``excluded`` problem: every "is it usable" check then leaves it out, without a second rule.

The file is treated like any other: a link is not followed (it is ignored, and replaced by a
plain file on the next write), lines that leave the folder are ignored, and a huge one is not read.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from app.core.dataset.problems import Problem, ProblemKind
from app.core.files import atomic_write_text

EXCLUDE_FILE = ".loraloom-exclude"
MAX_BYTES = 4 * 1024 * 1024
HEADER = "# Pictures LoRA Loom leaves out of training (one per line, relative to this folder).\n"


def _rel(path: Path, root: Path) -> str | None:
    try:
        return PurePosixPath(Path(path).resolve().relative_to(root.resolve()).as_posix()).as_posix()
    except ValueError:
        return None  # not inside the folder: never listed


def read_excluded(root: str | Path) -> set[str]:
    file = Path(root) / EXCLUDE_FILE
    try:
        if file.is_symlink() or not file.is_file() or file.stat().st_size > MAX_BYTES:
            return set()
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    out = set()
    for line in text.splitlines():
        line = line.strip()
        parts = PurePosixPath(line).parts
        if line and not line.startswith("#") and not line.startswith("/") and ".." not in parts:
            out.add(PurePosixPath(line).as_posix())
    return out


def set_excluded(root: str | Path, paths: list[Path], excluded: bool) -> set[str]:
    """Add (or remove) ``paths`` to the folder's list; returns the new list. Raises OSError."""
    root = Path(root)
    names = read_excluded(root)
    changed = {r for r in (_rel(p, root) for p in paths) if r is not None}
    names = names | changed if excluded else names - changed
    target = root / EXCLUDE_FILE
    if not names:
        if target.is_symlink() or target.is_file():
            target.unlink()
        return names
    if target.is_symlink():
        target.unlink()  # write our own file, never through a link
    atomic_write_text(target, HEADER + "".join(f"{n}\n" for n in sorted(names)))
    return names


def excluded_problem(path: Path) -> Problem:
    return Problem(
        ProblemKind.EXCLUDED,
        f"{path}: excluded from training (right-click it in the Dataset tab to include it again)",
        blocking=True,
    )


def excluded_problems(items, root: Path) -> list:
    """(item, problem) for each listed picture (the scan's shape for whole-folder checks)."""
    names = read_excluded(root)
    if not names:
        return []
    return [(item, excluded_problem(item.path)) for item in items if _rel(item.path, root) in names]
