"""The Dataset tab inside the main window: drop a folder on the window, and auto-caption
through the real worker on the tiny stand-ins (fill mode, prefix first, undo)."""

from __future__ import annotations

import pytest
from dataset_files import make_bad_dataset
from qt_helpers import all_thumbnails_loaded, caption_files, drop

from app.ui.main_window import MainWindow
from app.ui.worker_client import WorkerClient

TIMEOUT = 20_000
CAPTION_TIMEOUT = 120_000  # the worker imports torch and transformers on a busy 2-core CPU


@pytest.fixture
def window(qtbot):
    client = WorkerClient()  # the real worker, started with the first job
    win = MainWindow(client)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_drop_on_window_then_auto_caption_fills_only_missing_with_prefix(qtbot, window, tiny_blip, tmp_path):
    expect = make_bad_dataset(tmp_path / "ds")
    tab = window.dataset_tab
    assert window.tabs.currentWidget() is not tab
    drop(window, [tmp_path / "ds"])
    assert window.tabs.currentWidget() is tab, "dropping a folder brings the Dataset tab forward"
    qtbot.waitUntil(lambda: not tab.session.scanning and tab.model.rowCount() == len(expect), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: all_thumbnails_loaded(tab), timeout=TIMEOUT)
    assert tab.open_action in window.menuBar().actions()[0].menu().actions()

    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").glob("*.txt")}
    job = tab.start_auto_caption(
        {"backend": "blip", "model": str(tiny_blip), "prefix": "sks", "batch_size": 4, "max_new_tokens": 6}
    )
    assert job
    assert tab.cancel_button.isVisible() and not tab.caption_button.isEnabled()
    qtbot.waitUntil(lambda: tab.session.caption_job is None, timeout=CAPTION_TIMEOUT)
    assert "auto-caption" in tab.status.text() or "captions written" in tab.status.text()
    usable_uncaptioned = {
        rel
        for rel, kind in expect.items()
        if kind is None or kind.value in ("unusual_mode", "exif_rotated", "wrong_suffix", "animated", "duplicate")
    }
    usable_uncaptioned -= {"good.jpg"}
    for item in tab.session.items:
        rel = str(item.path.relative_to(tab.session.root))
        if rel in usable_uncaptioned:
            text = item.caption_path.read_text(encoding="utf-8")
            assert text.startswith("sks, ") and item.caption == text, rel
        elif item.caption_path.name in before:
            assert item.caption_path.read_bytes() == before[item.caption_path.name], "fill mode left it alone"
        else:
            assert not item.caption_path.exists(), f"{rel} is unusable and was skipped"
    assert (tmp_path / "ds" / "good.txt").read_text() == "a red square, solo"
    qtbot.waitUntil(lambda: dict(tab.tag_panel.tags()).get("sks", 0) >= len(usable_uncaptioned), timeout=TIMEOUT)

    # auto-captioning is one undo step that restores the folder
    assert "auto-caption" in tab.undo_action.toolTip()
    tab.undo_action.trigger()
    qtbot.waitUntil(lambda: caption_files(tmp_path / "ds") == before, timeout=TIMEOUT)
