"""The Dataset tab's state and operations, with no widget in sight.

One :class:`DatasetSession` holds the open dataset (items, :class:`CaptionStore` with
undo history) and does the slow work off the GUI thread: the scan and every caption
write / batch / undo / file copy run on the background-task relay (app/ui/common/tasks.py),
writes on a one-thread lane (so they happen in the order asked); auto-captioning runs in
the worker process through the JobTracker.
Widgets call its methods and listen to its signals.
"""

from __future__ import annotations

import collections
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.core import paths
from app.core.configs import ConfigError
from app.core.dataset.caption_config import CaptionRequest
from app.core.dataset.caption_store import CaptionStore, WriteResult
from app.core.dataset.captions import DEFAULT_SEPARATOR, caption_path_for
from app.core.dataset.exclusions import EXCLUDE_FILE, excluded_problem, set_excluded
from app.core.dataset.masks import mask_problem
from app.core.dataset.problems import ProblemKind
from app.core.dataset.scan import Dataset, DatasetError, ImageItem, check_folder, is_image_name, make_item
from app.core.dataset.tag_ops import Plan, TagOperation
from app.core.events import ArtifactKind, ArtifactSaved, LogLevel, LogLine, Progress
from app.ui.common.tasks import TaskRunner
from app.ui.dataset.scanner import scan_folder
from app.ui.jobs import JobError, JobHandle, JobState, JobTracker
from app.ui.recent_models import RecentModels
from app.worker.protocol import JobKind

log = logging.getLogger(__name__)

RECENT_FILE = "recent_datasets.json"


class DatasetSession(QObject):
    opened = Signal(str)  # the dataset folder; the item list is empty and fills up
    scanProgress = Signal(int, int)  # (items so far, files found)
    itemsAdded = Signal(int, int)  # (first row, count)
    itemsChanged = Signal(object)  # list[ImageItem] whose caption or problems changed
    scanFinished = Signal()
    tagsChanged = Signal()
    historyChanged = Signal()
    message = Signal(str)  # a status line
    errorOccurred = Signal(str)  # one sentence for the user
    errorDetail = Signal(str, str)  # (the sentence, the long technical detail behind "Details")
    countsChanged = Signal(str)  # counts_text() after a scan, captions written, pictures added
    captionRunning = Signal(bool)
    captionProgress = Signal(int, int, object, str)  # (done, total, eta_s or None, message)

    def __init__(
        self,
        tracker: JobTracker | None = None,
        *,
        separator: str = DEFAULT_SEPARATOR,
        min_side: int = 256,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.tracker = tracker
        self.separator = separator
        self.min_side = min_side
        self.recent = RecentModels(paths.config_dir() / RECENT_FILE, parent=self)
        self.dataset: Dataset | None = None
        self.store: CaptionStore | None = None
        self.items: list[ImageItem] = []
        self._by_path: dict[Path, ImageItem] = {}
        self.scanning = False
        self._scans = TaskRunner(1, self)
        self._scan_id: int | None = None
        self._io = TaskRunner(1, self)  # one thread: writes happen in the order they were asked for
        self._expected = 0
        self.masking = False  # the Masks toggle: pictures without a usable mask are flagged
        self.caption_job: str | None = None
        self._caption_changes: list[tuple[ImageItem, str, str]] = []
        # Counts follow every change; a short delay makes a burst (auto-caption) one update.
        self._counts_timer = QTimer(self)
        self._counts_timer.setSingleShot(True)
        self._counts_timer.setInterval(100)
        self._counts_timer.timeout.connect(self._emit_counts)
        self.itemsChanged.connect(self._counts_timer.start)
        self.itemsAdded.connect(self._counts_timer.start)

    # ------------------------------------------------------------ opening
    @property
    def root(self) -> Path | None:
        return self.dataset.root if self.dataset else None

    def open(self, folder: str | Path) -> bool:
        """Start scanning ``folder``; False (and errorOccurred) when it is not a folder."""
        try:
            root = check_folder(folder)
        except DatasetError as exc:
            self.errorOccurred.emit(str(exc))
            return False
        self.flush()
        self._stop_scan()
        self.items = []
        self._by_path = {}
        self.dataset = Dataset(root=root, items=self.items, separator=self.separator, min_side=self.min_side)
        self.store = CaptionStore(self.dataset)
        self.scanning = True
        self._expected = 0
        self.recent.add(str(root))
        self.opened.emit(str(root))
        self.historyChanged.emit()
        self.message.emit(f"Scanning {root} …")
        min_side = self.min_side
        # A scan of the folder opened before is cancelled: its batches and result are dropped.
        self._scan_id = self._scans.run(
            lambda report: scan_folder(root, min_side, report),
            self._on_scan_finished,
            on_progress=self._on_scan_progress,
        )
        return True

    def rescan(self) -> None:
        if self.root is not None:
            self.open(self.root)

    def _stop_scan(self) -> None:
        if self._scan_id is not None:
            self._scans.cancel(self._scan_id)
            self._scan_id = None

    def _on_scan_progress(self, what: str, value: Any) -> None:
        if what == "counted":
            self._expected = value
            self.scanProgress.emit(len(self.items), value)
        else:
            self._on_batch(value)

    def _on_batch(self, batch: list[ImageItem]) -> None:
        first = len(self.items)
        self.items.extend(batch)
        for item in batch:
            self._by_path[item.path] = item
        self.itemsAdded.emit(first, len(batch))
        self.scanProgress.emit(len(self.items), self._expected)

    def _on_scan_finished(self, extra: list) -> None:
        changed = []
        for item, problem in extra:
            item.problems.append(problem)
            changed.append(item)
        self.scanning = False
        self._scan_id = None
        if changed:
            self.itemsChanged.emit(changed)
        self.tagsChanged.emit()
        self.scanFinished.emit()
        self.message.emit("")  # "Scanning … " is over; the counts label says what was found
        self._counts_timer.start()
        if self.masking:
            self.set_masking(True)

    def set_masking(self, on: bool) -> None:
        """Flag (or stop flagging) every picture without a usable loss mask; checked off the GUI thread."""
        self.masking, items = on, list(self.items)
        kinds = (ProblemKind.NO_MASK, ProblemKind.MASK_UNUSABLE)

        def work() -> list:
            return [mask_problem(i.path, (i.width, i.height)) if on and i.width else None for i in items]

        def done(found: list | None, exc: str | None) -> None:
            if exc is not None or found is None or self.masking != on:
                return  # toggled again meanwhile: that check's answer is the one shown
            for item, problem in zip(items, found):
                item.problems[:] = [p for p in item.problems if p.kind not in kinds]
                item.problems.extend([problem] if problem is not None else [])
            self.itemsChanged.emit(items)
            flagged = sum(p is not None for p in found)
            if on:
                self.message.emit(
                    f"{flagged} of {len(items)} pictures have no usable mask (they train on the whole picture)"
                    if flagged
                    else ""
                )

        self._run(work, done)

    def counts_text(self) -> str:
        usable = sum(1 for i in self.items if i.usable)
        return (
            f"{len(self.items)} images, {usable} usable, "
            f"{sum(1 for i in self.items if not i.has_caption)} without a caption"
        )

    def _emit_counts(self) -> None:
        if self.dataset is not None and not self.scanning:  # mid-scan counts are partial
            self.countsChanged.emit(self.counts_text())

    def item_for(self, path: str | Path) -> ImageItem | None:
        return self._by_path.get(Path(path))

    def tag_frequencies(self) -> collections.Counter:
        counter: collections.Counter = collections.Counter()
        from app.core.dataset.captions import split_tags

        for item in self.items:
            counter.update(set(split_tags(item.caption, self.separator)))
        return counter

    # ------------------------------------------------------------ captions
    def _run(self, fn: Callable[[], Any], callback: Callable[[Any, str | None], None]) -> None:
        """``fn()`` on the ordered write lane; ``callback(result, None)`` or ``callback(None, error)``."""
        self._io.run(fn, lambda result: callback(result, None), lambda _kind, message: callback(None, message))

    def save_caption(self, item: ImageItem, text: str, *, force: bool = False) -> None:
        """Save an edit (the in-memory caption changes now, the file in the background)."""
        store = self.store
        if store is None:
            return
        text = text.strip()
        if text == item.caption and not force and not store.is_pending(item):
            return
        before = item.caption
        item.caption = text  # shown at once; the store records the step from ``before``
        # a.jpg and a.png may share a.txt: they show what the file will say, not a stale copy
        siblings = (
            [i for i in self.items if i is not item and i.caption_path == item.caption_path]
            if item.has_problem(ProblemKind.CAPTION_SHARED)
            else []
        )
        for sibling in siblings:
            sibling.caption = text

        def work():
            return store.set_caption(item, text, force=force, before=before)

        def done(error: str | None, exc: str | None) -> None:
            if exc is not None:
                self.errorOccurred.emit(f"{item.caption_path}: could not save the caption ({exc})")
            elif error:
                self.errorOccurred.emit(f"{error}; the edit is kept here, use Retry to save it again")
            self.itemsChanged.emit([item, *siblings])
            self.tagsChanged.emit()
            self.historyChanged.emit()

        self._run(work, done)

    def delete_captions(self, items: list[ImageItem]) -> None:
        """Remove the caption files (undoable, like any other caption change)."""
        if self.store is not None and items:
            store = self.store
            self._run(lambda: store.delete_captions(items), self._after_write)

    def set_excluded(self, items: list[ImageItem], excluded: bool) -> None:
        """Exclude pictures from training (or include them again), kept in the folder's
        ``.loraloom-exclude`` so training and ``dataset check`` honour it too."""
        root = self.root
        if root is None or not items:
            return

        def work() -> set[str]:
            try:
                return set_excluded(root, [i.path for i in items], excluded)
            except OSError as exc:  # the sentence names the file: only the reason is wanted
                raise OSError(exc.strerror or str(exc)) from exc

        def done(_names, exc: str | None) -> None:
            if exc is not None:
                self.errorOccurred.emit(f"{root / EXCLUDE_FILE}: could not save the exclusions ({exc})")
                return
            for item in items:
                item.problems[:] = [p for p in item.problems if p.kind is not ProblemKind.EXCLUDED]
                if excluded:
                    item.problems.append(excluded_problem(item.path))
            self.itemsChanged.emit(list(items))
            verb = "excluded from" if excluded else "included in"
            self.message.emit(f"{len(items)} picture{'s' if len(items) != 1 else ''} {verb} training")

        self._run(work, done)

    def is_pending(self, item: ImageItem) -> bool:
        return self.store is not None and self.store.is_pending(item)

    def retry_pending(self) -> None:
        if self.store is not None:
            store = self.store
            self._run(store.retry_pending, self._after_write)

    def plan(self, op: TagOperation, items: list[ImageItem] | None = None) -> Plan:
        if self.store is None:
            return Plan(label=op.describe())
        return self.store.plan(op, items)

    def apply(self, plan: Plan) -> None:
        if self.store is not None and plan.changes:
            store = self.store
            self._run(lambda: store.apply(plan), self._after_write)

    def undo(self) -> None:
        if self.store is not None and self.store.can_undo():
            store = self.store
            self._run(store.undo, self._after_write)

    def redo(self) -> None:
        if self.store is not None and self.store.can_redo():
            store = self.store
            self._run(store.redo, self._after_write)

    def _after_write(self, result: WriteResult | None, exc: str | None) -> None:
        if exc is not None:
            self.errorOccurred.emit(f"could not save the captions ({exc})")
        elif result is not None:
            if result.failed:
                first = result.failed[0][1]
                more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
                self.errorOccurred.emit(f"{first}{more}; the changes are kept here, use Retry to save them")
            self.message.emit(result.summary())
        self.itemsChanged.emit(list(self.items))
        self.tagsChanged.emit()
        self.historyChanged.emit()

    def flush(self, msecs: int = 10_000) -> bool:
        """Wait for every queued write (before closing or opening another folder)."""
        return self._io.wait(msecs)

    # ------------------------------------------------------------ adding pictures
    def copy_in(self, files: list[str]) -> None:
        """Copy image files (and their caption .txt) into the dataset folder; originals untouched."""
        root = self.root
        if root is None:
            self.errorOccurred.emit("open a dataset folder first, then drop pictures on it")
            return
        images = [Path(f) for f in files if is_image_name(Path(f).name) and Path(f).is_file()]
        ignored = len(files) - len(images)

        def work() -> tuple[list[ImageItem], list[str]]:
            added, errors = [], []
            for src in images:
                try:
                    if src.resolve().parent == root:
                        continue  # already in the dataset
                    target = _free_name(root / src.name)
                    shutil.copy2(src, target)
                    caption = caption_path_for(src)
                    if caption.is_file():
                        shutil.copy2(caption, caption_path_for(target))
                    added.append(make_item(target, root, self.min_side))
                except OSError as exc:
                    errors.append(f"{src}: could not copy it into the dataset ({exc.strerror or exc})")
            return added, errors

        def done(result, exc: str | None) -> None:
            if exc is not None or result is None:
                self.errorOccurred.emit(f"could not copy the pictures ({exc})")
                return
            added, errors = result
            if added:
                first = len(self.items)
                self.items.extend(added)
                for item in added:
                    self._by_path[item.path] = item
                self.itemsAdded.emit(first, len(added))
                self.tagsChanged.emit()
            if errors:
                self.errorOccurred.emit(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
            note = f"; {ignored} dropped files are not pictures" if ignored else ""
            self.message.emit(f"copied {len(added)} pictures into {root}{note}")

        self._run(work, done)

    # ------------------------------------------------------------ auto-captioning
    def start_captioning(self, values: dict[str, Any], images: list[ImageItem] | None = None) -> str | None:
        """Submit a ``caption`` job for the open folder; returns the job id, or None (errorOccurred)."""
        if self.tracker is None or self.root is None:
            self.errorOccurred.emit("open a dataset folder first")
            return None
        if self.caption_job is not None:
            self.errorOccurred.emit("auto-captioning is already running")
            return None
        params = dict(values, folder=str(self.root), separator=self.separator, min_side=self.min_side)
        if images:
            params["files"] = [str(i.path) for i in images]
        try:
            request = CaptionRequest.from_dict(params, where="auto-caption")
        except ConfigError as exc:
            self.errorOccurred.emit(str(exc))
            return None
        self.flush()
        self._caption_changes = []
        return self.tracker.submit(JobKind.CAPTION.value, request.to_dict(), connect=self._follow_caption).id

    def _follow_caption(self, handle: JobHandle) -> None:
        """Before the job is sent: a worker that cannot start finishes it during submit."""
        self.caption_job = handle.id
        handle.artifact.connect(self._on_caption_artifact)
        handle.log.connect(self._on_caption_log)
        handle.progress.connect(self._on_caption_progress)
        handle.finished.connect(self._on_caption_finished)
        self.captionRunning.emit(True)
        self.captionProgress.emit(0, 0, None, "starting the worker …")

    def cancel_captioning(self) -> None:
        if self.tracker is not None and self.caption_job is not None:
            self.tracker.cancel(self.caption_job)

    def _on_caption_artifact(self, saved: ArtifactSaved) -> None:
        if saved.kind is ArtifactKind.CAPTION:
            item = self.item_for(str(saved.details.get("image", "")))
            if item is not None:
                before = str(saved.details.get("previous", ""))
                after = str(saved.details.get("caption", ""))
                item.caption = after
                self._caption_changes.append((item, before, after))
                self.itemsChanged.emit([item])

    def _on_caption_log(self, line: LogLine) -> None:
        if line.level is LogLevel.WARNING:
            self.message.emit(line.message)

    def _on_caption_progress(self, progress: Progress) -> None:
        self.captionProgress.emit(progress.step, progress.total, progress.eta_s, progress.message)

    def _on_caption_finished(self, state: JobState, error: JobError | None) -> None:
        self.caption_job = None
        if self._caption_changes and self.store is not None:
            self.store.record_external(f"auto-caption {len(self._caption_changes)} images", self._caption_changes)
        count = len(self._caption_changes)
        self._caption_changes = []
        self.captionRunning.emit(False)
        self.tagsChanged.emit()
        self.historyChanged.emit()
        if error is not None:
            self.errorOccurred.emit(f"auto-captioning failed: {error.message}")
            if error.detail:
                self.errorDetail.emit(f"auto-captioning failed: {error.message}", error.detail)
        else:
            self.message.emit(f"auto-captioning {state.value}: {count} captions written")


def _free_name(target: Path) -> Path:
    """``target``, or ``name-2.ext``, ``name-3.ext`` … when taken (a copy never overwrites)."""
    if not target.exists() and not caption_path_for(target).exists():
        return target
    for n in range(2, 100_000):
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
        if not candidate.exists() and not caption_path_for(candidate).exists():
            return candidate
    raise OSError(f"no free file name for {target.name}")
