"""What is running: the app version, the git commit of a checkout or build, torch/diffusers of the worker.

Read from package metadata and git, never by importing torch, so ``--version`` stays instant.
"""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
import sys
from pathlib import Path

from app.core import worker_env

COMMIT_FILE = "BUILD_COMMIT"  # written into the frozen bundle by packaging/loraloom.spec


def git_commit(root: Path | None = None) -> str | None:
    """The short commit of a checkout, or the one the frozen app was built from; None otherwise."""
    return _git_commit(root or worker_env.bundle_dir())


@functools.lru_cache(maxsize=4)  # asked again by every About box: git runs once per process
def _git_commit(root: Path) -> str | None:
    stamped = root / COMMIT_FILE
    if stamped.is_file():
        return stamped.read_text(encoding="utf-8").strip() or None
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if commit and out.returncode == 0:
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    return None


def local_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def worker_versions() -> tuple[dict[str, str | None], str]:
    """torch and diffusers where the worker runs, and which interpreter that is."""
    python = worker_env.worker_python()
    if python is None:
        return {"torch": None, "diffusers": None}, "no worker environment yet"
    if worker_env.is_frozen() or str(python) != sys.executable:
        return worker_env.package_versions(python), str(python)
    return {"torch": local_version("torch"), "diffusers": local_version("diffusers")}, str(python)


def version_text(app_version: str) -> str:
    """``loraloom --version``: several lines, the first one ``loraloom X.Y.Z``."""
    commit = git_commit()
    lines = [f"loraloom {app_version}" + (f" (commit {commit})" if commit else "")]
    versions, where = worker_versions()
    found = ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items())
    lines.append(f"worker: {found} ({where})")
    return "\n".join(lines)
