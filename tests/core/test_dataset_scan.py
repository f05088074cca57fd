"""app.core.dataset.scan: scanning folders of good and broken pictures (the shared contract)."""

from __future__ import annotations

import pytest
from dataset_files import make_bad_dataset, make_good_dataset, picture, save
from PIL import Image

from app.core.dataset.scan import (
    IMAGE_SUFFIXES,
    Dataset,
    DatasetError,
    ImageItem,
    Problem,
    ProblemKind,
    load_training_image,
    scan_dataset,
)


def _by_rel(ds: Dataset) -> dict[str, ImageItem]:
    return {str(i.path.relative_to(ds.root)): i for i in ds.items}


def test_bad_folder_lists_every_file_with_its_problem_and_never_raises(tmp_path):
    expect = make_bad_dataset(tmp_path / "ds")
    kinds = {k for k in expect.values() if k is not None}
    assert len(kinds) >= 12, kinds
    ds = scan_dataset(tmp_path / "ds")
    items = _by_rel(ds)
    assert set(items) == set(expect), "every image-suffixed file is listed, hidden folders are not"
    for rel, kind in expect.items():
        item = items[rel]
        found = [p.kind for p in item.problems]
        if kind is None:
            assert found == [], (rel, item.problems)
        else:
            assert kind in found, (rel, item.problems)
        for p in item.problems:
            assert isinstance(p, Problem) and p.message.startswith(str(item.path.parent)), p
            assert "\n" not in p.message and "Traceback" not in p.message
    blocking = {rel for rel, item in items.items() if not item.usable}
    assert blocking == {
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
    assert {i.path for i in ds.usable_items()} == {i.path for i in ds.items if i.usable}


def test_sizes_repeats_captions_and_paths(tmp_path):
    make_bad_dataset(tmp_path / "ds")
    ds = scan_dataset(tmp_path / "ds", min_side=64)
    items = _by_rel(ds)
    assert (items["rotated.jpg"].width, items["rotated.jpg"].height) == (300, 400), "after EXIF rotation"
    assert (items["good.jpg"].width, items["good.jpg"].height) == (320, 288)
    assert items["tiny.png"].usable, "min_side is a setting"
    assert items["10_mychar/char.png"].repeats == 10 and items["good.jpg"].repeats == 1
    assert items["good.jpg"].caption == "a red square, solo"
    assert items["good.jpg"].caption_path == ds.root / "good.txt"
    assert items["latin1.png"].caption == "caf\ufffd, cr\ufffdme br\ufffdl\ufffde"
    assert items["zero.png"].width == 0 and items["dangling.jpg"].height == 0
    assert all(i.path.is_absolute() for i in ds.items)
    assert ds.repeats_by_folder()["10_mychar"] == (10, 1)


def test_repeats_from_the_dataset_folder_itself_and_nested(tmp_path):
    save(picture(), tmp_path / "5_style" / "sub" / "a.png")
    ds = scan_dataset(tmp_path / "5_style")
    assert ds.items[0].repeats == 5


def test_missing_folder_and_file_raise_dataset_error_naming_the_path(tmp_path):
    with pytest.raises(DatasetError, match="no such folder") as info:
        scan_dataset(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    assert isinstance(info.value, ValueError)
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "f.png")


def test_empty_folder_and_suffixes(tmp_path):
    assert scan_dataset(tmp_path).items == []
    assert IMAGE_SUFFIXES == (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
    for i, suffix in enumerate(IMAGE_SUFFIXES):
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF"}.get(suffix)
        save(picture((260, 260), (i * 30, 10, 10)), tmp_path / f"x{i}{suffix.upper()}", fmt=fmt)
    ds = scan_dataset(tmp_path)
    assert len(ds.items) == len(IMAGE_SUFFIXES)
    assert all(i.usable and i.problems == [] for i in ds.items), [i.problems for i in ds.items]


def test_load_training_image_converts_every_mode_to_rgb(tmp_path):
    make_bad_dataset(tmp_path / "ds")
    ds = scan_dataset(tmp_path / "ds")
    for item in ds.usable_items():
        im = load_training_image(item.path)
        assert im.mode == "RGB" and im.size == (item.width, item.height), item.path
    alpha = load_training_image(tmp_path / "ds" / "alpha.png")
    assert alpha.getpixel((5, 5)) == (255, 127, 127), "half-transparent red on white"
    sixteen = load_training_image(tmp_path / "ds" / "sixteen.png")
    assert sixteen.getpixel((10, 10))[0] == 155 and sixteen.getpixel((200, 10)) == (0, 0, 0), (
        "16-bit values are scaled, not clipped to white"
    )
    rotated = load_training_image(tmp_path / "ds" / "rotated.jpg")
    assert rotated.size == (300, 400)


def test_load_training_image_names_the_file_on_failure(tmp_path):
    make_bad_dataset(tmp_path / "ds")
    for name in ("cut_jpeg.jpg", "notes.jpg", "zero.png", "bomb.png", "dangling.jpg"):
        with pytest.raises(DatasetError) as info:
            load_training_image(tmp_path / "ds" / name)
        assert name in str(info.value)


def test_header_scan_finds_damage_inside_png_data(tmp_path):
    # A PNG whose pixel data is overwritten still ends with IEND; the chunk checksums tell,
    # without decoding (issue 10: dataset check says "damaged" without --deep).
    save(picture((300, 300)), tmp_path / "p.png")
    data = bytearray((tmp_path / "p.png").read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 30] = b"\xff" * 20
    (tmp_path / "p.png").write_bytes(bytes(data))
    for deep in (False, True):
        item = scan_dataset(tmp_path, deep=deep).items[0]
        assert not item.usable and item.problems[0].kind is ProblemKind.CORRUPT
        assert item.problems[0].message == (
            f"{tmp_path / 'p.png'}: the PNG data is damaged (its IDAT chunk at byte {idat - 4} fails its checksum)"
        )


def test_png_without_iend_is_truncated_and_a_chunk_length_that_lies_is_damaged(tmp_path):
    save(picture((300, 300)), tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-30])  # the end of the last IDAT and IEND are missing
    idat = data.index(b"IDAT") - 4
    (tmp_path / "long.png").write_bytes(data[:idat] + (10**6).to_bytes(4, "big") + data[idat + 4 :])
    items = {i.path.name: i for i in scan_dataset(tmp_path).items}
    assert items["whole.png"].usable
    assert items["cut.png"].problems[0].kind is ProblemKind.TRUNCATED
    assert items["long.png"].problems[0].kind is ProblemKind.CORRUPT
    assert "the IDAT chunk at byte" in items["long.png"].problems[0].message and "longer than the file" in (
        items["long.png"].problems[0].message
    )


def test_scan_reports_progress_and_can_stop(tmp_path):
    make_good_dataset(tmp_path, count=70, size=(64, 64))
    seen = []
    ds = scan_dataset(tmp_path, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (70, 70) and len(ds.items) == 70
    stopped = scan_dataset(tmp_path, should_stop=lambda: True)
    assert stopped.items == []


def test_large_header_only_scan_does_not_decode(tmp_path, monkeypatch):
    save(picture((300, 300)), tmp_path / "a.png")
    calls = []
    original = Image.Image.load

    def spy(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    ds = scan_dataset(tmp_path)
    assert ds.items[0].usable and calls == [], "a good file is never decoded by the scan"
