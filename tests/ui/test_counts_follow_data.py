"""The Train tab's dataset line follows the Dataset tab: captions written and pictures added
change its counts without a manual rescan."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

TIMEOUT = 20_000


def _pictures(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + count):
        path = folder / f"p{i}.png"
        Image.new("RGB", (320, 320), (10 * i, 100, 200)).save(path)
        out.append(path)
    return out


def test_train_dataset_line_follows_captions_and_added_pictures(qtbot, make_window, tmp_path):
    window = make_window()
    dataset, datasets = window.dataset_tab, window.train_tab.form.datasets
    _pictures(tmp_path / "ds", 2)
    assert dataset.open_folder(str(tmp_path / "ds"))
    qtbot.waitUntil(lambda: "2 pictures, 2 usable, 0 captioned" in datasets.summary.text(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not dataset.session.scanning and len(dataset.session.items) == 2, timeout=TIMEOUT)

    item = dataset.session.items[0]
    dataset.session.save_caption(item, "a red square")
    qtbot.waitUntil(lambda: "2 pictures, 2 usable, 1 captioned" in datasets.summary.text(), timeout=TIMEOUT)

    assert dataset.handle_drop([str(p) for p in _pictures(tmp_path / "outside", 1, start=5)])
    qtbot.waitUntil(lambda: "3 pictures, 3 usable, 1 captioned" in datasets.summary.text(), timeout=TIMEOUT)
