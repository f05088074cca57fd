"""Caption sidecars, tag operations, and undo/redo that restores files on disk."""

from __future__ import annotations

import os
import stat

import pytest
from dataset_files import make_good_dataset

from app.core.dataset.caption_store import CaptionStore
from app.core.dataset.captions import (
    CaptionWriteError,
    join_tags,
    read_caption,
    split_tags,
    tag_frequencies,
    write_caption,
)
from app.core.dataset.scan import ProblemKind, scan_dataset
from app.core.dataset.tag_ops import (
    Position,
    TagOpError,
    add_tags,
    dedupe_tags,
    plan_operation,
    remove_tags,
    rename_tag,
    replace_text,
    sort_tags,
    trigger_to_front,
)


def test_read_and_write_captions(tmp_path):
    p = tmp_path / "a.txt"
    assert read_caption(p) == ("", None)
    write_caption(p, "cat, dog")
    assert p.read_bytes() == b"cat, dog"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644, "not the 0600 of the temp file"
    os.chmod(p, 0o640)
    write_caption(p, "cat")
    assert stat.S_IMODE(p.stat().st_mode) == 0o640, "permissions kept"
    p.write_bytes("\ufeffwith bom, x\n".encode("utf-8"))
    assert read_caption(p) == ("with bom, x", None)
    p.write_bytes(b"caf\xe9")
    text, problem = read_caption(p)
    assert text == "caf\ufffd" and problem.kind is ProblemKind.CAPTION_NOT_UTF8 and not problem.blocking
    assert str(p) in problem.message
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_write_refuses_read_only_file_and_missing_folder(tmp_path):
    p = tmp_path / "ro.txt"
    p.write_text("old")
    os.chmod(p, 0o444)
    with pytest.raises(CaptionWriteError, match="read-only") as info:
        write_caption(p, "new")
    assert str(p) in str(info.value)
    assert p.read_text() == "old"
    with pytest.raises(CaptionWriteError, match="folder does not exist"):
        write_caption(tmp_path / "nope" / "x.txt", "a")


def test_split_join_and_frequencies():
    assert split_tags(" a, b ,, c,\nd ") == ["a", "b", "c", "d"]
    assert split_tags("") == []
    assert split_tags("a b  c", " ") == ["a", "b", "c"]
    assert split_tags("a|b", " | ") == ["a", "b"]
    assert join_tags(["a", " b", "", "c"]) == "a, b, c"
    assert join_tags(["a", "b"], "|") == "a|b"
    freq = tag_frequencies(["a, b, a", "b, c", ""])
    assert freq == {"a": 1, "b": 2, "c": 1}


@pytest.mark.parametrize(
    "op, before, after",
    [
        (add_tags(["sks"], Position.FRONT), "cat, sks, dog", "sks, cat, dog"),
        (add_tags(["x", "y"]), "cat, x", "cat, x, y"),
        (remove_tags(["dog"]), "cat, dog, dog", "cat"),
        (remove_tags(["DOG"], ignore_case=True), "cat, Dog", "cat"),
        (remove_tags([r"\d+girls?"], regex=True), "1girl, 2girls, girl", "girl"),
        (rename_tag("cat", "feline"), "cat, black cat, dog", "feline, black cat, dog"),
        (rename_tag("cat", "dog"), "cat, small, dog", "small, dog"),
        (rename_tag("cat", ""), "cat, dog", "dog"),
        (replace_text("cat", "dog"), "cat, black cat", "dog, black dog"),
        (
            replace_text(r"(\w+) hair", r"hair \1", regex=True, whole_tag=True),
            "red hair, long red hair",
            "hair red, long red hair",
        ),
        (replace_text(r"\s+", "_", regex=True), "long hair, cat", "long_hair, cat"),
        (dedupe_tags(), "a, b, a, c, b", "a, b, c"),
        (dedupe_tags(ignore_case=True), "A, a", "A"),
        (sort_tags(), "b, C, a", "a, b, C"),
        (sort_tags(keep_first=1), "sks, b, a", "sks, a, b"),
        (trigger_to_front("sks"), "a, sks", "sks, a"),
        (trigger_to_front("sks"), "a", "sks, a"),
        (trigger_to_front("sks", add_if_missing=False), "a", "a"),
    ],
)
def test_tag_operations(op, before, after):
    assert op.apply(before) == after


def test_untouched_caption_keeps_its_exact_text_and_bad_regex_is_named():
    text = "cat,dog ,  bird"
    assert remove_tags(["zebra"]).apply(text) is text
    with pytest.raises(TagOpError, match="not a valid regular expression"):
        replace_text("(", "x", regex=True)
    with pytest.raises(TagOpError, match="at least one tag"):
        add_tags([])


def _dataset(tmp_path, captions):
    make_good_dataset(
        tmp_path, count=len(captions), size=(260, 260), captions={i: c for i, c in enumerate(captions) if c is not None}
    )
    return scan_dataset(tmp_path)


def test_plan_counts_changes_and_apply_then_undo_restores_every_file(tmp_path):
    ds = _dataset(tmp_path, ["cat, dog", "dog", None, "bird"])
    (tmp_path / "img001.txt").write_bytes(b"dog\n")  # exact bytes must come back on undo
    ds = scan_dataset(tmp_path)
    store = CaptionStore(ds)
    plan = store.plan(rename_tag("dog", "puppy"))
    assert plan.count == 2
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.txt")}
    result = store.apply(plan)
    assert result.ok and result.written == 2
    assert (tmp_path / "img000.txt").read_text() == "cat, puppy"
    assert ds.items[1].caption == "puppy"
    assert store.apply(add_tags(["sks"], "front")).written == 4
    assert (tmp_path / "img002.txt").read_text() == "sks"
    store.undo()
    assert not (tmp_path / "img002.txt").exists(), "undo removes a file that did not exist"
    store.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.txt")} == before
    assert [i.caption for i in ds.items] == ["cat, dog", "dog", "", "bird"]
    store.redo()
    assert (tmp_path / "img001.txt").read_text() == "puppy"
    assert store.can_redo() and store.redo_label() == "add 'sks' at the front"


def test_history_keeps_at_least_30_steps(tmp_path):
    ds = _dataset(tmp_path, ["a"])
    store = CaptionStore(ds)
    for i in range(35):
        store.apply(add_tags([f"t{i}"]))
    assert len(store.history_labels()) == 35
    for _ in range(35):
        assert store.undo().ok
    assert (tmp_path / "img000.txt").read_text() == "a"
    assert store.undo() is None


def test_editor_edits_merge_and_failed_write_stays_pending(tmp_path):
    ds = _dataset(tmp_path, ["a", "b"])
    store = CaptionStore(ds)
    item = ds.items[0]
    assert store.set_caption(item, "a, x") is None
    assert store.set_caption(item, "a, x, y") is None
    assert store.history_labels() == ["edit caption of img000.png"], "typing in one image is one step"
    os.chmod(item.caption_path, 0o444)
    error = store.set_caption(item, "changed")
    assert error and "read-only" in error and str(item.caption_path) in error
    assert item.caption == "changed" and store.is_pending(item)
    assert item.caption_path.read_text() == "a, x, y"
    os.chmod(item.caption_path, 0o644)
    assert store.retry_pending().written == 1
    assert item.caption_path.read_text() == "changed" and not store.is_pending(item)


def test_batch_skips_non_utf8_caption_and_reports_failed_writes(tmp_path):
    ds = _dataset(tmp_path, ["a", "b", "c"])
    (tmp_path / "img001.txt").write_bytes(b"caf\xe9")
    os.chmod(tmp_path / "img002.txt", 0o444)
    ds = scan_dataset(tmp_path)
    store = CaptionStore(ds)
    result = store.apply(add_tags(["new"]))
    assert result.written == 1
    assert [i.path.name for i, _ in result.skipped] == ["img001.png"]
    assert (tmp_path / "img001.txt").read_bytes() == b"caf\xe9", "never overwritten silently"
    assert [i.path.name for i, _ in result.failed] == ["img002.png"] and "read-only" in result.failed[0][1]
    assert ds.items[2].caption == "c, new" and store.is_pending(ds.items[2])
    # saving on purpose converts the caption to UTF-8 and clears the problem
    assert store.set_caption(ds.items[1], "café") is None
    assert (tmp_path / "img001.txt").read_bytes() == "café".encode()
    assert not ds.items[1].has_problem(ProblemKind.CAPTION_NOT_UTF8)
    store.undo()
    assert (tmp_path / "img001.txt").read_bytes() == b"caf\xe9"
    assert ds.items[1].has_problem(ProblemKind.CAPTION_NOT_UTF8)


def test_plan_on_a_selection(tmp_path):
    ds = _dataset(tmp_path, ["a", "a", "a"])
    plan = plan_operation(remove_tags(["a"]), ds.items[:2])
    assert plan.count == 2 and plan.label == "remove 'a'"
