"""Saving captions of a scanned dataset, with undo/redo that restores the files on disk.

Every change goes through :class:`CaptionStore`: an edit typed in the caption editor,
a batch tag operation, or captions written by auto-captioning. Each becomes one history
step (consecutive edits of the same image merge into one), remembering the exact bytes
of each file before and after (or that there was no file), so undo puts back exactly
what was there. At least 30 steps are kept (50 by default).

A write that fails (read-only file, full disk) is reported and the new text stays in
memory as *pending*; :meth:`CaptionStore.retry_pending` tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.dataset.captions import (
    CaptionWriteError,
    decode_caption,
    read_caption_bytes,
    remove_caption,
    write_caption_bytes,
)
from app.core.dataset.problems import ProblemKind
from app.core.dataset.scan import Dataset, ImageItem
from app.core.dataset.tag_ops import Plan, TagOperation, plan_operation

DEFAULT_HISTORY = 50


@dataclass
class FileStep:
    item: ImageItem
    before_text: str
    before_bytes: bytes | None  # None: there was no caption file
    after_text: str
    after_bytes: bytes | None


@dataclass
class HistoryStep:
    label: str
    files: list[FileStep] = field(default_factory=list)
    merge_key: Path | None = None  # editor edits of one image merge into one step


@dataclass
class WriteResult:
    """What happened to a batch: files written, and (item, message) for each failure."""

    label: str
    written: int = 0
    failed: list[tuple[ImageItem, str]] = field(default_factory=list)
    skipped: list[tuple[ImageItem, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = [f"{self.label}: {self.written} file{'s' if self.written != 1 else ''} saved"]
        if self.failed:
            parts.append(f"{len(self.failed)} could not be saved")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts)


def _read_bytes(path: Path, root: Path) -> bytes | None:
    """The caption's bytes for undo, read by the dataset scan's rule (a regular file inside the
    dataset folder, size cap): undo must never copy a linked key file into a caption."""
    try:
        return read_caption_bytes(path, root)
    except OSError:  # unreadable or refused: there is nothing of it to restore
        return None


def _encode(text: str, existed: bool = False) -> bytes | None:
    """The file content for ``text``: an emptied caption keeps an (empty) file if there was one."""
    return text.encode("utf-8") if text or existed else None


class CaptionStore:
    """Owns caption writes for one :class:`Dataset`."""

    def __init__(self, dataset: Dataset, history_limit: int = DEFAULT_HISTORY) -> None:
        if history_limit < 30:
            raise ValueError("history_limit must be at least 30")
        self.dataset = dataset
        self.history_limit = history_limit
        self._undo: list[HistoryStep] = []
        self._redo: list[HistoryStep] = []
        self.pending: dict[Path, str] = {}  # caption path -> text not saved yet
        self._lock = threading.RLock()

    @property
    def separator(self) -> str:
        return self.dataset.separator

    # ------------------------------------------------------------ single edits
    def set_caption(
        self, item: ImageItem, text: str, *, label: str | None = None, force: bool = False, before: str | None = None
    ) -> str | None:
        """Save an edit typed by the user. Returns None, or the error message (the text is kept
        as pending). Saving on purpose (``force`` or changed text) also replaces a caption file
        that was not UTF-8. ``before`` is the caption the edit started from, when the caller
        already shows the new text in ``item.caption``."""
        text = text.strip()
        before_text = item.caption if before is None else before
        with self._lock:
            if text == before_text and item.caption_path not in self.pending and not force:
                return None
            before_bytes = _read_bytes(item.caption_path, self.dataset.root)
            step = FileStep(item, before_text, before_bytes, text, _encode(text, before_bytes is not None))
            result = self._write([step])
            self._record(
                HistoryStep(label or f"edit caption of {item.path.name}", [step], merge_key=item.caption_path),
                merge=True,
            )
            return result.failed[0][1] if result.failed else None

    def retry_pending(self) -> WriteResult:
        with self._lock:
            result = WriteResult("retry")
            for path, text in list(self.pending.items()):
                item = next((i for i in self.dataset.items if i.caption_path == path), None)
                if item is None:
                    del self.pending[path]
                    continue
                self._write_one(item, text, _encode(text, item.caption_path.exists()), result)
            return result

    def is_pending(self, item: ImageItem) -> bool:
        return item.caption_path in self.pending

    # ------------------------------------------------------------ batches
    def plan(self, op: TagOperation, items: Iterable[ImageItem] | None = None) -> Plan:
        return plan_operation(op, self.dataset.items if items is None else items, self.separator)

    def apply(self, plan_or_op: Plan | TagOperation, items: Iterable[ImageItem] | None = None) -> WriteResult:
        plan = plan_or_op if isinstance(plan_or_op, Plan) else self.plan(plan_or_op, items)
        with self._lock:
            steps = []
            for c in plan.changes:
                before_bytes = _read_bytes(c.item.caption_path, self.dataset.root)
                steps.append(FileStep(c.item, c.old, before_bytes, c.new, _encode(c.new, before_bytes is not None)))
            result = self._write(steps, label=plan.label)
            result.skipped.extend(plan.skipped)  # type: ignore[arg-type]
            if steps:
                self._record(HistoryStep(plan.label, steps))
            return result

    def record_external(self, label: str, changes: list[tuple[ImageItem, str, str]]) -> None:
        """Record captions another process already wrote (auto-captioning) so they can be undone.
        ``changes`` holds (item, text before, text now); the item's caption is updated."""
        with self._lock:
            steps = []
            for item, before, after in changes:
                steps.append(
                    FileStep(item, before, _encode(before), after, _read_bytes(item.caption_path, self.dataset.root))
                )
                item.caption = after
                self._clear_caption_problem(item)
            if steps:
                self._record(HistoryStep(label, steps))

    # ------------------------------------------------------------ undo / redo
    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_label(self) -> str | None:
        return self._undo[-1].label if self._undo else None

    def redo_label(self) -> str | None:
        return self._redo[-1].label if self._redo else None

    def undo(self) -> WriteResult | None:
        with self._lock:
            if not self._undo:
                return None
            step = self._undo.pop()
            result = self._restore(step, before=True)
            self._redo.append(step)
            return result

    def redo(self) -> WriteResult | None:
        with self._lock:
            if not self._redo:
                return None
            step = self._redo.pop()
            result = self._restore(step, before=False)
            self._undo.append(step)
            return result

    def history_labels(self) -> list[str]:
        return [s.label for s in self._undo]

    # ------------------------------------------------------------ internals
    def _record(self, step: HistoryStep, merge: bool = False) -> None:
        top = self._undo[-1] if self._undo else None
        if (
            merge
            and top is not None
            and top.merge_key is not None
            and top.merge_key == step.merge_key
            and not self._redo
        ):
            top.files[0].after_text = step.files[0].after_text
            top.files[0].after_bytes = step.files[0].after_bytes
        else:
            self._undo.append(step)
            del self._undo[: max(0, len(self._undo) - self.history_limit)]
        self._redo.clear()

    def _write(self, steps: list[FileStep], label: str = "save") -> WriteResult:
        result = WriteResult(label)
        for step in steps:
            self._write_one(step.item, step.after_text, step.after_bytes, result)
        return result

    def _restore(self, step: HistoryStep, *, before: bool) -> WriteResult:
        result = WriteResult(("undo " if before else "redo ") + step.label)
        for f in step.files:
            text, data = (f.before_text, f.before_bytes) if before else (f.after_text, f.after_bytes)
            self._write_one(f.item, text, data, result)
        return result

    def _write_one(self, item: ImageItem, text: str, data: bytes | None, result: WriteResult) -> None:
        item.caption = text
        try:
            if data is None:
                remove_caption(item.caption_path)
            else:
                write_caption_bytes(item.caption_path, data)
        except CaptionWriteError as exc:
            self.pending[item.caption_path] = text
            result.failed.append((item, str(exc)))
            return
        self.pending.pop(item.caption_path, None)
        self._clear_caption_problem(item)
        if data is not None:
            _text, problem = decode_caption(data, item.caption_path)
            if problem is not None:  # undo put back a file that is not UTF-8
                item.problems.append(problem)
        result.written += 1

    def delete_captions(self, items: list[ImageItem]) -> WriteResult:
        """Remove the caption files of ``items`` (one undo step puts them back byte for byte)."""
        with self._lock:
            steps = [
                FileStep(i, i.caption, before, "", None)
                for i in items
                if (before := _read_bytes(i.caption_path, self.dataset.root)) is not None or i.caption
            ]
            label = f"delete caption of {items[0].path.name}" if len(items) == 1 else f"delete {len(steps)} captions"
            result = self._write(steps, label)
            if steps:
                self._record(HistoryStep(label, steps))
            return result

    @staticmethod
    def _clear_caption_problem(item: ImageItem) -> None:
        item.problems[:] = [
            p for p in item.problems if p.kind not in (ProblemKind.CAPTION_NOT_UTF8, ProblemKind.CAPTION_UNREADABLE)
        ]


__all__ = ["DEFAULT_HISTORY", "CaptionStore", "FileStep", "HistoryStep", "WriteResult"]
