"""The Dataset tab's Masks toggle: the loss mask over the preview, pictures without one flagged."""

from __future__ import annotations

import os

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from qt_helpers import drop

from app.core.dataset.problems import ProblemKind
from app.ui.dataset.dataset_tab import DatasetTab

TIMEOUT = 20_000


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


def _kinds(tab, name):
    item = next(i for i in tab.session.items if i.path.name == name)
    return {p.kind for p in item.problems}


def test_masks_toggle_shows_the_mask_and_flags_pictures_without_one(qtbot, tab, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    for name in ("masked", "plain", "wrong", "linked"):
        Image.new("RGB", (384, 256), (30, 120, 200)).save(folder / f"{name}.png")
    mask = Image.new("L", (384, 256), 0)
    mask.paste(255, (192, 0, 384, 256))  # the right half is trained
    mask.save(folder / "masked.mask.png")
    Image.new("L", (10, 10), 255).save(folder / "wrong.mask.png")
    mask.save(tmp_path / "elsewhere.png")
    os.symlink(tmp_path / "elsewhere.png", folder / "linked.mask.png")
    drop(tab, [folder])
    qtbot.waitUntil(lambda: not tab.session.scanning and tab.model.rowCount() == 4, timeout=TIMEOUT)
    assert all(not _kinds(tab, f"{n}.png") & {ProblemKind.NO_MASK} for n in ("masked", "plain"))  # off: no flags

    tab.select_row(next(r for r, i in enumerate(tab.session.items) if i.path.name == "masked.png"))
    qtbot.waitUntil(lambda: tab.preview.path().endswith("masked.png"), timeout=TIMEOUT)
    assert tab.preview.overlay().isNull()
    tab.masks.toggle.setChecked(True)
    qtbot.waitUntil(lambda: not tab.preview.overlay().isNull(), timeout=TIMEOUT)
    overlay = tab.preview.overlay().toImage()
    left, right = overlay.pixelColor(10, 32), overlay.pixelColor(overlay.width() - 10, 32)
    assert left.alpha() > 100 and right.alpha() == 0  # the untrained half is tinted, the trained half clear

    qtbot.waitUntil(lambda: ProblemKind.NO_MASK in _kinds(tab, "plain.png"), timeout=TIMEOUT)
    assert ProblemKind.MASK_UNUSABLE in _kinds(tab, "wrong.png")
    assert ProblemKind.MASK_UNUSABLE in _kinds(tab, "linked.png")
    assert not _kinds(tab, "masked.png") & {ProblemKind.NO_MASK, ProblemKind.MASK_UNUSABLE}
    plain = next(i for i in tab.session.items if i.path.name == "plain.png")
    assert [p.message for p in plain.problems if p.kind is ProblemKind.NO_MASK] == [
        f"{plain.path}: no mask (no plain.mask.png, no masks/ file, no alpha channel); it trains on the whole picture"
    ]
    assert all(i.usable for i in tab.session.items)  # a flag, never a reason to skip the picture
    qtbot.waitUntil(lambda: "3 of 4 pictures have no usable mask" in tab.status.text(), timeout=TIMEOUT)

    tab.masks.toggle.setChecked(False)
    qtbot.waitUntil(lambda: ProblemKind.NO_MASK not in _kinds(tab, "plain.png"), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: tab.preview.overlay().isNull(), timeout=TIMEOUT)


@pytest.mark.slow
def test_auto_mask_runs_clipseg_in_the_worker_and_the_new_masks_show(qtbot, tmp_path):
    from app.engine.tiny_clipseg import write_tiny_clipseg
    from app.ui.dataset.dataset_ops import DatasetSession
    from app.ui.jobs import JobTracker
    from app.ui.worker_client import WorkerClient

    model = write_tiny_clipseg(tmp_path / "clipseg")
    folder = tmp_path / "ds"
    folder.mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (320, 256), (200, 40, 40)).save(folder / f"{name}.png")
    client = WorkerClient(env={"OMP_NUM_THREADS": "1"})
    try:
        tab = DatasetTab(DatasetSession(JobTracker(client)))
        qtbot.addWidget(tab)
        tab.show()
        drop(tab, [folder])
        qtbot.waitUntil(lambda: not tab.session.scanning and tab.model.rowCount() == 2, timeout=TIMEOUT)
        tab.masks.toggle.setChecked(True)
        qtbot.waitUntil(lambda: ProblemKind.NO_MASK in _kinds(tab, "a.png"), timeout=TIMEOUT)
        tab.masks.auto.model = str(model)
        qtbot.mouseClick(tab.masks.button, Qt.MouseButton.LeftButton)
        dialog = tab.masks.dialog
        assert dialog is not None and dialog.isVisible()
        dialog.setTextValue("the cat")
        said = []
        tab.session.message.connect(said.append)
        dialog.accept()
        assert tab.masks.auto.job is not None
        qtbot.waitUntil(lambda: tab.masks.auto.job is None, timeout=180_000)
        assert any(line.startswith("automatic masking done: 2 mask(s) written") for line in said), said
        assert (folder / "a.mask.png").is_file() and (folder / "b.mask.png").is_file()
        qtbot.waitUntil(lambda: ProblemKind.NO_MASK not in _kinds(tab, "a.png"), timeout=TIMEOUT)
        tab.flush()
        tab.thumbnails.wait()
    finally:
        client.shutdown(wait=True)
