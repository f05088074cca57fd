"""Captions and pictures that are not plain files inside the dataset folder (issue 10, item 2).

A caption that is a link to a key file must never have its text read (it would end up in
the adapter's ``ss_tag_frequency``); a FIFO must not hang the scan; ``/dev/zero`` must not
eat memory; a huge caption is refused with a note. The scan goes on for every other picture.
"""

from __future__ import annotations

import json
import os

import pytest
from dataset_files import make_good_dataset

from app.cli import main
from app.core.dataset.captions import MAX_CAPTION_BYTES
from app.core.dataset.image_check import inspect_image
from app.core.dataset.problems import ProblemKind
from app.core.dataset.scan import scan_dataset

pytestmark = pytest.mark.timeout(120)  # a FIFO that is opened would block here until then

SECRET = "BEGIN PRIVATE KEY secret-words"


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    make_good_dataset(root, count=6, captions={0: "good caption"})
    (tmp_path / "id_key").write_text(SECRET, encoding="utf-8")
    return root


def _caption_notes(ds, name):
    item = next(i for i in ds.items if i.path.name == name)
    return item, [p for p in item.problems if p.kind is ProblemKind.CAPTION_UNREADABLE]


def test_caption_link_out_of_the_folder_is_refused_and_never_read(dataset, tmp_path):
    os.symlink(tmp_path / "id_key", dataset / "img001.txt")
    ds = scan_dataset(dataset)
    item, notes = _caption_notes(ds, "img001.png")
    assert item.caption == "" and item.usable
    assert notes and "outside the folder" in notes[0].message and str(dataset / "img001.txt") in notes[0].message
    assert SECRET not in json.dumps([i.caption for i in ds.items])
    assert next(i for i in ds.items if i.path.name == "img000.png").caption == "good caption"


def test_caption_link_inside_the_folder_is_read(dataset):
    (dataset / "shared.txt").write_text("shared words", encoding="utf-8")
    os.symlink("shared.txt", dataset / "img002.txt")
    item, notes = _caption_notes(scan_dataset(dataset), "img002.png")
    assert item.caption == "shared words" and not notes


def test_fifo_caption_does_not_hang_dataset_check(dataset, capsys):
    os.mkfifo(dataset / "img001.txt")
    assert main(["dataset", "check", str(dataset), "--min-side", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    row = next(f for f in report["files"] if f["path"] == "img001.png")
    assert any("named pipe (FIFO), not a regular file" in p["message"] for p in row["problems"])
    assert report["usable"] == 6


def test_caption_linked_to_dev_zero_is_refused(dataset):
    os.symlink("/dev/zero", dataset / "img001.txt")
    item, notes = _caption_notes(scan_dataset(dataset), "img001.png")
    assert item.caption == "" and notes and "/dev/zero" in notes[0].message


def test_oversize_caption_is_refused_with_a_note(dataset):
    (dataset / "img003.txt").write_bytes(b"tag, " * (MAX_CAPTION_BYTES // 5 + 10))
    item, notes = _caption_notes(scan_dataset(dataset), "img003.png")
    assert item.caption == ""
    assert notes and "over the 64 KB limit" in notes[0].message and "used without a caption" in notes[0].message


def test_caption_of_exactly_the_cap_is_read(dataset):
    (dataset / "img003.txt").write_bytes(b"a" * MAX_CAPTION_BYTES)
    item, notes = _caption_notes(scan_dataset(dataset), "img003.png")
    assert len(item.caption) == MAX_CAPTION_BYTES and not notes


def test_caption_symlink_loop_is_refused(dataset):
    os.symlink("loop-b.txt", dataset / "img004.txt")
    os.symlink("img004.txt", dataset / "loop-b.txt")
    item, notes = _caption_notes(scan_dataset(dataset), "img004.png")
    assert notes and "symbolic link loop" in notes[0].message


def test_special_and_linked_pictures_are_refused_without_being_opened(dataset, tmp_path):
    os.mkfifo(dataset / "pipe.png")
    os.symlink("/dev/null", dataset / "device.png")
    os.symlink("/dev/zero", dataset / "zero.jpg")
    outside = tmp_path / "elsewhere.png"
    (dataset / "img000.png").replace(outside)
    os.symlink(outside, dataset / "img000.png")
    os.symlink("loop2.png", dataset / "loop1.png")
    os.symlink("loop1.png", dataset / "loop2.png")
    ds = scan_dataset(dataset)
    by_name = {i.path.name: i for i in ds.items}
    expect = {
        "pipe.png": "named pipe (FIFO)",
        "device.png": "a link to /dev/null, outside the folder",
        "zero.jpg": "a link to /dev/zero, outside the folder",
        "img000.png": "outside the folder",
        "loop1.png": "symbolic link loop",
    }
    for name, words in expect.items():
        item = by_name[name]
        assert not item.usable, name
        assert item.problems[0].kind is ProblemKind.UNREADABLE and words in item.problems[0].message, name
    assert len(ds.usable_items()) == 5
    # without a folder to stay in (one picture checked on its own) the device itself is refused
    alone = inspect_image(dataset / "device.png")
    assert "a device, not a regular file" in alone.problems[0].message


def test_caption_store_undo_never_copies_a_linked_file(dataset, tmp_path):
    """Saving over a caption that links out replaces the link; undo must not write the key's text."""
    from app.core.dataset.caption_store import CaptionStore

    os.symlink(tmp_path / "id_key", dataset / "img001.txt")
    ds = scan_dataset(dataset)
    store = CaptionStore(ds)
    item = next(i for i in ds.items if i.path.name == "img001.png")
    assert store.set_caption(item, "my words") is None
    assert (dataset / "img001.txt").read_text(encoding="utf-8") == "my words"
    assert (tmp_path / "id_key").read_text(encoding="utf-8") == SECRET, "the link's target is untouched"
    store.undo()
    assert not (dataset / "img001.txt").exists() or SECRET not in (dataset / "img001.txt").read_text("utf-8")


def test_caption_reached_through_a_linked_folder_is_refused(dataset, tmp_path):
    """A link on the way (not the last name) leads out too: the opened file's real place is checked."""
    from app.core.dataset.captions import read_caption

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.txt").write_text(SECRET, encoding="utf-8")
    os.symlink(tmp_path / "outside", dataset / "linked")
    text, problem = read_caption(dataset / "linked" / "a.txt", dataset)
    assert text == "" and problem is not None and "outside the folder" in problem.message
    assert read_caption(dataset / "linked" / "a.txt")[0] == SECRET  # no folder given: nothing to stay in
