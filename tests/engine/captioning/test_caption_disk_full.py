"""A full disk during a caption job stops the job with one sentence (disk_full); what was
written stays; a read-only single caption is still just skipped."""

from __future__ import annotations

import errno

import pytest
from disk_faults import fail_writes_of
from PIL import Image

from app.core.dataset.caption_config import CaptionRequest
from app.core.errors import ErrorKind
from app.core.files import SaveError
from app.engine.captioning import load_captioner, run_captioning


def _pictures(folder):
    for name, colour in (("a", (250, 0, 0)), ("b", (0, 250, 0)), ("c", (0, 0, 250))):
        Image.new("RGB", (300, 300), colour).save(folder / f"{name}.png")


def test_a_full_disk_stops_the_caption_job_with_one_sentence(tiny_wd, tmp_path, monkeypatch):
    from app.worker.loop import describe_error

    _pictures(tmp_path)
    request = CaptionRequest.from_dict({"folder": str(tmp_path), "model": str(tiny_wd), "batch_size": 1})
    fail_writes_of(monkeypatch, errno.ENOSPC, ".b.txt.")
    with pytest.raises(SaveError) as caught:
        run_captioning(load_captioner(request), request)
    assert caught.value.kind is ErrorKind.DISK_FULL
    assert str(caught.value).startswith(f"Disk full while saving {tmp_path / 'b.txt'}: free 0.1 GB and try again")
    assert describe_error(caught.value)["kind"] == "disk_full"
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["a.txt"]  # written before the disk filled


def test_one_caption_in_a_read_only_place_is_skipped_and_the_rest_written(tiny_wd, tmp_path, monkeypatch):
    _pictures(tmp_path)
    request = CaptionRequest.from_dict({"folder": str(tmp_path), "model": str(tiny_wd), "batch_size": 1})
    fail_writes_of(monkeypatch, errno.EACCES, ".b.txt.")
    summary = run_captioning(load_captioner(request), request)
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["a.txt", "c.txt"]
    assert [s.path.name for s in summary.skipped] == ["b.png"]
    assert "could not save the caption (Permission denied)" in summary.skipped[0].reason
