"""The Dataset tab with pytest-qt: drop a folder, thumbnails, caption edits saved, tag rename, undo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dataset_files import make_bad_dataset, make_good_dataset
from PySide6.QtCore import Qt
from qt_helpers import all_thumbnails_loaded, caption_files, drop

from app.core.dataset.problems import ProblemKind
from app.ui.dataset.dataset_tab import DatasetTab
from app.ui.dataset.list_model import BadgeRole
from app.ui.dataset.thumbnails import thumbnail_cache_dir

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


def open_and_wait(qtbot, tab, folder: Path, count: int) -> None:
    drop(tab, [folder])
    qtbot.waitUntil(lambda: not tab.session.scanning and tab.model.rowCount() == count, timeout=TIMEOUT)


def test_drop_folder_thumbnails_edit_caption_and_switch_saves(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=5, captions={0: "cat, red", 1: "dog"})
    open_and_wait(qtbot, tab, tmp_path / "ds", 5)
    qtbot.waitUntil(lambda: all_thumbnails_loaded(tab), timeout=TIMEOUT)
    assert len(list(thumbnail_cache_dir().glob("*.png"))) == 5, "thumbnails cached on disk"
    assert tab.session.recent.items()[0] == str((tmp_path / "ds").resolve())

    tab.select_row(0)
    qtbot.waitUntil(lambda: tab.preview.path().endswith("img000.png"), timeout=TIMEOUT)
    assert tab.editor.toPlainText() == "cat, red"
    tab.editor.setFocus()
    qtbot.keyClicks(tab.editor, ", sitting")
    assert (tmp_path / "ds" / "img000.txt").read_text() == "cat, red", "debounced, not saved on each key"
    qtbot.keyClick(tab.grid, Qt.Key.Key_Right)  # keyboard navigation to the next image
    assert tab.current_item().path.name == "img001.png"
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "img000.txt").read_text() == "cat, red, sitting", timeout=TIMEOUT)
    assert tab.editor.toPlainText() == "dog"

    # typing and closing the window without switching: the edit still lands on disk
    tab.editor.setFocus()
    qtbot.keyClicks(tab.editor, ", brown")
    tab.close()
    tab.flush()
    assert (tmp_path / "ds" / "img001.txt").read_text() == "dog, brown"


def test_rename_tag_everywhere_then_undo_restores_every_file(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=4, captions={0: "cat, red", 1: "cat", 2: "red, cat, cat"})
    (tmp_path / "ds" / "img001.txt").write_bytes(b"cat\n")
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").glob("*.txt")}
    open_and_wait(qtbot, tab, tmp_path / "ds", 4)
    qtbot.waitUntil(lambda: dict(tab.tag_panel.tags()).get("cat") == 3, timeout=TIMEOUT)
    assert tab.tag_panel.tags()[0] == ("cat", 3), "most frequent first"

    tab.tag_panel.renameRequested.emit("cat", "feline")
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "img002.txt").read_text() == "red, feline", timeout=TIMEOUT)
    assert (tmp_path / "ds" / "img000.txt").read_text() == "feline, red"
    assert (tmp_path / "ds" / "img001.txt").read_text() == "feline"
    qtbot.waitUntil(lambda: dict(tab.tag_panel.tags()).get("feline") == 3, timeout=TIMEOUT)
    assert "cat" not in dict(tab.tag_panel.tags())
    assert tab.undo_action.isEnabled() and "rename tag 'cat' to 'feline'" in tab.undo_action.toolTip()

    tab.tag_panel.deleteRequested.emit("red")
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "img000.txt").read_text() == "feline", timeout=TIMEOUT)
    tab.undo_action.trigger()
    tab.undo_action.trigger()
    tab.session.flush()
    qtbot.waitUntil(lambda: caption_files(tmp_path / "ds") == before, timeout=TIMEOUT)
    qtbot.waitUntil(tab.redo_action.isEnabled, timeout=TIMEOUT)
    assert tab.session.items[1].caption == "cat", "the in-memory captions follow the undo"
    tab.redo_action.trigger()
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "img001.txt").read_text() == "feline", timeout=TIMEOUT)


def test_filter_box_tag_click_and_problem_badges(qtbot, tab, tmp_path):
    expect = make_bad_dataset(tmp_path / "ds")
    open_and_wait(qtbot, tab, tmp_path / "ds", len(expect))
    qtbot.waitUntil(lambda: dict(tab.tag_panel.tags()).get("twin") == 2, timeout=TIMEOUT)
    badges = {
        tab.model.item(r).path.name: tab.model.data(tab.model.index(r), BadgeRole) for r in range(tab.model.rowCount())
    }
    assert badges["zero.png"] == "error" and badges["cmyk.jpg"] == "note" and badges["good.jpg"] == ""
    qtbot.waitUntil(
        lambda: (
            tab.model.item(tab.model.rowCount() - 1) is not None
            and any(i.has_problem(ProblemKind.DUPLICATE) for i in tab.session.items)
        ),
        timeout=TIMEOUT,
    )

    tab.filter_box.setText("is:unusable")
    assert {i.path.name for i in tab.shown_items()} == {
        "zero.png",
        "notes.jpg",
        "cut_jpeg.jpg",
        "cut_png.png",
        "cut_webp.webp",
        "damaged.png",
        "tiny.png",
        "bomb.png",
        "dangling.jpg",
    }
    tab.filter_box.setText("problem:duplicate")
    assert [i.path.name for i in tab.shown_items()] == ["dup_b.png"]
    tab.filter_box.setText("has:caption -tag:twin")
    assert {i.path.name for i in tab.shown_items()} == {"good.jpg", "latin1.png"}
    tab.filter_box.clear()
    row = [t for t, _ in tab.tag_panel.tags()].index("solo")
    tab.tag_panel.table.clicked.emit(tab.tag_panel.proxy.index(row, 0))
    assert tab.filter_box.text() == "tag:solo"
    assert [i.path.name for i in tab.shown_items()] == ["good.jpg"]


def test_batch_dialog_counts_changes_before_applying(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=4, captions={0: "a, b", 1: "b", 2: "c"})
    open_and_wait(qtbot, tab, tmp_path / "ds", 4)
    dialog = tab.make_batch_dialog()
    qtbot.addWidget(dialog)
    dialog.operation.setCurrentIndex(0)  # add at the front
    dialog.tags.setText("sks")
    dialog.update_plan()
    assert "4 of 4 caption files will change" in dialog.summary.text()
    dialog.operation.setCurrentIndex(2)  # remove
    dialog.tags.setText("b")
    dialog.update_plan()
    assert "2 of 4 caption files will change" in dialog.summary.text()
    dialog.regex.setChecked(True)
    dialog.tags.setText("(")
    dialog.update_plan()
    assert "not a valid regular expression" in dialog.summary.text() and not dialog.apply_button.isEnabled()
    dialog.tags.setText("[bc]")
    dialog.update_plan()
    assert "3 of 4" in dialog.summary.text()
    dialog.apply_button.click()
    qtbot.waitUntil(
        lambda: caption_files(tmp_path / "ds") == {"img000.txt": b"a", "img001.txt": b"", "img002.txt": b""},
        timeout=TIMEOUT,
    )
    assert not (tmp_path / "ds" / "img003.txt").exists()


def test_batch_dialog_applies_on_enter_and_escape_cancels(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=2, captions={0: "a", 1: "b"})
    open_and_wait(qtbot, tab, tmp_path / "ds", 2)
    dialog = tab.make_batch_dialog()
    qtbot.addWidget(dialog)
    dialog.show()
    cancel = dialog.buttons.button(dialog.buttons.StandardButton.Cancel)
    assert dialog.apply_button.isDefault() and not cancel.isDefault() and not cancel.autoDefault()
    dialog.operation.setCurrentIndex(0)  # add at the front
    dialog.tags.setFocus()
    qtbot.keyClicks(dialog.tags, "sks")
    qtbot.keyClick(dialog.tags, Qt.Key.Key_Escape)  # Escape cancels: nothing written
    assert dialog.result() == dialog.DialogCode.Rejected and not dialog.isVisible()
    assert caption_files(tmp_path / "ds") == {"img000.txt": b"a", "img001.txt": b"b"}

    dialog = tab.make_batch_dialog()
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.operation.setCurrentIndex(0)
    dialog.tags.setFocus()
    qtbot.keyClicks(dialog.tags, "sks")
    qtbot.keyClick(dialog.tags, Qt.Key.Key_Return)  # at once, before the plan's refresh timer: Enter applies
    assert dialog.result() == dialog.DialogCode.Accepted
    qtbot.waitUntil(
        lambda: caption_files(tmp_path / "ds") == {"img000.txt": b"sks, a", "img001.txt": b"sks, b"}, timeout=TIMEOUT
    )


def test_read_only_caption_reports_error_and_keeps_edit_for_retry(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=2, captions={0: "locked"})
    os.chmod(tmp_path / "ds" / "img000.txt", 0o444)
    open_and_wait(qtbot, tab, tmp_path / "ds", 2)
    tab.select_row(0)
    tab.editor.setFocus()
    qtbot.keyClicks(tab.editor, ", more")
    tab.select_row(1)
    qtbot.waitUntil(lambda: "read-only" in tab.save_error.text(), timeout=TIMEOUT)
    assert str(tmp_path / "ds" / "img000.txt") in tab.save_error.text()
    assert tab.retry_button.isVisible()
    assert tab.session.items[0].caption == "locked, more"
    assert (tmp_path / "ds" / "img000.txt").read_text() == "locked"
    os.chmod(tmp_path / "ds" / "img000.txt", 0o644)
    tab.retry_button.click()
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "img000.txt").read_text() == "locked, more", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not tab.retry_button.isVisible(), timeout=TIMEOUT)


def test_drop_pictures_on_open_dataset_copies_them(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=1)
    outside = make_good_dataset(tmp_path / "elsewhere", count=2, captions={0: "from outside"})
    (tmp_path / "elsewhere" / "img000.png").touch()
    originals = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outside}
    open_and_wait(qtbot, tab, tmp_path / "ds", 1)
    drop(tab, outside)
    qtbot.waitUntil(lambda: tab.model.rowCount() == 3, timeout=TIMEOUT)
    names = sorted(p.name for p in (tmp_path / "ds").iterdir())
    assert names == ["img000-2.png", "img000-2.txt", "img000.png", "img001.png"], "never overwrites"
    assert (tmp_path / "ds" / "img000-2.txt").read_text() == "from outside"
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outside} == originals
    assert tab.session.item_for((tmp_path / "ds" / "img000-2.png").resolve()).caption == "from outside"


def test_caption_editor_completes_tags(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=2, captions={0: "long hair, smile", 1: "long hair"})
    open_and_wait(qtbot, tab, tmp_path / "ds", 2)
    qtbot.waitUntil(lambda: bool(tab.tag_panel.tags()), timeout=TIMEOUT)
    tab.select_row(1)
    tab.editor.setFocus()
    qtbot.keyClicks(tab.editor, ", smi")
    assert tab.editor.completer.currentCompletion() == "smile"
    tab.editor.insert_completion("smile")
    assert tab.editor.toPlainText() == "long hair, smile"


def test_renaming_a_tag_updates_an_active_tag_filter(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=3, captions={0: "cat, red", 1: "cat", 2: "dog"})
    open_and_wait(qtbot, tab, tmp_path / "ds", 3)
    tab.filter_box.setText("tag:cat")
    qtbot.waitUntil(lambda: tab.proxy.rowCount() == 2, timeout=TIMEOUT)
    tab.tag_panel.renameRequested.emit("cat", "feline")
    assert tab.filter_box.text() == "tag:feline"
    qtbot.waitUntil(lambda: (tmp_path / "ds" / "img001.txt").read_text() == "feline", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: tab.proxy.rowCount() == 2, timeout=TIMEOUT)  # still the same two pictures
    tab.filter_box.setText("-tag:dog tag:feline")
    tab.tag_panel.deleteRequested.emit("dog")
    assert tab.filter_box.text() == "tag:feline", "a deleted tag leaves the filter"


def test_counts_follow_captions_written_and_pictures_added(qtbot, tab, tmp_path):
    make_good_dataset(tmp_path / "ds", count=2, captions={0: "cat"})
    open_and_wait(qtbot, tab, tmp_path / "ds", 2)
    qtbot.waitUntil(lambda: tab.counts_label.text() == "2 images, 2 usable, 1 without a caption", timeout=TIMEOUT)
    tab.select_row(1)
    qtbot.waitUntil(
        lambda: tab.current_item() is not None and tab.current_item().path.name == "img001.png", timeout=TIMEOUT
    )
    tab.editor.setFocus()
    qtbot.keyClicks(tab.editor, "dog")
    tab.editor.flush()
    qtbot.waitUntil(lambda: tab.counts_label.text() == "2 images, 2 usable, 0 without a caption", timeout=TIMEOUT)
    drop(tab, make_good_dataset(tmp_path / "more", count=1))
    qtbot.waitUntil(lambda: tab.counts_label.text() == "3 images, 3 usable, 1 without a caption", timeout=TIMEOUT)
