"""The ``loraloom`` command as a user runs it (a real subprocess each time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from app import __version__

pytestmark = pytest.mark.slow


def loraloom(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def test_version_and_help_do_not_import_torch():
    for flag in ("--help", "--version"):  # --version reads torch's version from its metadata
        code = f"import sys; from app.cli import main\ntry: main(['{flag}'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip().splitlines()[-1] == "False"
    version = loraloom("--version")
    assert version.returncode == 0 and version.stdout.startswith(f"loraloom {__version__}")


def test_tiny_model_then_generate_writes_a_64px_png(tmp_path):
    model = tmp_path / "m"
    made = loraloom("tiny-model", str(model), "--family", "sd1")
    assert made.returncode == 0, made.stderr
    assert (model / "model_index.json").is_file()
    out = tmp_path / "x.png"
    gen = loraloom("generate", "--base", str(model), "--prompt", "a red cat", "--seed", "5", "--out", str(out))
    assert gen.returncode == 0, gen.stderr
    assert Path(gen.stdout.strip().splitlines()[-1]) == out
    with Image.open(out) as im:
        assert im.size == (64, 64)
        assert im.text["parameters"].startswith("a red cat\n")
        assert "Seed: 5" in im.text["parameters"]
    # Libraries' own progress bars and notices stay out of the user's terminal.
    assert "Loading" not in gen.stderr and "torchvision" not in gen.stderr

    again = loraloom("tiny-model", str(model))
    assert again.returncode == 1 and str(model) in again.stderr


def test_generate_errors_are_one_line_with_the_path(tmp_path):
    missing = tmp_path / "nothing-here"
    gen = loraloom("generate", "--base", str(missing), "--prompt", "x", "--out", str(tmp_path / "y.png"))
    assert gen.returncode == 1
    assert f"loraloom: error: {missing}: no such file or folder" in gen.stderr
    assert "Traceback" not in gen.stderr
    bad = loraloom("generate", "--base", str(missing), "--prompt", "x", "--size", "huge")
    assert bad.returncode == 1 and "WIDTHxHEIGHT" in bad.stderr


def test_caption_help_names_each_backend_as_the_caption_dialog_does():
    from app.core.dataset.caption_config import BACKEND_LABELS

    shown = loraloom("caption", "--help")
    assert shown.returncode == 0, shown.stderr
    # argparse wraps the help at the terminal's width, also after a hyphen ("Vision-" / "language")
    text = " ".join(shown.stdout.split()).replace("- ", "-")
    for backend, label in BACKEND_LABELS.items():
        assert f"{backend.value}: {label}" in text
    wrong = loraloom("caption", "somewhere", "--backend", "clip")
    assert wrong.returncode == 2 and "--backend {auto,blip,florence,wd14,vlm}" in wrong.stderr
    bad_task = loraloom("caption", "somewhere", "--task", "<OD>")
    assert bad_task.returncode == 2 and "invalid choice: '<OD>'" in bad_task.stderr
