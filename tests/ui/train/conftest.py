"""Fixtures for the Train tab tests: small picture folders and a Train tab without a worker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_ui_helpers import write_pictures  # noqa: E402


@pytest.fixture(scope="session")
def red_pictures(tmp_path_factory) -> Path:
    """``<tmp>/2_sks``: four 64 px red pictures captioned "sks" (kohya folder: 2 repeats)."""
    return write_pictures(tmp_path_factory.mktemp("train-ui-data") / "2_sks")


@pytest.fixture
def tracker(qtbot):
    """A JobTracker whose worker is never started (form and queue logic need none)."""
    from app.ui.jobs import JobTracker
    from app.ui.worker_client import WorkerClient

    client = WorkerClient(["/nonexistent/never-started"])
    yield JobTracker(client)
    client.shutdown(wait=True)


@pytest.fixture
def make_tab(qtbot, tracker):
    from app.ui.recent_models import RecentModels
    from app.ui.train.train_ops import TrainOps
    from app.ui.train.train_tab import TrainTab

    def make(**kwargs):
        tab = TrainTab(TrainOps(tracker), RecentModels(), **kwargs)
        qtbot.addWidget(tab)
        tab.resize(1100, 760)
        tab.show()
        qtbot.waitExposed(tab)
        return tab

    return make
