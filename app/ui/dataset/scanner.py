"""Scanning a dataset folder in a QThreadPool, handing items to the GUI in batches.

The grid fills while the scan runs (a 65k-image folder shows its first pictures at
once). Checks that need all items (duplicates, shared captions) come at the end as
(item, problem) pairs, applied on the GUI thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, Signal

from app.core.dataset.scan import finish_problems, iter_image_files, make_item

BATCH_SECONDS = 0.05
BATCH_MAX = 250


class ScanSignals(QObject):
    counted = Signal(int, int)  # (generation, number of image files found)
    batch = Signal(int, object)  # (generation, list[ImageItem])
    finished = Signal(int, object)  # (generation, list[(ImageItem, Problem)])


class ScanTask(QRunnable):
    def __init__(self, generation: int, root: Path, min_side: int, signals: ScanSignals) -> None:
        super().__init__()
        self.generation, self.root, self.min_side, self.signals = generation, root, min_side, signals
        self.stop = threading.Event()

    def run(self) -> None:
        paths = iter_image_files(self.root)
        self.signals.counted.emit(self.generation, len(paths))
        items, batch = [], []
        last = time.monotonic()
        for path in paths:
            if self.stop.is_set():
                return
            item = make_item(path, self.root, self.min_side)
            time.sleep(0)  # hand the GIL to the GUI thread if it waits (else it waits up to 5 ms per call)
            items.append(item)
            batch.append(item)
            now = time.monotonic()
            if len(batch) >= BATCH_MAX or now - last >= BATCH_SECONDS:
                self.signals.batch.emit(self.generation, batch)
                batch, last = [], now
        if batch:
            self.signals.batch.emit(self.generation, batch)
        if not self.stop.is_set():
            self.signals.finished.emit(self.generation, finish_problems(items, self.root))
