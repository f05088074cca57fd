"""The Library tab with pytest-qt, against the fake Hub: search, open a card, download, Local, Add to mix."""

from __future__ import annotations

import socket

import pytest
from fake_hub import kohya_sd1
from PySide6.QtCore import Qt

from app.core.hub.client import Hub
from app.core.library import Library

BOB = "hub:bob/sdxl-pixel-lora"
BIG = "pytorch_lora_weights.safetensors"


@pytest.fixture
def make_tab(qtbot, tmp_path, hf_cache):
    from app.ui.library.library_ops import LibraryOps
    from app.ui.library.library_tab import LibraryTab

    made = []

    def make(endpoint: str, folder=None):
        library = Library(hub_cache=hf_cache, runs_dir=tmp_path / "runs")
        if folder is not None:
            library.add_folder(folder)
        ops = LibraryOps(library, Hub(endpoint=endpoint, token=False, cache_dir=hf_cache, timeout=3.0))
        tab = LibraryTab(ops)
        qtbot.addWidget(tab)
        tab.resize(1100, 720)
        tab.show()
        qtbot.waitExposed(tab)
        made.append(ops)
        qtbot.waitUntil(lambda: ops.scanned, timeout=10_000)
        return tab

    yield make
    for ops in made:
        ops.shutdown()
        ops.tasks.wait()
        ops.thumbs.wait()


def cards(grid) -> list[str]:
    return [c.key for c in grid.cards.items]


def test_search_open_download_then_local_and_add_to_mix(qtbot, make_tab, fake_hub, hf_cache):
    tab = make_tab(fake_hub.url)
    assert "No adapters yet" in tab.local_status.text()
    tab.hub_button.click()  # the first visit searches by itself
    qtbot.waitUntil(lambda: len(tab.hub_grid.cards.items) == 5, timeout=10_000)
    assert cards(tab.hub_grid)[0] == BOB and not tab.offline_banner.isVisible()

    tab.family_box.setCurrentIndex(3)  # SDXL
    qtbot.waitUntil(lambda: cards(tab.hub_grid) == [BOB, "hub:dave/gated-sdxl-lora"], timeout=10_000)
    tab.set_current_family("sd1")  # an SD1 model is loaded in Generate: SDXL cards are marked, not hidden
    bob_index = tab.hub_grid.cards.index(0)
    assert "Made for SDXL" in bob_index.data(Qt.ItemDataRole.ToolTipRole)
    qtbot.waitUntil(lambda: BOB in tab.images, timeout=10_000)  # the card's picture from the repo

    tab.hub_grid.select_key(BOB)
    details = tab.details
    qtbot.waitUntil(lambda: details.download_button.isEnabled(), timeout=10_000)
    assert details.title.text() == "bob/sdxl-pixel-lora"
    assert details.trigger.text() == "pixel art, 8-bit"
    assert "Pixel art for SDXL." in details.description.toPlainText()
    assert details.files.currentText().startswith(BIG) and "MB" in details.files.currentText()
    assert "Made for SDXL" in details.warning.text()
    assert not details.add_button.isEnabled()

    progress: list[int] = []
    tab.ops.downloadProgress.connect(lambda key, done, total: progress.append(int(done)))
    with qtbot.waitSignal(tab.ops.downloadFinished, timeout=20_000) as finished:
        qtbot.mouseClick(details.download_button, Qt.MouseButton.LeftButton)
    path = finished.args[1]
    assert (
        path.startswith(str(hf_cache))
        and progress
        and progress[-1] == len(fake_hub.repos["bob/sdxl-pixel-lora"].files[BIG].data)
    )
    assert details.progress.value() == 1000 and "verified" in details.status.text()
    assert details.add_button.isEnabled()
    with qtbot.waitSignal(tab.addToMixRequested, timeout=2000) as added:
        qtbot.mouseClick(details.add_button, Qt.MouseButton.LeftButton)
    assert added.args == [path]

    tab.local_button.click()
    tab.family_box.setCurrentIndex(0)
    assert cards(tab.local_grid) == [path]
    tab.search_box.setText("8-bit")  # local search by trigger word, as you type
    assert cards(tab.local_grid) == [path]
    tab.search_box.setText("nothing like it")
    assert cards(tab.local_grid) == []
    tab.search_box.clear()
    tab.local_grid.select_key(path)
    assert details.entry is not None and details.entry.repo_id == "bob/sdxl-pixel-lora"
    assert details.trigger.text() == "pixel art, 8-bit" and details.base.text() == "SDXL"
    with qtbot.waitSignal(tab.addToMixRequested, timeout=2000) as added_local:
        details.add_button.click()
    assert added_local.args == [path]


def test_cancel_then_download_again_resumes(qtbot, make_tab, fake_hub):
    tab = make_tab(fake_hub.url)
    fake_hub.slow = 0.004
    tab.show_hub()
    qtbot.waitUntil(lambda: BOB in cards(tab.hub_grid), timeout=10_000)
    tab.hub_grid.select_key(BOB)
    details = tab.details
    qtbot.waitUntil(details.download_button.isEnabled, timeout=10_000)
    details.download_button.click()
    qtbot.waitUntil(lambda: 0 < details.progress.value() < 1000, timeout=10_000)
    assert details.cancel_button.isEnabled()
    details.cancel_button.click()
    assert "cancelled" in details.status.text() and details.download_button.isEnabled()
    qtbot.waitUntil(lambda: tab.ops.tasks.active == 0, timeout=10_000)  # the thread stops at its next chunk

    fake_hub.slow = 0.0
    with qtbot.waitSignal(tab.ops.downloadFinished, timeout=20_000):
        details.download_button.click()
    ranges = [g["range"] for g in fake_hub.gets_of(BIG)]
    assert ranges[0] is None and ranges[-1] and ranges[-1].startswith("bytes=")


def test_hub_down_says_offline_and_local_still_works(qtbot, make_tab, fake_hub, tmp_path):
    folder = tmp_path / "Lora"
    folder.mkdir()
    (folder / "mine.safetensors").write_bytes(kohya_sd1(4, {"modelspec.trigger_phrase": "minez"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tab = make_tab(f"http://127.0.0.1:{port}", folder=folder)
    assert cards(tab.local_grid) == [str(folder / "mine.safetensors")]
    tab.show_hub()
    qtbot.waitUntil(tab.offline_banner.isVisible, timeout=10_000)
    assert "cannot reach the Hub" in tab.offline_banner.text()
    assert "cannot reach the Hub" in tab.hub_status.text()
    tab.show_local_view()
    tab.local_grid.select_key(str(folder / "mine.safetensors"))
    assert tab.details.trigger.text() == "minez" and tab.details.add_button.isEnabled()


def test_gated_repo_download_says_token(qtbot, make_tab, fake_hub):
    tab = make_tab(fake_hub.url)
    tab.show_hub()
    qtbot.waitUntil(lambda: "hub:dave/gated-sdxl-lora" in cards(tab.hub_grid), timeout=10_000)
    tab.hub_grid.select_key("hub:dave/gated-sdxl-lora")
    details = tab.details
    qtbot.waitUntil(details.download_button.isEnabled, timeout=10_000)
    assert "gated" in details.subtitle.text()
    with qtbot.waitSignal(tab.ops.downloadFailed, timeout=10_000):
        details.download_button.click()
    assert "token" in details.status.text() and not details.add_button.isEnabled()


def test_a_hanging_hub_never_freezes_the_tab(qtbot, make_tab, fake_hub, tmp_path):
    import threading

    folder = tmp_path / "Lora"
    folder.mkdir()
    (folder / "mine.safetensors").write_bytes(kohya_sd1(4))
    fake_hub.stall = threading.Event()
    tab = make_tab(fake_hub.url, folder=folder)
    try:
        tab.show_hub()
        qtbot.waitUntil(lambda: any(r["path"] == "/api/models" for r in fake_hub.requests), timeout=10_000)
        assert tab.ops.tasks.active == 1 and tab.hub_status.text() == "Asking the Hub…"
        # The search hangs in its thread; the window keeps answering.
        tab.show_local_view()
        tab.search_box.setText("mine")
        assert cards(tab.local_grid) == [str(folder / "mine.safetensors")]
        tab.local_grid.select_key(str(folder / "mine.safetensors"))
        assert tab.details.add_button.isEnabled() and tab.ops.tasks.active == 1
    finally:
        fake_hub.stall.set()
    qtbot.waitUntil(lambda: tab.ops.tasks.active == 0, timeout=10_000)


def test_hf_hub_offline_is_said_at_once_and_nothing_is_asked(qtbot, make_tab, fake_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    tab = make_tab(fake_hub.url)
    qtbot.waitUntil(tab.offline_banner.isVisible, timeout=10_000)
    assert "HF_HUB_OFFLINE" in tab.offline_banner.text()
    tab.show_hub()  # no automatic search while offline
    tab.search_hub()  # an explicit one says why it cannot
    qtbot.waitUntil(lambda: "offline" in tab.hub_status.text(), timeout=10_000)
    assert fake_hub.requests == []


def test_the_main_window_has_the_library_tab_and_hears_add_to_mix(qtbot, tmp_path):
    import sys
    from pathlib import Path

    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    fake_worker = Path(__file__).resolve().parents[2] / "ui" / "fake_worker.py"
    window = MainWindow(WorkerClient([sys.executable, str(fake_worker)]))
    qtbot.addWidget(window)
    window.show()
    names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert window.tabs.widget(names.index("Library")) is window.library_tab
    window.tabs.setCurrentWidget(window.library_tab)  # the first look reads the library
    qtbot.waitUntil(lambda: window.library_tab.ops.scanned, timeout=10_000)
    window.tracker.modelChanged.emit({"base": "x", "family": "sdxl"})
    assert window.library_tab.local_grid.cards.current_family == "sdxl"
    window.library_tab.addToMixRequested.emit(str(tmp_path / "a.safetensors"))
    assert str(tmp_path / "a.safetensors") in window.statusBar().currentMessage()
    window.close()


def test_a_refused_token_is_said_and_not_kept_in_the_field(qtbot, make_tab, fake_hub):
    tab = make_tab(fake_hub.url)
    tab.show_hub()
    qtbot.waitUntil(lambda: "No Hub token" in tab.token_status.text(), timeout=10_000)
    tab.token_box.setText("hf_not_a_real_token")
    tab.save_token_button.click()
    assert tab.token_box.text() == ""
    qtbot.waitUntil(lambda: "refused" in tab.token_status.text(), timeout=10_000)
    assert "hf_not_a_real_token" not in tab.token_status.text()
    assert [r["auth"] for r in fake_hub.requests if r["path"] == "/api/whoami-v2"] == [True]
