"""Compare checkpoints: one prompt and seed rendered with each chosen checkpoint, in one grid.

:class:`CompareOps` submits one ``generate`` job per checkpoint (the adapter at a fixed
weight; optionally one without any adapter) and collects the pictures; the grid is
composed and saved as one PNG on a pool thread. :class:`CompareDialog` binds to it.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRect, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.configs import ConfigError, GenerateRequest, Scheduler
from app.core.events import ImageReady
from app.core.files import temp_path_beside
from app.ui.common.errors import describe_error
from app.ui.common.tasks import TaskRunner
from app.ui.jobs import JobError, JobHandle, JobState, JobTracker
from app.ui.train.sample_gallery import load_thumbnail
from app.worker.protocol import JobKind

CELL = 256
LABEL_H = 28
MAX_COLUMNS = 4


@dataclass
class Cell:
    label: str
    adapter: str  # "" for the base model alone
    job_id: str = ""
    image: str = ""
    error: str = ""

    @property
    def finished(self) -> bool:
        return bool(self.image or self.error)


def compose_grid(cells: list[tuple[str, str]], out: str, cell: int = CELL) -> str:
    """Draw (label, picture) pairs in rows of up to four, a label under each, and save a PNG atomically.
    Runs on a pool thread (QImage and QPainter on a QImage are thread-safe); returns ``out``."""
    columns = min(MAX_COLUMNS, max(1, len(cells)))
    rows = math.ceil(len(cells) / columns)
    grid = QImage(columns * cell, rows * (cell + LABEL_H), QImage.Format.Format_RGB32)
    grid.fill(QColor(255, 255, 255))
    painter = QPainter(grid)
    font = QFont()
    font.setPixelSize(14)
    painter.setFont(font)
    try:
        for index, (label, path) in enumerate(cells):
            x, y = (index % columns) * cell, (index // columns) * (cell + LABEL_H)
            image = QImage(path) if path else QImage()
            if not image.isNull():
                scaled = image.scaled(
                    cell, cell, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                )
                painter.drawImage(x + (cell - scaled.width()) // 2, y + (cell - scaled.height()) // 2, scaled)
            painter.setPen(QColor(20, 20, 20))
            painter.drawText(QRect(x, y + cell, cell, LABEL_H), Qt.AlignmentFlag.AlignCenter, label)
    finally:
        painter.end()
    target = Path(out)
    tmp = temp_path_beside(target)
    try:
        if not grid.save(str(tmp), "PNG"):
            raise OSError(f"{target}: could not write the picture")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return str(target)


class CompareOps(QObject):
    cellChanged = Signal(int)  # a picture arrived or a render failed
    finished = Signal()  # every cell has its picture or its error
    gridSaved = Signal(str, str)  # (path or "", error or "")

    def __init__(self, tracker: JobTracker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tracker = tracker
        self.cells: list[Cell] = []
        self._runner = TaskRunner(max_threads=1, parent=self)

    def start(
        self,
        request: dict[str, Any],
        adapters: list[tuple[str, str]],
        *,
        weight: float = 1.0,
        include_base: bool = False,
    ) -> list[Cell]:
        """Render ``request`` (GenerateRequest fields) once per (label, adapter file); raises ConfigError."""
        self.cancel()
        cells = ([Cell("no adapter", "")] if include_base else []) + [Cell(label, path) for label, path in adapters]
        jobs = []
        for cell in cells:
            values = dict(request, adapters=[{"path": cell.adapter, "weight": weight}] if cell.adapter else [])
            jobs.append(GenerateRequest.from_dict(values, where="compare").to_dict())  # all checked before any runs
        self.cells = cells
        for cell, params in zip(cells, jobs):
            cell.job_id = uuid.uuid4().hex  # known before submit(): a worker that cannot start answers at once
            self.tracker.submit(
                JobKind.GENERATE.value,
                {**params, "id": cell.job_id},
                connect=lambda handle, c=cell: self._follow(c, handle),
            )
        return cells

    def cancel(self) -> None:
        for cell in self.cells:
            if not cell.finished:
                self.tracker.cancel(cell.job_id)
                cell.error = "cancelled"

    def done(self) -> bool:
        return bool(self.cells) and all(c.finished for c in self.cells)

    def _index(self, job_id: str) -> int:
        return next((i for i, c in enumerate(self.cells) if c.job_id == job_id), -1)

    def _follow(self, cell: Cell, handle: JobHandle) -> None:
        handle.image.connect(lambda image: self._on_image(cell.job_id, image))
        handle.finished.connect(lambda state, error: self._on_finished(cell.job_id, state, error))

    def _on_image(self, job_id: str, image: ImageReady) -> None:
        index = self._index(job_id)
        if index >= 0:
            self.cells[index].image = image.path
            self.cellChanged.emit(index)
            if self.done():
                self.finished.emit()

    def _on_finished(self, job_id: str, state: JobState, error: JobError | None) -> None:
        index = self._index(job_id)
        if index < 0 or self.cells[index].finished:
            return
        self.cells[index].error = "cancelled" if state is JobState.CANCELLED else describe_error(error)
        self.cellChanged.emit(index)
        if self.done():
            self.finished.emit()

    def save_grid(self, out: str) -> None:
        pairs = [(c.label, c.image) for c in self.cells]
        self._runner.run(
            lambda: compose_grid(pairs, out),
            lambda path: self.gridSaved.emit(path, ""),
            lambda _k, message: self.gridSaved.emit("", message),
        )

    def wait(self, ms: int = 30_000) -> bool:
        return self._runner.wait(ms)


class CompareDialog(QDialog):
    """Pick checkpoints, a prompt and a seed; see the pictures side by side; save them as one image."""

    def __init__(
        self,
        ops: CompareOps,
        adapters: list[tuple[str, str]],
        defaults: dict[str, Any],
        chosen: list[str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Compare checkpoints")
        self.ops = ops
        self.defaults = dict(defaults)
        self._runner = TaskRunner(max_threads=2, parent=self)
        self.list = QListWidget(self)
        self.list.setToolTip("The checkpoints to render; each gives one picture of the grid.")
        for label, path in adapters:
            item = QListWidgetItem(f"{label} — {Path(path).name}")
            item.setData(Qt.ItemDataRole.UserRole, (label, path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if not chosen or path in chosen else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.list.setMaximumHeight(120)
        self.prompt = QLineEdit(str(defaults.get("prompt", "")), self)
        self.prompt.setToolTip("The prompt rendered with every checkpoint.")
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(defaults.get("seed", 1234)) % (2**31))
        self.seed.setToolTip("The same seed for every picture, so only the checkpoint differs.")
        self.steps = QSpinBox(self)
        self.steps.setRange(1, 500)
        self.steps.setValue(int(defaults.get("steps", 20)))
        self.steps.setToolTip("Sampling steps per picture.")
        self.weight = QDoubleSpinBox(self)
        self.weight.setRange(-2.0, 2.0)
        self.weight.setSingleStep(0.1)
        self.weight.setValue(1.0)
        self.weight.setToolTip("Adapter weight for every checkpoint.")
        self.include_base = QCheckBox("Also without adapter", self)
        self.include_base.setToolTip("Add a picture of the base model alone, as a reference.")
        self.render_button = QPushButton("Render", self)
        self.render_button.setDefault(True)
        self.render_button.clicked.connect(self.start_render)
        self.save_button = QPushButton("Save grid…", self)
        self.save_button.setAutoDefault(False)  # Enter renders, never opens the save dialog
        self.save_button.setToolTip("Save every picture of the grid, labelled, as one PNG.")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._choose_save)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.grid_host = QWidget(self)
        self.grid = QGridLayout(self.grid_host)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)

        form = QFormLayout()
        form.addRow("Checkpoints", self.list)
        form.addRow("Prompt", self.prompt)
        row = QHBoxLayout()
        for label, widget in (("Seed", self.seed), ("Steps", self.steps), ("Weight", self.weight)):
            row.addWidget(QLabel(label, self))
            row.addWidget(widget)
        row.addWidget(self.include_base)
        row.addStretch(1)
        form.addRow(row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.render_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(scroll, 1)
        self.resize(900, 640)
        self._cells: list[QLabel] = []
        ops.cellChanged.connect(self._on_cell)
        ops.finished.connect(self._on_done)
        ops.gridSaved.connect(self._on_saved)

    def checked(self) -> list[tuple[str, str]]:
        out = []
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                label, path = item.data(Qt.ItemDataRole.UserRole)
                out.append((label, path))
        return out

    def start_render(self) -> bool:
        chosen = self.checked()
        if not chosen:
            self.status.setText("Tick at least one checkpoint.")
            return False
        request = dict(self.defaults, prompt=self.prompt.text(), seed=self.seed.value(), steps=self.steps.value())
        request.setdefault("scheduler", Scheduler.EULER.value)
        try:
            cells = self.ops.start(
                request, chosen, weight=self.weight.value(), include_base=self.include_base.isChecked()
            )
        except ConfigError as exc:
            self.status.setText(str(exc))
            return False
        for label in self._cells:
            label.setParent(None)
            label.deleteLater()
        self._cells = []
        columns = min(MAX_COLUMNS, len(cells))
        for index, cell in enumerate(cells):
            picture = QLabel("rendering…", self.grid_host)
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setMinimumSize(CELL, CELL)
            caption = QLabel(cell.label, self.grid_host)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setToolTip(cell.adapter or "the base model alone")
            self.grid.addWidget(picture, (index // columns) * 2, index % columns)
            self.grid.addWidget(caption, (index // columns) * 2 + 1, index % columns)
            self._cells.extend([picture, caption])
        self.save_button.setEnabled(False)
        self.status.setText(f"Rendering {len(cells)} pictures (after the job that is running now, if any)…")
        return True

    def pictures(self) -> list[QLabel]:
        return self._cells[0::2]

    def _on_cell(self, index: int) -> None:
        cell = self.ops.cells[index]
        picture = self.pictures()[index] if index < len(self.pictures()) else None
        if picture is None:
            return
        if cell.error:
            picture.setText(cell.error)
            picture.setWordWrap(True)
            return
        self._runner.run(
            lambda p=cell.image: load_thumbnail(p, CELL),
            lambda image, w=picture: w.setPixmap(QPixmap.fromImage(image)),
            lambda _k, message, w=picture: w.setText(message),
        )

    def _on_done(self) -> None:
        failed = sum(1 for c in self.ops.cells if c.error)
        self.save_button.setEnabled(any(c.image for c in self.ops.cells))
        self.status.setText("Done." if not failed else f"Done; {failed} could not be rendered (see each cell).")

    def _choose_save(self) -> None:
        start = str(Path(self.defaults.get("output_dir") or Path.home()) / "compare.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save the grid", start, "PNG pictures (*.png)")
        if path:
            self.save_grid(path if path.lower().endswith(".png") else path + ".png")

    def save_grid(self, path: str) -> None:
        self.status.setText(f"Saving {path} …")
        self.ops.save_grid(path)

    def _on_saved(self, path: str, error: str) -> None:
        self.status.setText(f"Saved {path}" if path else f"Could not save the grid: {error}")

    def wait(self, ms: int = 30_000) -> bool:
        return self._runner.wait(ms) and self.ops.wait(ms)
