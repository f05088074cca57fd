"""Fixtures for training tests (helpers live in train_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "worker"))  # worker_process helper

from train_helpers import write_images  # noqa: E402


@pytest.fixture(scope="session")
def red_dataset(tmp_path_factory) -> Path:
    """``<tmp>/red/2_sks``: four 64x64 solid-red pictures captioned "sks", 2 repeats each."""
    root = tmp_path_factory.mktemp("red")
    write_images(root / "2_sks")
    return root


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run several times faster on one thread (thread hand-offs cost more than the maths,
    badly so on a busy CI machine); restored afterwards so other tests keep their setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
