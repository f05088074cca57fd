"""Captioning backends on tiny offline stand-ins, through the real loading and batching code."""

from __future__ import annotations

import os

import pytest
from dataset_files import make_bad_dataset
from PIL import Image

from app.core.configs import ConfigError
from app.core.dataset.caption_config import CaptionBackend, CaptionMode, CaptionRequest, compose_caption
from app.engine.captioning import (
    CaptionCancelled,
    CaptionerError,
    detect_backend,
    load_captioner,
    run_captioning,
)
from app.engine.captioning.blip import BlipCaptioner
from app.engine.captioning.wd_tagger import WdTagger


def _flat(path, color, size=(300, 300)):
    Image.new("RGB", size, color).save(path)
    return path


def _request(folder, model, **kw) -> CaptionRequest:
    return CaptionRequest.from_dict({"folder": str(folder), "model": str(model), **kw})


def test_backend_detection(tiny_blip, tiny_wd, tmp_path):
    assert detect_backend(str(tiny_blip)) is CaptionBackend.BLIP
    assert detect_backend(str(tiny_wd)) is CaptionBackend.WD14
    assert detect_backend("Salesforce/blip-image-captioning-large") is CaptionBackend.BLIP
    assert detect_backend("SmilingWolf/wd-vit-tagger-v3") is CaptionBackend.WD14
    assert detect_backend("florence-community/Florence-2-large") is CaptionBackend.FLORENCE
    assert detect_backend("") is CaptionBackend.BLIP
    assert detect_backend("someone/model", "wd14") is CaptionBackend.WD14
    with pytest.raises(CaptionerError, match="cannot tell which captioner"):
        detect_backend("someone/model")
    with pytest.raises(CaptionerError, match="not a known captioning model"):
        detect_backend(str(tmp_path))
    with pytest.raises(CaptionerError, match="no such model folder"):
        detect_backend(str(tmp_path / "missing"))


def test_uncached_hub_model_offline_is_one_sentence(tmp_path):
    request = _request(tmp_path, "nobody-here/wd-tagger-that-does-not-exist")
    with pytest.raises(CaptionerError) as info:
        load_captioner(request)
    assert "nobody-here/wd-tagger-that-does-not-exist" in str(info.value)
    assert info.value.kind.value == "model_not_found"


def test_request_validation_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        _request(tmp_path, "", batch_size=0)
    with pytest.raises(ConfigError, match="unknown key 'batchsize'"):
        CaptionRequest.from_dict({"folder": "x", "batchsize": 2})
    with pytest.raises(ConfigError, match="mode"):
        _request(tmp_path, "", mode="overwrite")


def test_compose_modes_prefix_and_suffix(tmp_path):
    fill = _request(tmp_path, "", prefix="sks", suffix="masterpiece")
    assert compose_caption("", "a cat, a dog", fill) == "sks, a cat, a dog, masterpiece"
    assert compose_caption("", "sks, cat", fill) == "sks, cat, masterpiece", "no duplicate trigger"
    append = _request(tmp_path, "", mode="append", prefix="sks")
    assert compose_caption("old, cat", "cat, new", append) == "sks, old, cat, new"


def test_wd_tagger_thresholds_exclusions_and_underscores(tiny_wd, tmp_path):
    tagger = load_captioner(_request(tmp_path, tiny_wd))
    assert isinstance(tagger, WdTagger) and tagger.size == 32 and tagger.max_batch is None
    red, blue = Image.new("RGB", (40, 60), (250, 0, 0)), Image.new("RGB", (50, 50), (0, 0, 250))
    out = tagger.caption_batch([red, blue], _request(tmp_path, tiny_wd))
    assert out[0].split(", ")[0] == "red" and "blue" not in out[0]
    assert "blue" in out[1] and "red" not in out[1]
    assert "simple background" in out[0] and "^_^" in out[0], "underscores to spaces, kaomoji kept"
    assert "general" not in out[0] and "tiny character" not in out[0], "no rating; character below 0.85"
    strict = tagger.caption_batch(
        [red],
        _request(
            tmp_path,
            tiny_wd,
            general_threshold=0.9,
            character_threshold=0.4,
            exclude_tags="no_humans",
            underscores_to_spaces=False,
        ),
    )[0]
    assert strict.split(", ") == ["tiny_character", "red", "simple_background"]
    assert tagger.caption_batch([red], _request(tmp_path, tiny_wd, max_tags=2))[0].count(",") == 1


def test_wd_tagger_with_fixed_batch_of_one_still_takes_a_batch(tmp_path):
    from app.engine.captioning.tiny import write_tiny_wd_tagger

    model = write_tiny_wd_tagger(tmp_path / "fixed", fixed_batch=1)
    tagger = load_captioner(_request(tmp_path, model))
    assert tagger.max_batch == 1
    out = tagger.caption_batch([Image.new("RGB", (32, 32), (0, 250, 0))] * 3, _request(tmp_path, model))
    assert len(out) == 3 and all(o.startswith("green") for o in out)


def test_broken_tagger_folder_is_named(tmp_path, tiny_wd):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "bad" / "selected_tags.csv").write_text((tiny_wd / "selected_tags.csv").read_text())
    with pytest.raises(CaptionerError, match="not a loadable ONNX model"):
        load_captioner(_request(tmp_path, tmp_path / "bad"))


def test_blip_batched_equals_one_at_a_time(tiny_blip, tmp_path):
    captioner = load_captioner(_request(tmp_path, tiny_blip))
    assert isinstance(captioner, BlipCaptioner)
    images = [Image.new("RGB", (64, 48), (i * 60, 255 - i * 60, 30)) for i in range(4)]
    request = _request(tmp_path, tiny_blip, max_new_tokens=8)
    batched = captioner.caption_batch(images, request)
    single = [captioner.caption_batch([im], request)[0] for im in images]
    assert batched == single and all(batched)


def test_fill_mode_on_bad_folder_skips_unusable_and_puts_prefix_first(tiny_wd, tmp_path):
    ds = tmp_path / "ds"
    make_bad_dataset(ds)
    _flat(ds / "red.png", (250, 0, 0))
    events = {"progress": [], "caption": [], "skip": []}
    request = _request(ds, tiny_wd, prefix="sks", batch_size=4)
    summary = run_captioning(
        load_captioner(request),
        request,
        on_progress=lambda *a: events["progress"].append(a),
        on_caption=lambda item, before, after: events["caption"].append((item.path.name, before, after)),
        on_skip=lambda s: events["skip"].append(s),
    )
    skipped_names = {s.path.name for s in events["skip"]}
    assert skipped_names == {
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
    assert all(s.reason.startswith("skipped: ") and str(s.path) in s.reason for s in events["skip"])
    assert (ds / "good.txt").read_text() == "a red square, solo", "fill mode leaves captions alone"
    assert (ds / "latin1.txt").read_bytes() == "café, crème brûlée".encode("latin-1")
    assert (ds / "red.txt").read_text().startswith("sks, red, ")
    names = {name for name, _b, _a in events["caption"]}
    assert "good.jpg" not in names and "red.png" in names and "10_mychar" not in names
    assert summary.written == len(events["caption"]) == summary.targets
    assert events["progress"][-1][:2] == (summary.targets, summary.targets)
    assert all(after.startswith("sks, ") and before == "" for _n, before, after in events["caption"])


def test_replace_mode_never_overwrites_non_utf8_or_read_only(tiny_wd, tmp_path):
    _flat(tmp_path / "a.png", (250, 0, 0))
    _flat(tmp_path / "b.png", (0, 250, 0))
    _flat(tmp_path / "c.png", (0, 0, 250))
    (tmp_path / "a.txt").write_text("old")
    (tmp_path / "b.txt").write_bytes(b"caf\xe9")
    (tmp_path / "c.txt").write_text("locked")
    os.chmod(tmp_path / "c.txt", 0o444)
    request = _request(tmp_path, tiny_wd, mode="replace", min_side=0)
    summary = run_captioning(load_captioner(request), request)
    assert (tmp_path / "a.txt").read_text().startswith("red")
    assert (tmp_path / "b.txt").read_bytes() == b"caf\xe9"
    assert (tmp_path / "c.txt").read_text() == "locked"
    assert sorted(s.path.name for s in summary.skipped) == ["b.png", "c.png"]
    assert any("read-only" in s.reason for s in summary.skipped)
    assert request.mode is CaptionMode.REPLACE


class _Flaky:
    """Wraps a captioner; raises for a batch containing a marked image (a failing image)."""

    name = "flaky"
    max_batch = None

    def __init__(self, inner, bad_size):
        self.inner, self.bad_size, self.batches = inner, bad_size, []

    def caption_batch(self, images, request, existing=None):
        self.batches.append(len(images))
        if any(im.size == self.bad_size for im in images):
            raise RuntimeError("decoder exploded")
        return self.inner.caption_batch(images, request, existing)


def test_failing_image_is_reported_and_the_rest_are_captioned(tiny_wd, tmp_path):
    for i in range(5):
        _flat(tmp_path / f"{i}.png", (250, 0, 0), size=(300 + (7 if i == 3 else 0), 300))
    request = _request(tmp_path, tiny_wd, batch_size=8)
    flaky = _Flaky(load_captioner(request), (307, 300))
    summary = run_captioning(flaky, request)
    assert summary.written == 4 and [s.path.name for s in summary.skipped] == ["3.png"]
    assert "decoder exploded" in summary.skipped[0].reason
    assert flaky.batches[0] == 5, "real batching: one call for the whole batch first"


def test_cancel_between_batches_keeps_what_was_written(tiny_wd, tmp_path):
    for i in range(6):
        _flat(tmp_path / f"{i}.png", (0, 0, 250))
    request = _request(tmp_path, tiny_wd, batch_size=2)
    calls = []
    with pytest.raises(CaptionCancelled):
        run_captioning(
            load_captioner(request),
            request,
            on_progress=lambda done, total, eta, msg: calls.append(done),
            should_cancel=lambda: len(calls) >= 2,
        )
    assert len(list(tmp_path.glob("*.txt"))) == 2


def test_florence_detailed_caption_batched_with_prefix(tiny_florence, tmp_path):
    from app.engine.captioning.florence import FlorenceCaptioner

    assert detect_backend(str(tiny_florence)) is CaptionBackend.FLORENCE
    _flat(tmp_path / "a.png", (250, 0, 0))
    _flat(tmp_path / "b.png", (0, 0, 250))
    (tmp_path / "b.txt").write_text("kept")
    request = _request(tmp_path, tiny_florence, prefix="sks", max_new_tokens=6, batch_size=2)
    captioner = load_captioner(request)
    assert isinstance(captioner, FlorenceCaptioner)
    images = [Image.new("RGB", (80, 60), (200, 0, 0)), Image.new("RGB", (50, 70), (0, 0, 200))]
    texts = captioner.caption_batch(images, request)
    assert len(texts) == 2 and all(t and "<" not in t for t in texts)
    assert texts == [captioner.caption_batch([im], request)[0] for im in images]
    summary = run_captioning(captioner, request)
    assert summary.written == 1 and (tmp_path / "b.txt").read_text() == "kept"
    assert (tmp_path / "a.txt").read_text().startswith("sks, ")
    with pytest.raises(ConfigError, match="florence_task = '<OD>' is not one of <CAPTION>"):
        _request(tmp_path, tiny_florence, florence_task="<OD>")
