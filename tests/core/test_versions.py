"""``loraloom --version``: app version, the checkout's commit, the worker's torch and diffusers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app import __version__
from app.core import versions

ROOT = Path(__file__).resolve().parents[2]


def test_version_names_app_commit_and_worker_libraries():
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    first, worker = out.stdout.strip().splitlines()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert first.startswith(f"loraloom {__version__} (commit {commit}")
    assert worker.startswith("worker: torch 2.13.0") and ", diffusers 0." in worker
    assert "torch" not in out.stderr


def test_a_frozen_build_reports_the_commit_it_was_built_from(tmp_path):
    (tmp_path / versions.COMMIT_FILE).write_text("abc1234\n", encoding="utf-8")
    assert versions.git_commit(tmp_path) == "abc1234"
    assert versions.git_commit(tmp_path / "not-a-checkout") is None


def test_the_frozen_app_runs_torch_commands_in_the_worker_environment(monkeypatch, tmp_path, capsys):
    from app.cli import main
    from app.core import worker_env

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(worker_env, "source_root", lambda: ROOT)
    assert main(["tiny-model", str(tmp_path / "m")]) == 1
    assert capsys.readouterr().err.strip() == (
        "loraloom: error: `loraloom tiny-model` runs in the worker environment "
        "and there is none yet: run `loraloom setup-worker` first"
    )
    assert not (tmp_path / "m").exists()
    worker_env.save_python(sys.executable)
    assert main(["tiny-model", str(tmp_path / "m")]) == 0  # a subprocess on the saved interpreter
    assert (tmp_path / "m" / "model_index.json").is_file()
