"""Fixtures for training tests (helpers live in tests/support/train_helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run several times faster on one thread (thread hand-offs cost more than the maths,
    badly so on a busy CI machine); restored afterwards so other tests keep their setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
