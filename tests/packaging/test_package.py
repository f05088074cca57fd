"""``make package``: the frozen GUI builds, starts, paints offscreen, and sets up its worker.

Slow (a PyInstaller build, ~1 min on 2 cores): runs only with LORALOOM_PACKAGE_TEST=1
(``LORALOOM_PACKAGE_TEST=1 make test``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "loraloom" / "loraloom"
TORCH_WHEELS = Path(os.environ.get("LORALOOM_TORCH_WHEELS", "/opt/wheels"))
WORKER_WHEELS = Path(os.environ.get("LORALOOM_WORKER_WHEELS", ROOT / ".cache" / "worker-wheels"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("LORALOOM_PACKAGE_TEST") != "1", reason="set LORALOOM_PACKAGE_TEST=1 to build"),
]


@pytest.fixture(scope="module")
def bundle() -> Path:
    out = subprocess.run(["make", "package"], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert BINARY.is_file()
    return BINARY.parent


def frozen_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "LORALOOM_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}


@pytest.mark.timeout(1800)
def test_the_bundle_holds_no_torch_and_fits_a_release(bundle):
    internal = bundle / "_internal"
    for heavy in ("torch", "diffusers", "transformers", "peft", "onnxruntime"):
        assert not (internal / heavy).exists(), heavy
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < 400 * 2**20  # far from GitHub's 2 GB limit; a torch bundle is ~5 GB
    assert (internal / "worker_src" / "app" / "worker" / "__main__.py").is_file()
    assert (internal / "packaging" / "worker-requirements.txt").is_file()
    assert (internal / "uv" / "uv").is_file()


@pytest.mark.timeout(1800)
def test_the_built_binary_answers_version_and_paints_its_window(bundle, tmp_path):
    env = frozen_env(tmp_path / "home")
    version = subprocess.run(
        [str(BINARY), "--version"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert version.returncode == 0, version.stderr
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert version.stdout.splitlines() == [
        f"loraloom 0.1.0 (commit {commit})",
        "worker: torch not installed, diffusers not installed (no worker environment yet)",
    ]
    painted = subprocess.run(
        [str(BINARY)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**env, "LORALOOM_EXIT_AFTER_PAINT": "1"},
    )
    assert painted.returncode == 0, painted.stderr[-2000:]
    assert painted.stdout.startswith("first-paint ")
    assert "Traceback" not in painted.stderr


@pytest.mark.timeout(1800)
@pytest.mark.skipif(not any(WORKER_WHEELS.glob("diffusers-*.whl")), reason="needs `make worker-wheels`")
def test_the_frozen_app_sets_up_a_worker_that_answers(bundle, tmp_path):
    import sys

    env = frozen_env(tmp_path / "home")
    setup = subprocess.run(
        [
            str(BINARY),
            "setup-worker",
            "--offline",
            "--find-links",
            str(TORCH_WHEELS),
            "--find-links",
            str(WORKER_WHEELS),
            "--python",
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    assert "device cpu, torch 2.13.0" in setup.stdout.splitlines()[-1]
    version = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert version.stdout.splitlines()[1].startswith("worker: torch 2.13.0")
    # A torch command of the frozen CLI runs on the worker's interpreter.
    tiny = subprocess.run(
        [str(BINARY), "tiny-model", str(tmp_path / "tiny")], capture_output=True, text=True, timeout=600, env=env
    )
    assert tiny.returncode == 0, tiny.stderr[-2000:]
    assert (tmp_path / "tiny" / "model_index.json").is_file()


@pytest.mark.timeout(1800)
def test_the_appimage_recipe_makes_an_appdir_that_runs(bundle, tmp_path):
    env = {k: v for k, v in frozen_env(tmp_path / "home").items()}
    env["PATH"] = "/usr/bin:/bin"  # no appimagetool: the recipe stops at the AppDir
    made = subprocess.run(
        [str(ROOT / "packaging" / "linux" / "build-appimage.sh")], capture_output=True, text=True, timeout=300, env=env
    )
    assert made.returncode == 0, made.stderr
    appdir = ROOT / "build" / "LoRALoom.AppDir"
    assert (appdir / "io.github.loraloom.LoRALoom.desktop").is_file()
    assert (appdir / "usr" / "share" / "metainfo" / "io.github.loraloom.LoRALoom.metainfo.xml").is_file()
    version = subprocess.run([str(appdir / "AppRun"), "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert version.returncode == 0 and version.stdout.startswith("loraloom 0.1.0")
