"""XY grid: two adapters, a list of weights (or block-weight presets) for each, one picture per pair.

:class:`XYGrid` submits one generate job per cell (same seed, only the two weights
change, so the worker only re-patches the layers of those two adapters) and tells which
cell is ready. :class:`XYGridDialog` shows the grid and saves it as one PNG (composed
and written on a thread pool).
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRect, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core import paths
from app.core.configs import WEIGHT_LIMIT, ConfigError
from app.core.events import ImageReady
from app.ui.common.tasks import TaskRunner
from app.ui.generate.generate_ops import GenerateModel
from app.ui.jobs import JobError, JobHandle, JobState
from app.worker.protocol import JobKind

MAX_CELLS = 64
THUMB = 160
LABEL_H = 28


Sweep = float | str  # an adapter weight, or a block-weight preset (lbw) name


def parse_axis(text: str, what: str) -> list[Sweep]:
    """Weights (``0, 0.5, 1``) or block-weight presets (``MIDD, OUTS, ALL``) for one axis of the grid."""
    items = [i.strip() for i in text.replace(";", ",").split(",") if i.strip()]
    if not items or any(_is_number(i) for i in items):  # a weight among them: weights, each checked
        return list(parse_weights(text, what))
    from app.core.block_weights import BlockWeightError, check

    for item in items:
        try:
            check(item)
        except BlockWeightError as exc:
            raise ConfigError(f"{what}: {exc}") from None
    return list(items)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def axis_label(value: Sweep) -> str:
    return f"{value:g}" if isinstance(value, float) else value


def parse_weights(text: str, what: str) -> list[float]:
    """``"0, 0.5, 1"`` -> [0.0, 0.5, 1.0]; the message names the field and the bad item."""
    out: list[float] = []
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"{what}: {item!r} is not a number (write weights like 0, 0.5, 1)") from None
        if abs(value) > WEIGHT_LIMIT:
            raise ConfigError(f"{what}: {value} is beyond ±{WEIGHT_LIMIT:g}")
        out.append(value)
    if not out:
        raise ConfigError(f"{what}: give at least one weight, e.g. 0, 0.5, 1")
    return out


class XYGrid(QObject):
    cellReady = Signal(int, int, str)  # (column, row, picture path)
    progress = Signal(int, int)  # (done, total)
    failed = Signal(str)

    def __init__(self, model: GenerateModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.xs: list[Sweep] = []
        self.ys: list[Sweep] = []
        self.x_name = self.y_name = ""
        self.cells: dict[str, tuple[int, int]] = {}  # job id -> (column, row)
        self.paths: dict[tuple[int, int], str] = {}

    @property
    def total(self) -> int:
        return len(self.xs) * len(self.ys)

    @property
    def running(self) -> bool:
        return any(not j.state.is_final for j in map(self.model.tracker.get, self.cells) if j is not None)

    def start(self, values: dict[str, Any], x_row: int, xs: list[Sweep], y_row: int, ys: list[Sweep]) -> int:
        """Submit every cell; raises ConfigError with a sentence when the grid makes no sense."""
        stack = self.model.stack
        if not (0 <= x_row < len(stack) and 0 <= y_row < len(stack)):
            raise ConfigError("pick two adapters of the stack for X and Y")
        if x_row == y_row:
            raise ConfigError("X and Y must be two different adapters")
        if len(xs) * len(ys) > MAX_CELLS:
            raise ConfigError(f"{len(xs)} x {len(ys)} pictures is more than {MAX_CELLS}; use fewer weights")
        request = self.model.make_request(values)
        if request.seed < 0:
            raise ConfigError("lock the seed first: every cell of the grid must use the same seed")
        self.cancel()
        self.xs, self.ys = xs, ys
        self.x_name, self.y_name = stack.rows[x_row].display_name, stack.rows[y_row].display_name
        self.cells, self.paths = {}, {}
        for j, wy in enumerate(ys):
            for i, wx in enumerate(xs):
                params = request.to_dict()
                adapters = copy.deepcopy(params["adapters"])
                adapters[x_row].update(_cell(wx), enabled=True)
                adapters[y_row].update(_cell(wy), enabled=True)
                params["adapters"] = adapters
                job_id = uuid.uuid4().hex
                self.cells[job_id] = (i, j)
                self.model.tracker.submit(JobKind.GENERATE.value, {"id": job_id, **params}, connect=self._follow)
        self.progress.emit(0, self.total)
        return self.total

    def cancel(self) -> None:
        for job_id in self.cells:
            job = self.model.tracker.get(job_id)
            if job is not None and not job.state.is_final:
                self.model.tracker.cancel(job_id)

    def _follow(self, handle: JobHandle) -> None:
        job_id = handle.id
        handle.image.connect(lambda image: self._on_image(job_id, image))
        handle.finished.connect(lambda state, error: self._on_finished(job_id, state, error))

    def _on_image(self, job_id: str, image: ImageReady) -> None:
        cell = self.cells.get(job_id)
        if cell is None:
            return
        self.paths[cell] = image.path
        self.cellReady.emit(cell[0], cell[1], image.path)
        self.progress.emit(len(self.paths), self.total)

    def _on_finished(self, job_id: str, state: JobState, error: JobError | None) -> None:
        if job_id in self.cells and state is JobState.FAILED:
            self.failed.emit(getattr(error, "message", "") or "a cell of the grid failed")


def _cell(value: Sweep) -> dict[str, Any]:
    """What one axis value sets on its adapter: the weight, or the block weights (the weight kept)."""
    return {"lbw": value} if isinstance(value, str) else {"weight": value}


def compose_grid(
    paths_by_cell: dict[tuple[int, int], str], xs: list[Sweep], ys: list[Sweep], x_name: str, y_name: str
) -> QImage:
    """One picture: labelled columns (X weights) and rows (Y weights). Safe off the GUI thread."""
    images = {cell: QImage(p) for cell, p in paths_by_cell.items()}
    w = max((im.width() for im in images.values()), default=THUMB)
    h = max((im.height() for im in images.values()), default=THUMB)
    margin = max(LABEL_H * 3, 90)
    grid = QImage(margin + w * len(xs), LABEL_H * 2 + h * len(ys), QImage.Format.Format_RGB32)
    grid.fill(QColor("white"))
    painter = QPainter(grid)
    font = QFont()
    font.setPixelSize(13)
    painter.setFont(font)
    painter.setPen(QColor("black"))
    painter.drawText(QRect(margin, 0, w * len(xs), LABEL_H), Qt.AlignmentFlag.AlignCenter, f"X: {x_name}")
    painter.drawText(QRect(0, 0, margin, LABEL_H), Qt.AlignmentFlag.AlignCenter, f"Y: {y_name}")
    for i, wx in enumerate(xs):
        painter.drawText(QRect(margin + i * w, LABEL_H, w, LABEL_H), Qt.AlignmentFlag.AlignCenter, axis_label(wx))
    for j, wy in enumerate(ys):
        painter.drawText(QRect(0, LABEL_H * 2 + j * h, margin, h), Qt.AlignmentFlag.AlignCenter, axis_label(wy))
    for (i, j), image in images.items():
        if not image.isNull():
            painter.drawImage(QRect(margin + i * w, LABEL_H * 2 + j * h, w, h), image)
    painter.end()
    return grid


class XYGridDialog(QDialog):
    def __init__(self, model: GenerateModel, values_fn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("XY grid")
        self.model = model
        self.values_fn = values_fn  # the Generate tab's current settings
        self.grid = XYGrid(model, self)
        self.runner = TaskRunner(max_threads=1, parent=self)
        self.x_combo, self.y_combo = QComboBox(self), QComboBox(self)
        for combo in (self.x_combo, self.y_combo):
            combo.addItems([row.display_name for row in model.stack.rows])
        if len(model.stack) > 1:
            self.y_combo.setCurrentIndex(1)
        self.x_weights = QLineEdit("0, 0.5, 1", self)
        self.y_weights = QLineEdit("0, 0.5, 1", self)
        for edit in (self.x_weights, self.y_weights):
            edit.setToolTip(
                "Weights separated by commas, e.g. -1, 0, 0.5, 1; or block-weight presets, e.g. MIDD, OUTS, ALL"
            )
        form = QFormLayout()
        form.addRow("X adapter", self.x_combo)
        form.addRow("X weights or presets", self.x_weights)
        form.addRow("Y adapter", self.y_combo)
        form.addRow("Y weights or presets", self.y_weights)
        self.start_button = QPushButton("Render grid", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.save_button = QPushButton("Save as one picture…", self)
        self.save_button.setEnabled(False)
        # Enter renders; only a click cancels or saves (Escape closes the dialog).
        self.start_button.setDefault(True)
        for button in (self.cancel_button, self.save_button):
            button.setAutoDefault(False)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.save_button):
            buttons.addWidget(b)
        self.cells_widget = QWidget(self)
        self.cells_layout = QGridLayout(self.cells_widget)
        self.cells_layout.setSpacing(2)
        scroll = QScrollArea(self)
        scroll.setWidget(self.cells_widget)
        scroll.setWidgetResizable(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)
        self.cell_labels: dict[tuple[int, int], QLabel] = {}
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.grid.cancel)
        self.save_button.clicked.connect(self.choose_and_save)
        self.grid.cellReady.connect(self._on_cell)
        self.grid.progress.connect(lambda done, total: self.status.setText(f"{done} / {total} pictures"))
        self.grid.failed.connect(self.status.setText)
        self.resize(760, 640)

    def start(self) -> None:
        try:
            xs = parse_axis(self.x_weights.text(), "X weights")
            ys = parse_axis(self.y_weights.text(), "Y weights")
            self.grid.start(self.values_fn(), self.x_combo.currentIndex(), xs, self.y_combo.currentIndex(), ys)
        except ConfigError as exc:
            self.status.setText(str(exc))
            return
        self._lay_out(xs, ys)
        self.save_button.setEnabled(False)

    def _lay_out(self, xs: list[Sweep], ys: list[Sweep]) -> None:
        while self.cells_layout.count():
            item = self.cells_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.cell_labels = {}
        for i, wx in enumerate(xs):
            self.cells_layout.addWidget(
                QLabel(f"{self.grid.x_name} {axis_label(wx)}", self.cells_widget),
                0,
                i + 1,
                Qt.AlignmentFlag.AlignCenter,
            )
        for j, wy in enumerate(ys):
            self.cells_layout.addWidget(QLabel(f"{self.grid.y_name}\n{axis_label(wy)}", self.cells_widget), j + 1, 0)
            for i in range(len(xs)):
                label = QLabel("…", self.cells_widget)
                label.setFixedSize(THUMB, THUMB)
                label.setAlignment(Qt.AlignmentFlag.AlignCenter)
                label.setFrameShape(QFrame.Shape.StyledPanel)
                self.cells_layout.addWidget(label, j + 1, i + 1)
                self.cell_labels[(i, j)] = label

    def _on_cell(self, i: int, j: int, path: str) -> None:
        label = self.cell_labels.get((i, j))
        if label is not None:
            label.setPixmap(QPixmap(path).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio))
            label.setToolTip(path)
        self.save_button.setEnabled(len(self.grid.paths) == self.grid.total)

    def choose_and_save(self) -> None:
        start = str(paths.outputs_dir() / "xy-grid.png")
        target, _ = QFileDialog.getSaveFileName(self, "Save the grid", start, "PNG (*.png)")
        if target:
            self.save(target)

    def save(self, target: str) -> int:
        """Compose and write the grid on the thread pool; the status says where it went."""
        grid = self.grid
        cells, xs, ys, xn, yn = dict(grid.paths), list(grid.xs), list(grid.ys), grid.x_name, grid.y_name

        def work() -> str:
            from app.core.files import temp_path_beside

            out = Path(target)
            tmp = temp_path_beside(out)
            if not compose_grid(cells, xs, ys, xn, yn).save(str(tmp), "PNG"):
                tmp.unlink(missing_ok=True)
                raise OSError(f"{out}: could not be written")
            tmp.replace(out)
            return str(out)

        return self.runner.run(
            work, lambda p: self.status.setText(f"Saved the grid to {p}"), lambda kind, msg: self.status.setText(msg)
        )
