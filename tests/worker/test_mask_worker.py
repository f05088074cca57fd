"""The ``mask`` job (CLIPSeg automatic masks) through the real worker, on a tiny random CLIPSeg."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from worker_process import WorkerProcess

from app.core.dataset.masks import MaskSource, find_mask, load_mask
from app.engine.tiny_clipseg import write_tiny_clipseg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_clipseg(tmp_path_factory) -> Path:
    return write_tiny_clipseg(tmp_path_factory.mktemp("clipseg") / "tiny-clipseg")


def test_automatic_masks_are_saved_as_sidecars_and_edited_ones_are_kept(tiny_clipseg, tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    for name, size in (("wide", (320, 256)), ("tall", (256, 384)), ("edited", (256, 256))):
        Image.new("RGB", size, (200, 40, 40)).save(ds / f"{name}.png")
    Image.new("L", (256, 256), 77).save(ds / "edited.mask.png")  # the user's own mask
    (ds / "broken.png").write_bytes(b"not a picture")
    worker = WorkerProcess()
    try:
        worker.wait_for(lambda e: e["type"] == "hello")
        job = {"id": "m1", "kind": "mask", "folder": str(ds), "model": str(tiny_clipseg), "prompt": "the cat"}
        done, seen = worker.run_job(job, timeout=180)
        binary = {n: set(Image.open(ds / f"{n}.mask.png").getdata()) for n in ("wide", "tall")}
        edited = Image.open(ds / "edited.mask.png").getextrema()
        again, seen_again = worker.run_job({**job, "id": "m2", "overwrite": True, "threshold": 0.0}, timeout=180)
    finally:
        worker.close()
    assert done["status"] == "done", done
    assert all(values <= {0, 255} for values in binary.values()), binary  # thresholded: kept or not
    saved = {Path(e["image"]).name: e["path"] for e in seen if e["type"] == "artifact" and e["kind"] == "mask"}
    assert sorted(saved) == ["tall.png", "wide.png"]
    for name, size in (("wide", (320, 256)), ("tall", (256, 384))):
        ref = find_mask(ds / f"{name}.png")
        assert ref.source is MaskSource.SIDECAR and str(ref.path) == saved[f"{name}.png"]
        assert load_mask(ref, size).size == size  # the picture's own size: the trainer takes it as it is
    assert edited == (77, 77)  # the user's mask is never replaced unasked
    warnings = [e["message"] for e in seen if e["type"] == "log" and e["level"] == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipped: {ds / 'broken.png'}")
    summary = [e for e in seen if e["type"] == "log" and "written" in e]
    assert summary[-1]["written"] == 2 and summary[-1]["kept"] == 1
    assert [e for e in seen if e["type"] == "progress" and e.get("phase") == "masking"][-1]["step"] == 2

    # A second job reuses the loaded model; overwrite replaces every sidecar, here with the soft mask.
    assert again["status"] == "done", again
    assert not [e for e in seen_again if e["type"] == "progress" and e.get("phase") == "loading"]
    assert sorted(Path(e["image"]).name for e in seen_again if e["type"] == "artifact") == [
        "edited.png",
        "tall.png",
        "wide.png",
    ]
    assert Image.open(ds / "edited.mask.png").getextrema() != (77, 77)


def test_a_bad_mask_job_fails_with_a_sentence(tmp_path):
    worker = WorkerProcess()
    try:
        worker.wait_for(lambda e: e["type"] == "hello")
        done, _ = worker.run_job({"id": "m3", "kind": "mask", "folder": str(tmp_path), "prompt": ""}, timeout=60)
        missing, _ = worker.run_job({"id": "m4", "kind": "mask", "folder": str(tmp_path / "gone")}, timeout=60)
    finally:
        worker.close()
    assert done["status"] == "failed" and done["error"]["kind"] == "bad_input"
    assert done["error"]["message"] == "mask job: prompt must name what to keep in 1 to 200 characters"
    assert missing["status"] == "failed" and missing["error"]["message"] == f"{tmp_path / 'gone'}: no such folder"
