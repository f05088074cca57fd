"""Opening a large dataset: scan time for N generated images, and the GUI's longest stall.

1. ``scan_dataset`` (sizes from headers, no decode) on N generated JPEGs, beside a scan
   that decodes every image (what a tool that loads each picture to open a folder pays),
   printed as a ratio.
2. The Dataset tab (offscreen) opening the same folder: a 5 ms QTimer records the longest
   gap of the GUI event loop while the grid fills and thumbnails load (scrolling from top
   to bottom so every row asks for its thumbnail). It must stay under 100 ms.

    .venv/bin/python bench/dataset_scan.py [--images 5000] [--folder /tmp/loraloom-bench-5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STALL_LIMIT_MS = 100


def make_images(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".complete"
    if marker.is_file() and marker.read_text().strip() == str(count):
        return
    print(f"writing {count} images to {folder} …", file=sys.stderr)
    for i in range(count):
        im = Image.new("RGB", (384, 320), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256))
        im.paste(((i * 3) % 256, 200, 40), (0, 0, 96 + i % 200, 80))
        sub = folder / f"{1 + i % 5}_part{i % 5}"  # kohya repeats folders
        sub.mkdir(exist_ok=True)
        im.save(sub / f"img{i:05d}.jpg", quality=85)
        if i % 3 == 0:
            (sub / f"img{i:05d}.txt").write_text(f"tag{i % 17}, tag{i % 5}, common", encoding="utf-8")
    (folder / ".complete").write_text(str(count))


def time_scans(folder: Path) -> tuple[int, float, float]:
    from app.core.dataset.scan import scan_dataset

    start = time.perf_counter()
    ds = scan_dataset(folder)
    header = time.perf_counter() - start
    start = time.perf_counter()
    scan_dataset(folder, deep=True)
    deep = time.perf_counter() - start
    return len(ds.items), header, deep


def gui_stall(folder: Path) -> tuple[float, float, int]:
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from app.ui.dataset.dataset_tab import DatasetTab

    tab = DatasetTab()
    tab.resize(1400, 900)
    tab.show()
    app.processEvents()
    clock = QElapsedTimer()
    clock.start()
    gaps: list[int] = []
    last = [clock.elapsed()]

    cpu: list[float] = []
    last_cpu = [time.thread_time()]

    def tick() -> None:
        now, now_cpu = clock.elapsed(), time.thread_time()
        gaps.append(now - last[0])
        cpu.append((now_cpu - last_cpu[0]) * 1000)
        last[0], last_cpu[0] = now, now_cpu

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    start = time.perf_counter()
    tab.open_folder(str(folder))
    while tab.session.scanning:
        app.processEvents()
    filled = time.perf_counter() - start
    phases = [("scan", len(gaps))]
    bar = tab.grid.verticalScrollBar()
    step = max(1, bar.pageStep())
    for value in range(0, bar.maximum() + step, step):  # scroll through every page
        bar.setValue(value)
        deadline = time.perf_counter() + 0.05
        while time.perf_counter() < deadline:
            app.processEvents()
    phases.append(("scrolled", len(gaps)))
    deadline = time.perf_counter() + 60
    while tab.thumbnails.pool.activeThreadCount() and time.perf_counter() < deadline:
        app.processEvents()  # never block the loop we are measuring
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:
        app.processEvents()
    timer.stop()
    worst = max(range(len(gaps)), key=gaps.__getitem__) if gaps else 0
    where = next((name for name, end in phases if worst < end), "thumbnails finishing")
    print(
        f"(longest gap during: {where}; the GUI thread used {cpu[worst] if cpu else 0:.0f} ms of CPU in it, "
        "the rest it waited for the CPU or the GIL)",
        file=sys.stderr,
    )
    loaded = sum(1 for i in tab.session.items if tab.thumbnails.is_loaded(str(i.path)))
    tab.close()
    stall = max(gaps) - 5 if gaps else 0
    return filled, stall, loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.gettempdir()) / f"loraloom-bench-{args.images}"
    make_images(folder, args.images)
    os.environ.setdefault("LORALOOM_HOME", tempfile.mkdtemp(prefix="loraloom-bench-home-"))

    count, header, deep = time_scans(folder)
    print(f"scan of {count} images (headers only):   {header:.2f} s ({count / header:.0f} images/s)")
    print(f"scan decoding every image:             {deep:.2f} s")
    print(f"ratio decode-all / header-only:        {deep / header:.1f}x")
    filled, stall, loaded = gui_stall(folder)
    print(f"Dataset tab: grid filled in {filled:.2f} s, {loaded} thumbnails made while scrolling through")
    verdict = "OK" if stall < STALL_LIMIT_MS else "TOO LONG"
    print(f"longest GUI event-loop stall:          {stall:.0f} ms (limit {STALL_LIMIT_MS} ms) {verdict}")
    return 0 if stall < STALL_LIMIT_MS else 1


if __name__ == "__main__":
    sys.exit(main())
