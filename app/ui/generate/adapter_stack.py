"""The adapter stack of the Generate tab, as state and operations (no widgets).

Rows hold a file, its weight, an optional text-encoder weight, an enable flag and what
the file's header says (name, trigger words, base family). Reading a header is disk
work, so it runs on a thread pool and fills the row in when it is done. The stack
gives the request its ``adapters`` list and the trigger words that join the prompt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.adapters import AdapterInfo, inspect_adapter
from app.core.configs import WEIGHT_LIMIT, AdapterEntry
from app.core.families import FALLBACK, FAMILIES, Family
from app.ui.common.tasks import TaskRunner

log = logging.getLogger(__name__)

FAMILY_NAMES = {f.id.value: f.label for f in FAMILIES}


@dataclass
class AdapterRow:
    path: str
    weight: float = 1.0
    te_weight: float | None = None  # None: follows weight
    enabled: bool = True
    name: str = ""
    trigger_words: list[str] = field(default_factory=list)
    family: str | None = None
    problem: str = ""  # why the worker or the header check refused it ("" when fine)
    layers: str = ""  # the worker's load report: "92/92 layers" ("" until a render used it)
    load_details: str = ""  # what was left out, when not all of the file applied ("" when all did)
    loading: bool = True  # the header has not been read yet
    lbw: str = ""  # block weights (app.core.block_weights spec; "" = every block alike)
    start: float = 0.0  # the part of the steps its UNet part acts in
    stop: float = 1.0
    block_norms: dict[str, float] = field(default_factory=dict)  # ‖ΔW‖ per block, from the worker's report

    @property
    def display_name(self) -> str:
        return self.name or Path(self.path).stem

    def entry(self) -> AdapterEntry:
        return AdapterEntry(
            self.path, self.weight, self.te_weight, self.enabled, lbw=self.lbw, start=self.start, stop=self.stop
        )


def compose_prompt(prompt: str, words: list[str]) -> str:
    """The prompt with trigger words put first, leaving out those already in it."""
    present = {p.strip().lower() for p in prompt.split(",")}
    missing = [w for w in words if w.strip() and w.strip().lower() not in present]
    return ", ".join(missing + ([prompt] if prompt.strip() else []))


def strip_words(prompt: str, words: list[str]) -> str:
    """The prompt without these comma-separated trigger words (used when a PNG restores a stack)."""
    drop = {w.strip().lower() for w in words}
    kept = [p.strip() for p in prompt.split(",") if p.strip() and p.strip().lower() not in drop]
    return ", ".join(kept)


class AdapterStack(QObject):
    rowsChanged = Signal()  # rows added, removed or moved: rebuild the view
    rowChanged = Signal(int)  # one row's data changed (weight, header read, problem)
    mixChanged = Signal()  # anything that changes the picture (weights, enabled, order, membership)
    message = Signal(str)  # one line for the status

    def __init__(self, runner: TaskRunner | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[AdapterRow] = []
        self._runner = runner or TaskRunner(max_threads=2, parent=self)
        self.base_family: str | None = None

    # ------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.rows)

    def index_of(self, path: str) -> int:
        key = str(Path(path))
        return next((i for i, r in enumerate(self.rows) if str(Path(r.path)) == key), -1)

    def entries(self) -> list[dict[str, Any]]:
        """The ``adapters`` field of a GenerateRequest (disabled rows are sent too: re-enabling is instant)."""
        return [r.entry().to_dict() for r in self.rows]

    def trigger_words(self) -> list[str]:
        words: list[str] = []
        for row in self.rows:
            if row.enabled and row.weight != 0.0:
                words.extend(w for w in row.trigger_words if w not in words)
        return words

    def wait(self, ms: int = 10_000) -> bool:
        return self._runner.wait(ms)

    # ------------------------------------------------------------ operations
    def add(
        self,
        path: str,
        weight: float = 1.0,
        *,
        te_weight: float | None = None,
        enabled: bool = True,
        lbw: str = "",
        start: float = 0.0,
        stop: float = 1.0,
    ) -> int:
        """Add a file (or return the row it already has); its header is read in the background."""
        existing = self.index_of(path)
        if existing >= 0:
            self.message.emit(f"{Path(path).name} is already in the stack.")
            return existing
        row = AdapterRow(
            path=str(path), weight=_clamp(weight), te_weight=te_weight, enabled=enabled, lbw=lbw, start=start, stop=stop
        )
        self.rows.append(row)
        self.rowsChanged.emit()
        self.mixChanged.emit()
        self._runner.run(
            lambda p=row.path: inspect_adapter(p),
            lambda info, r=row: self._on_info(r, info),
            lambda kind, msg, r=row: self._on_problem(r, msg),
        )
        return len(self.rows) - 1

    def set_rows(self, entries: list[dict[str, Any]]) -> None:
        """Replace the stack (restoring saved settings or a dropped PNG)."""
        self.rows = []
        self.rowsChanged.emit()
        for data in entries:
            entry = AdapterEntry.from_dict(data)
            self.add(
                entry.path,
                entry.weight,
                te_weight=entry.te_weight,
                enabled=entry.enabled,
                lbw=entry.lbw,
                start=entry.start,
                stop=entry.stop,
            )

    def remove(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            del self.rows[index]
            self.rowsChanged.emit()
            self.mixChanged.emit()

    def move(self, index: int, to: int) -> None:
        if 0 <= index < len(self.rows) and 0 <= to < len(self.rows) and index != to:
            self.rows.insert(to, self.rows.pop(index))
            self.rowsChanged.emit()
            self.mixChanged.emit()

    def set_weight(self, index: int, weight: float) -> None:
        row = self.rows[index]
        weight = _clamp(weight)
        if row.weight != weight:
            row.weight = weight
            self.rowChanged.emit(index)
            self.mixChanged.emit()

    def set_te_weight(self, index: int, weight: float | None) -> None:
        row = self.rows[index]
        weight = None if weight is None else _clamp(weight)
        if row.te_weight != weight:
            row.te_weight = weight
            self.rowChanged.emit(index)
            self.mixChanged.emit()

    def set_enabled(self, index: int, enabled: bool) -> None:
        row = self.rows[index]
        if row.enabled != enabled:
            row.enabled = enabled
            self.rowChanged.emit(index)
            self.mixChanged.emit()

    def set_blocks(self, index: int, lbw: str) -> None:
        """A row's block weights (a preset name or one number per block; "" for every block alike)."""
        row = self.rows[index]
        if row.lbw != lbw:
            row.lbw = lbw
            self.rowChanged.emit(index)
            self.mixChanged.emit()

    def set_span(self, index: int, start: float, stop: float) -> None:
        """The part of the sampling steps a row's UNet part acts in (fractions; start < stop)."""
        row = self.rows[index]
        if (row.start, row.stop) != (start, stop) and 0.0 <= start < stop <= 1.0:
            row.start, row.stop = start, stop
            self.rowChanged.emit(index)
            self.mixChanged.emit()

    def family_of(self, index: int) -> Family:
        """The family a row's blocks are those of: the loaded model's, else the file's own."""
        for value in (self.base_family, self.rows[index].family):
            if value in {f.value for f in Family}:
                return Family(value)
        return FALLBACK

    def set_base_family(self, family: str | None) -> None:
        """The loaded model's family: rows made for another family are marked before anything renders."""
        self.base_family = family
        for i, row in enumerate(self.rows):
            if not row.loading:
                self._check_family(row)
                self.rowChanged.emit(i)

    def mark_refused(self, refused: list[dict[str, Any]]) -> None:
        """What the worker refused (image meta ``adapter_errors``): shown on the rows."""
        by_path = {str(Path(str(r.get("path", "")))): str(r.get("message", "")) for r in refused}
        for i, row in enumerate(self.rows):
            message = by_path.get(str(Path(row.path)), "")
            if not message and row.problem.startswith(row.path):
                message = ""  # refused last time, used this time (the file was replaced): clear the mark
            elif not message:
                continue
            if row.problem != message:
                row.problem = message
                self.rowChanged.emit(i)

    def mark_applied(self, applied: list[dict[str, Any]]) -> None:
        """What the worker applied of each file (image meta ``adapters``): the rows' layer badges."""
        by_path = {str(Path(str(a.get("path", "")))): a for a in applied}
        for i, row in enumerate(self.rows):
            used = by_path.get(str(Path(row.path)))
            if used is None:
                continue
            layers, details = str(used.get("layers") or ""), str(used.get("load_details") or "")
            norms = {str(b): float(n) for b, n in (used.get("block_norms") or {}).items()}
            if (row.layers, row.load_details, row.block_norms) != (layers, details, norms):
                row.layers, row.load_details, row.block_norms = layers, details, norms
                self.rowChanged.emit(i)

    # ------------------------------------------------------------ header results
    def _on_info(self, row: AdapterRow, info: AdapterInfo) -> None:
        if row not in self.rows:
            return
        row.loading = False
        row.name = info.title or Path(row.path).stem
        row.trigger_words = list(info.trigger_words)
        row.family = info.family.value if isinstance(info.family, Family) else None
        self._check_family(row)
        self.rowChanged.emit(self.rows.index(row))
        if row.enabled and row.trigger_words:
            self.mixChanged.emit()  # its trigger words join the prompt

    def _on_problem(self, row: AdapterRow, message: str) -> None:
        if row not in self.rows:
            return
        row.loading = False
        row.problem = message
        self.rowChanged.emit(self.rows.index(row))
        self.message.emit(message)

    def _check_family(self, row: AdapterRow) -> None:
        mismatch = self.base_family and row.family and row.family != self.base_family
        family_problem = row.problem.startswith("made for ")
        if mismatch:
            row.problem = (
                f"made for {FAMILY_NAMES.get(row.family, row.family)}, but the base model is "
                f"{FAMILY_NAMES.get(self.base_family, self.base_family)}"
            )
        elif family_problem:
            row.problem = ""


def _clamp(value: float) -> float:
    return max(-WEIGHT_LIMIT, min(WEIGHT_LIMIT, round(float(value), 4)))
