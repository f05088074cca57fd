"""Scanning a dataset folder on the background-task relay, handing items to the GUI in batches.

The grid fills while the scan runs (a 65k-image folder shows its first pictures at
once). Checks that need all items (duplicates, shared captions) come at the end as
(item, problem) pairs, applied on the GUI thread.
"""

from __future__ import annotations

import time
from pathlib import Path

from app.core.dataset.scan import finish_problems, iter_image_files, make_item
from app.ui.common.tasks import Report

BATCH_SECONDS = 0.05
BATCH_MAX = 250


def scan_folder(root: Path, min_side: int, report: Report) -> list | None:
    """Runs in a pool thread: ``report("counted", n)``, then ``report("batch", items)`` while
    the grid fills; returns the whole-folder (item, problem) pairs, or None once cancelled."""
    paths = iter_image_files(root)
    report("counted", len(paths))
    items, batch = [], []
    last = time.monotonic()
    for path in paths:
        if report.cancelled:
            return None
        item = make_item(path, root, min_side)
        time.sleep(0)  # hand the GIL to the GUI thread if it waits (else it waits up to 5 ms per call)
        items.append(item)
        batch.append(item)
        now = time.monotonic()
        if len(batch) >= BATCH_MAX or now - last >= BATCH_SECONDS:
            report("batch", batch)
            batch, last = [], now
    if batch:
        report("batch", batch)
    return None if report.cancelled else finish_problems(items, root)
