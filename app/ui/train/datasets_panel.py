"""The datasets of a run: a table of folders (repeats, regularization, fallback caption) and,
under it, what each folder holds (pictures, captions, problems), scanned in the background."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.dataset.scan import Dataset, scan_dataset
from app.core.train_config import DatasetSpec
from app.ui.common.tasks import TaskRunner
from app.ui.train.form_fields import ERROR_STYLE, setting

COLUMNS = ("path", "repeats", "regularization", "caption")
HEADERS = ("Folder", "Repeats", "Reg.", "Caption")


@dataclass
class DatasetSummary:
    """What one dataset folder holds, for the form and for epochs -> steps."""

    path: str
    images: int = 0
    usable: int = 0
    captioned: int = 0  # usable pictures with a caption
    per_epoch: int = 0  # usable pictures × repeats
    problems: Counter = field(default_factory=Counter)  # label -> pictures with it
    error: str = ""  # the folder itself is unusable

    def describe(self) -> str:
        name = Path(self.path).name or self.path
        if self.error:
            return f"{name}: {self.error}"
        text = (
            f"{name}: {self.images} pictures, {self.usable} usable, {self.captioned} captioned, "
            f"{self.per_epoch} per epoch with repeats"
        )
        if self.problems:
            text += "; problems: " + ", ".join(f"{label} ({n})" for label, n in self.problems.most_common())
        return text


def summarize(dataset: Dataset, repeats: int = 0) -> DatasetSummary:
    """Counts of a scanned folder; ``repeats`` > 0 overrides the kohya folder repeats."""
    usable = dataset.usable_items()
    problems: Counter = Counter()
    for item in dataset.items:
        for label in {p.label for p in item.problems}:
            problems[label] += 1
    return DatasetSummary(
        path=str(dataset.root),
        images=len(dataset.items),
        usable=len(usable),
        captioned=sum(1 for i in usable if i.has_caption),
        per_epoch=sum(repeats or i.repeats for i in usable),
        problems=problems,
    )


class DatasetsPanel(QWidget):
    """Edits the ``datasets`` list of a TrainConfig."""

    changed = Signal()
    summariesChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._runner = TaskRunner(max_threads=1, parent=self)
        self._summaries: dict[str, DatasetSummary] = {}  # (resolved path text) -> summary
        self._pending: set[str] = set()
        self.min_side = 256
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(HEADERS))
        for column, name in enumerate(COLUMNS):
            self.table.horizontalHeaderItem(column).setToolTip(setting(f"datasets.{name}").tip)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setFixedHeight(96)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)  # the folder's own name stays in view
        self.table.setToolTip(setting("datasets").tip)
        self.table.itemChanged.connect(self._on_item_changed)

        self.add_button = QPushButton("Add folder…", self)
        self.add_button.setToolTip("Add a folder of training pictures.")
        self.add_button.clicked.connect(self._choose)
        self.use_open_button = QPushButton("Use Dataset tab's", self)
        self.use_open_button.setToolTip("Train on the folder open in the Dataset tab.")
        self.use_open_button.setEnabled(False)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Remove the selected dataset from this run (the folder is not touched).")
        self.remove_button.clicked.connect(self._remove_selected)
        self.summary = QLabel("No dataset yet: add a folder of pictures.", self)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.use_open_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.summary)
        self._open_folder = ""
        self.use_open_button.clicked.connect(lambda: self.use_folder(self._open_folder, replace=True))

    # ------------------------------------------------------------ values
    def specs(self) -> list[dict[str, Any]]:
        out = []
        for row in range(self.table.rowCount()):
            out.append(
                {
                    "path": self._text(row, 0),
                    "repeats": self._spin(row).value(),
                    "regularization": self._check(row).isChecked(),
                    "caption": self._text(row, 3),
                }
            )
        return out

    def set_specs(self, specs: list[DatasetSpec]) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for spec in specs:
            self._append(spec)
        self.table.blockSignals(False)
        self._rescan()
        self.changed.emit()

    def use_folder(self, folder: str, *, replace: bool = False) -> None:
        """Train on ``folder``: replaces the pictures (not the regularization sets) when ``replace``
        or when there are none yet."""
        if not folder:
            return
        specs = [DatasetSpec(**s) for s in self.specs()]
        if any(Path(s.path) == Path(folder) for s in specs):
            return
        kept = [s for s in specs if s.regularization or not replace]
        if not replace and any(not s.regularization for s in specs):
            return  # the user already chose pictures; the Dataset tab's folder does not override them
        self.set_specs([DatasetSpec(path=folder)] + kept)

    def set_open_folder(self, folder: str) -> None:
        """The folder open in the Dataset tab (offered by a button; used when the run has none)."""
        self._open_folder = folder
        self.use_open_button.setEnabled(bool(folder))
        self.use_open_button.setToolTip(
            f"Train on {folder} (open in the Dataset tab)."
            if folder
            else "Train on the folder open in the Dataset tab."
        )
        self.use_folder(folder)

    def refresh_folder(self, folder: str | Path) -> None:
        """The Dataset tab changed ``folder`` (captions written, pictures added): count its row
        again. A fresh scan, not the tab's items: this run's minimum picture side may differ."""
        root = Path(folder).resolve()
        stale = [p for p in self._paths() if _same_folder(p, root)]
        if not stale:
            return
        for path in stale:
            self._summaries.pop(path, None)
            self._pending.discard(path)
        self._runner.cancel_all()  # an older scan of these rows still running must not land
        self._pending.clear()
        self._rescan()

    def summaries(self) -> list[DatasetSummary]:
        return [self._summaries[p] for p in self._paths() if p in self._summaries]

    def scanning(self) -> bool:
        return bool(self._pending)

    def epoch_pictures(self) -> int | None:
        """Training pictures × repeats per epoch (regularization excluded); None until every folder is scanned."""
        total = 0
        for spec in self.specs():
            if spec["regularization"]:
                continue
            summary = self._summaries.get(spec["path"].strip())
            if summary is None:
                return None
            total += summary.per_epoch if not spec["repeats"] else summary.usable * spec["repeats"]
        return total

    def mark(self, error: bool) -> None:
        self.table.setStyleSheet(ERROR_STYLE if error else "")

    def wait(self, ms: int = 30_000) -> bool:
        return self._runner.wait(ms)

    # ------------------------------------------------------------ table
    def _append(self, spec: DatasetSpec) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        path_item = QTableWidgetItem(spec.path)
        path_item.setToolTip(spec.path)
        self.table.setItem(row, 0, path_item)
        spin = QSpinBox(self.table)
        spin.setRange(0, 10000)
        spin.setSpecialValueText("auto")
        spin.setValue(spec.repeats)
        spin.setToolTip(setting("datasets.repeats").tip)
        spin.valueChanged.connect(lambda _v: (self._show_summary(), self.changed.emit()))
        self.table.setCellWidget(row, 1, spin)
        check = QCheckBox(self.table)
        check.setChecked(spec.regularization)
        check.setToolTip(setting("datasets.regularization").tip)
        check.toggled.connect(lambda _v: (self._show_summary(), self.changed.emit()))
        self.table.setCellWidget(row, 2, check)
        self.table.setItem(row, 3, QTableWidgetItem(spec.caption))

    def _text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text().strip() if item is not None else ""

    def _spin(self, row: int) -> QSpinBox:
        return self.table.cellWidget(row, 1)  # type: ignore[return-value]

    def _check(self, row: int) -> QCheckBox:
        return self.table.cellWidget(row, 2)  # type: ignore[return-value]

    def _paths(self) -> list[str]:
        return [p for p in (self._text(r, 0) for r in range(self.table.rowCount())) if p]

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of training pictures", self._open_folder)
        if folder:
            specs = [DatasetSpec(**s) for s in self.specs()]
            self.set_specs(specs + [DatasetSpec(path=folder)])

    def _remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if not rows and self.table.rowCount():
            rows = [self.table.currentRow()] if self.table.currentRow() >= 0 else []
        specs = [DatasetSpec(**s) for s in self.specs()]
        for row in rows:
            del specs[row]
        self.set_specs(specs)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 0:
            self._rescan()
        self.changed.emit()

    # ------------------------------------------------------------ scanning
    def rescan(self) -> None:
        """Scan every folder again (pictures may have been added or fixed)."""
        self._runner.cancel_all()  # a rescan makes the results of earlier scans stale
        self._summaries.clear()
        self._pending.clear()
        self._rescan()

    def _rescan(self) -> None:
        for path in self._paths():
            if path in self._summaries or path in self._pending:
                continue
            self._pending.add(path)
            min_side = self.min_side
            self._runner.run(
                lambda p=path, m=min_side: scan_dataset(p, min_side=m),
                lambda ds, p=path: self._on_scanned(p, ds),
                lambda _kind, message, p=path: self._on_failed(p, message),
            )
        self._show_summary()

    def _on_scanned(self, path: str, dataset: Dataset) -> None:
        self._pending.discard(path)
        self._summaries[path] = summarize(dataset)
        self._summaries[path].path = path
        self._show_summary()
        self.summariesChanged.emit()

    def _on_failed(self, path: str, message: str) -> None:
        self._pending.discard(path)
        self._summaries[path] = DatasetSummary(path=path, error=message)
        self._show_summary()
        self.summariesChanged.emit()

    def _show_summary(self) -> None:
        lines = []
        for spec in self.specs():
            path = spec["path"]
            if not path:
                continue
            summary = self._summaries.get(path)
            role = " (regularization)" if spec["regularization"] else ""
            if summary is None:
                lines.append(f"{Path(path).name or path}{role}: counting pictures…")
            else:
                lines.append(summary.describe() + role)
        self.summary.setText("\n".join(lines) if lines else "No dataset yet: add a folder of pictures.")


def _same_folder(path: str, root: Path) -> bool:
    try:
        return Path(path).expanduser().resolve() == root
    except OSError:
        return False
