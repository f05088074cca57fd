"""Dataset thumbnails: right-click (Open, Show in folder, Exclude from training, Delete caption),
double-click to enlarge, a too-small picture keeps its thumbnail, the selection leaves the
picture's colours alone, and the last dataset reopens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices, QPixmap
from qt_helpers import all_thumbnails_loaded, drop

from app.core.dataset.exclusions import EXCLUDE_FILE
from app.core.dataset.scan import scan_dataset
from app.ui.dataset.dataset_tab import DatasetTab
from app.ui.dataset.list_model import BadgeRole

TIMEOUT = 20_000
SHOTS = os.environ.get("LORALOOM_SHOTS")
COLOURS = [(220, 40, 40), (40, 180, 60), (240, 200, 30)]


@pytest.fixture
def tab(qtbot):
    widget = DatasetTab()
    qtbot.addWidget(widget)
    widget.resize(1100, 700)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    widget.flush()
    widget.thumbnails.wait()


def _dataset(folder: Path, sizes=((320, 320),) * 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        Image.new("RGB", size, COLOURS[i % 3]).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"colour {i}", encoding="utf-8")
    return folder


def _open(qtbot, tab, folder: Path, count: int) -> None:
    drop(tab, [folder])
    qtbot.waitUntil(lambda: not tab.session.scanning and tab.model.rowCount() == count, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: all_thumbnails_loaded(tab), timeout=TIMEOUT)


def _menu(qtbot, tab, row: int):
    rect = tab.grid.visualRect(tab.proxy.index(row, 0))
    tab.grid.customContextMenuRequested.emit(rect.center())
    menu = tab.context_menu
    assert menu is not None
    return {a.text(): a for a in menu.actions() if not a.isSeparator()}


def test_exclude_from_training_is_kept_in_the_folder_and_honoured_by_training(qtbot, tab, tmp_path):
    from app.core.train_config import TrainConfig
    from app.engine.training.data import collect

    folder = _dataset(tmp_path / "ds")
    _open(qtbot, tab, folder, 3)
    actions = _menu(qtbot, tab, 1)
    assert list(actions) == ["Open", "Show in folder", "Exclude from training", "Delete caption"]
    actions["Exclude from training"].trigger()
    qtbot.waitUntil(lambda: not tab.session.items[1].usable, timeout=TIMEOUT)
    assert (folder / EXCLUDE_FILE).read_text(encoding="utf-8").splitlines()[1:] == ["img1.png"]
    assert tab.proxy.index(1, 0).data(BadgeRole) == "error"
    assert isinstance(tab.proxy.index(1, 0).data(Qt.ItemDataRole.DecorationRole), QPixmap), "still its thumbnail"

    # A fresh scan (dataset check, the Train tab) and training see the same choice.
    assert [i.path.name for i in scan_dataset(folder, min_side=64).usable_items()] == ["img0.png", "img2.png"]
    config = TrainConfig.from_dict(
        {
            "name": "x",
            "base": "tiny",
            "datasets": [{"path": str(folder)}],
            "data": {"resolution": 64, "min_bucket": 64, "max_bucket": 128, "min_image_side": 32},
        }
    )
    data = collect(config)
    assert sorted(Path(i.path).name for i in data.items) == ["img0.png", "img2.png"]
    assert any("img1.png: excluded from training" in line for line in data.skipped)

    actions = _menu(qtbot, tab, 1)
    assert "Include in training" in actions
    actions["Include in training"].trigger()
    qtbot.waitUntil(lambda: tab.session.items[1].usable, timeout=TIMEOUT)
    assert not (folder / EXCLUDE_FILE).exists()


def test_delete_caption_open_and_show_in_folder(qtbot, tab, tmp_path, monkeypatch):
    folder = _dataset(tmp_path / "ds")
    _open(qtbot, tab, folder, 3)
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    _menu(qtbot, tab, 0)["Open"].trigger()
    _menu(qtbot, tab, 0)["Show in folder"].trigger()
    assert [Path(p) for p in opened] == [(folder / "img0.png").resolve(), folder.resolve()]
    _menu(qtbot, tab, 2)["Delete caption"].trigger()
    qtbot.waitUntil(lambda: not (folder / "img2.txt").exists(), timeout=TIMEOUT)
    assert tab.session.items[2].caption == "" and "delete caption of img2.png" in tab.undo_action.toolTip()
    tab.undo_action.trigger()
    qtbot.waitUntil(lambda: (folder / "img2.txt").is_file(), timeout=TIMEOUT)
    assert (folder / "img2.txt").read_text(encoding="utf-8") == "colour 2"


def test_double_click_enlarges_the_picture(qtbot, tab, tmp_path):
    folder = _dataset(tmp_path / "ds")
    _open(qtbot, tab, folder, 3)
    rect = tab.grid.visualRect(tab.proxy.index(1, 0))
    qtbot.mouseClick(tab.grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # a real double
    qtbot.mouseDClick(tab.grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())  # click: press first
    assert tab.viewer is not None and tab.viewer.isVisible()
    assert tab.viewer.preview.pixmap().size().width() == 320, "the picture itself, not the thumbnail"
    assert tab.viewer.caption.text() == "colour 1"
    tab.viewer.close()


def test_a_too_small_picture_shows_its_thumbnail_with_a_badge(qtbot, tab, tmp_path):
    folder = _dataset(tmp_path / "ds", sizes=((320, 320), (96, 96)))
    _open(qtbot, tab, folder, 2)
    small = tab.proxy.index(1, 0)
    assert not tab.session.items[1].usable and small.data(BadgeRole) == "error"
    assert isinstance(small.data(Qt.ItemDataRole.DecorationRole), QPixmap), "not the warning icon"


def test_the_selection_does_not_tint_the_picture(qtbot, tab, tmp_path):
    folder = _dataset(tmp_path / "ds")
    _open(qtbot, tab, folder, 3)
    tab.select_row(0)
    tab.grid.selectionModel().select(tab.proxy.index(1, 0), tab.grid.selectionModel().SelectionFlag.Select)
    qtbot.wait(50)
    image = tab.grid.viewport().grab().toImage()
    if SHOTS:
        tab.grab().save(os.path.join(SHOTS, "dataset-selection.png"))
    for row in range(3):
        rect = tab.grid.visualRect(tab.proxy.index(row, 0))
        pixel = image.pixelColor(rect.center().x(), rect.top() + 60)
        got = (pixel.red(), pixel.green(), pixel.blue())
        assert all(abs(a - b) <= 3 for a, b in zip(got, COLOURS[row])), (row, got, COLOURS[row])


def test_the_last_dataset_reopens(qtbot, tab, tmp_path):
    folder = _dataset(tmp_path / "ds")
    _open(qtbot, tab, folder, 3)
    again = DatasetTab()
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.session.root == folder.resolve(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not again.session.scanning and again.model.rowCount() == 3, timeout=TIMEOUT)


def test_the_scanning_line_clears_when_the_scan_ends(qtbot, tab, tmp_path):
    folder = _dataset(tmp_path / "ds")
    _open(qtbot, tab, folder, 3)
    qtbot.waitUntil(lambda: tab.counts_label.text() == "3 images, 3 usable, 0 without a caption", timeout=TIMEOUT)
    assert "Scanning" not in tab.status.text()


def test_the_caption_box_shows_the_files_text_for_pictures_sharing_a_caption(qtbot, tab, tmp_path):
    """a.png and a.jpg both use a.txt: after editing one, the other shows what the file now says."""
    folder = tmp_path / "ds"
    folder.mkdir()
    Image.new("RGB", (320, 320), COLOURS[0]).save(folder / "a.png")
    Image.new("RGB", (320, 320), COLOURS[1]).save(folder / "a.jpg")
    (folder / "a.txt").write_text("old words", encoding="utf-8")
    _open(qtbot, tab, folder, 2)
    rows = {tab.proxy.index(r, 0).data(Qt.ItemDataRole.DisplayRole): r for r in range(2)}
    tab.select_row(rows["a.png"])
    qtbot.waitUntil(lambda: tab.editor.toPlainText() == "old words", timeout=TIMEOUT)
    tab.editor.setFocus()
    qtbot.keyClicks(tab.editor, ", new")
    tab.select_row(rows["a.jpg"])  # switching saves the edit
    qtbot.waitUntil(lambda: (folder / "a.txt").read_text(encoding="utf-8") == "old words, new", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: tab.editor.toPlainText() == "old words, new", timeout=TIMEOUT)
