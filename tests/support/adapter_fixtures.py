"""Fixtures for the mixing tests: tiny pipelines and red / green / blue adapters made here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import adapter_factory as F  # noqa: E402


@pytest.fixture(scope="module")
def sd1_pipe(tiny_sd1):
    from app.engine.tiny import load_tiny_pipeline

    return load_tiny_pipeline(tiny_sd1)


@pytest.fixture(scope="module")
def sdxl_pipe(tiny_sdxl):
    from app.engine.tiny import load_tiny_pipeline

    return load_tiny_pipeline(tiny_sdxl)


@pytest.fixture(scope="module")
def rgb(sd1_pipe, tmp_path_factory) -> dict[str, Path]:
    """Three kohya adapters for the tiny SD1 model, each with a trigger word; blue also has LoCon convs."""
    folder = tmp_path_factory.mktemp("rgb")
    return {
        "red": F.kohya_lora(sd1_pipe, folder / "red.safetensors", seed=11, trigger="red style", proj=True),
        "green": F.kohya_lora(
            sd1_pipe, folder / "green.safetensors", seed=12, rank=2, alpha=1.0, trigger="green style"
        ),
        "blue": F.kohya_lora(
            sd1_pipe, folder / "blue.safetensors", seed=13, rank=8, alpha=4.0, convs=True, trigger="blue style"
        ),
    }
