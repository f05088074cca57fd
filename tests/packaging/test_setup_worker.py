"""``loraloom setup-worker`` from local wheels only: the new environment's worker answers hello.

Offline: torch from the local wheel folder (LORALOOM_TORCH_WHEELS, /opt/wheels here) and
every other pinned package from the wheelhouse ``make worker-wheels`` fills (``make test``
fills it first), both passed as --find-links with --offline (uv's --no-index).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core import worker_env

ROOT = Path(__file__).resolve().parents[2]
TORCH_WHEELS = Path(os.environ.get("LORALOOM_TORCH_WHEELS", "/opt/wheels"))
WORKER_WHEELS = Path(os.environ.get("LORALOOM_WORKER_WHEELS", ROOT / ".cache" / "worker-wheels"))


def _have_wheels() -> bool:
    return any(TORCH_WHEELS.glob("torch-*.whl")) and any(WORKER_WHEELS.glob("diffusers-*.whl"))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not _have_wheels(), reason=f"needs a torch wheel in {TORCH_WHEELS} and `make worker-wheels`")
def test_setup_worker_from_local_wheels_makes_a_worker_that_answers_hello(tmp_path):
    env_dir = tmp_path / "worker env"  # a space in the path, as on many Windows/macOS homes
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "setup-worker",
            "--offline",
            "--find-links",
            str(TORCH_WHEELS),
            "--find-links",
            str(WORKER_WHEELS),
            "--python",
            sys.executable,
            "--env",
            str(env_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "hardware: " in out.stdout and "(offline)" in out.stdout
    assert f"worker environment ready at {env_dir}: device cpu, torch 2.13.0" in out.stdout
    python = worker_env.env_python(env_dir)
    assert worker_env.load_settings().python == str(python)  # the GUI starts its worker there now
    assert worker_env.worker_command() == [str(python), "-m", "app.worker"]
    hello = worker_env.probe_worker(python)
    assert hello["device"] == "cpu" and hello["torch"] == "2.13.0" and hello["diffusers"]


def test_a_missing_wheel_fails_in_one_sentence_and_leaves_no_half_environment(tmp_path):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    env_dir = tmp_path / "env"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "setup-worker",
            "--offline",
            "--find-links",
            str(empty),
            "--python",
            sys.executable,
            "--env",
            str(env_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == "loraloom: error: `uv pip install` failed with exit code 1"
    assert "Traceback" not in out.stderr
    assert not env_dir.exists()
    assert not worker_env.settings_path().exists()


def test_an_existing_folder_is_never_overwritten(tmp_path):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "mine.txt").write_text("keep", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "setup-worker", "--env", str(env_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"loraloom: error: {env_dir} already exists: remove it first, or pass --env with a new folder"
    )
    assert (env_dir / "mine.txt").read_text(encoding="utf-8") == "keep"


def test_use_an_existing_interpreter_checks_it_answers_first(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "setup-worker", "--use", "/bin/false"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("loraloom: error: /bin/false: the worker did not start")
    assert not worker_env.settings_path().exists()
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "setup-worker", "--use", sys.executable],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"worker uses {sys.executable}: device cpu, torch 2.13.0")
    assert worker_env.load_settings().python == sys.executable
