"""Fixtures for training tests (the engine, the worker and the CLI): a small picture folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import write_images


@pytest.fixture(scope="session")
def red_dataset(tmp_path_factory) -> Path:
    """``<tmp>/red/2_sks``: four 64x64 solid-red pictures captioned "sks", 2 repeats each."""
    root = tmp_path_factory.mktemp("red")
    write_images(root / "2_sks")
    return root
