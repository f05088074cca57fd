"""Views of the run queue and of past runs (both bind to :class:`TrainOps`)."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.train_queue import EntryState
from app.ui.train.run_history import RunInfo, RunStatus
from app.ui.train.train_ops import TrainOps

FAILED_COLOUR = QColor("#c62828")
ID_ROLE = Qt.ItemDataRole.UserRole


def _buttons(*buttons: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for button in buttons:
        row.addWidget(button)
    row.addStretch(1)
    return row


class QueuePanel(QWidget):
    def __init__(self, ops: TrainOps, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ops = ops
        self.list = QListWidget(self)
        self.list.setToolTip(
            "Runs in order: each starts when the one before it ends; a failed run is marked and the next one starts."
        )
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.note = QLabel("", self)
        self.start_button = QPushButton("Start queue", self)
        self.start_button.setToolTip("Run the waiting runs one after another.")
        self.start_button.clicked.connect(ops.start_queue)
        self.up_button = QPushButton("Up", self)
        self.up_button.setToolTip("Run the selected waiting run earlier.")
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button = QPushButton("Down", self)
        self.down_button.setToolTip("Run the selected waiting run later.")
        self.down_button.clicked.connect(lambda: self._move(1))
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Take the selected run out of the queue (a running one must be stopped first).")
        self.remove_button.clicked.connect(self._remove)
        self.clear_button = QPushButton("Clear finished", self)
        self.clear_button.setToolTip("Remove the finished, stopped and failed runs from this list.")
        self.clear_button.clicked.connect(ops.clear_finished)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.note)
        layout.addLayout(
            _buttons(self.start_button, self.up_button, self.down_button, self.remove_button, self.clear_button)
        )
        ops.queueChanged.connect(self.refresh)
        ops.currentChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        selected = self._selected_id()
        self.list.clear()
        for entry in self.ops.entries:
            item = QListWidgetItem(entry.describe())
            item.setData(ID_ROLE, entry.id)
            if entry.state is EntryState.FAILED:
                item.setForeground(QBrush(FAILED_COLOUR))
                item.setToolTip(entry.error)
            elif entry.run_dir:
                item.setToolTip(entry.run_dir)
            self.list.addItem(item)
            if entry.id == selected:
                item.setSelected(True)
        waiting = len(self.ops.waiting())
        if self.ops.paused and waiting:
            self.note.setText(f"Paused after Stop: {waiting} waiting; Start queue goes on.")
        elif waiting:
            self.note.setText(f"{waiting} waiting.")
        else:
            self.note.setText("Add runs with “Add to queue”.")
        self._update_buttons()

    def _selected_id(self) -> int | None:
        items = self.list.selectedItems()
        return items[0].data(ID_ROLE) if items else None

    def _move(self, delta: int) -> None:
        entry_id = self._selected_id()
        if entry_id is not None:
            self.ops.move(entry_id, delta)

    def _remove(self) -> None:
        entry_id = self._selected_id()
        if entry_id is not None:
            self.ops.remove(entry_id)

    def _update_buttons(self) -> None:
        entry = self.ops.entry(self._selected_id()) if self._selected_id() is not None else None
        self.start_button.setEnabled(self.ops.current is None and bool(self.ops.waiting()))
        movable = entry is not None and entry.state is EntryState.WAITING
        self.up_button.setEnabled(movable)
        self.down_button.setEnabled(movable)
        self.remove_button.setEnabled(entry is not None and not entry.state.active)


HISTORY_COLUMNS = ("Run", "Status", "Steps", "Final loss", "Samples", "Started")


class HistoryPanel(QWidget):
    """Past runs from their folders: select one to show it; Resume an interrupted one."""

    loadConfigRequested = Signal(object)  # the run's TrainConfig, for the form

    def __init__(self, ops: TrainOps, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ops = ops
        self.table = QTableWidget(0, len(HISTORY_COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(HISTORY_COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setToolTip(
            "Runs read from their folders; select one to see its loss curve, samples and checkpoints."
        )
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("Read the run folders again.")
        self.refresh_button.clicked.connect(ops.refresh_history)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setToolTip("Continue the selected interrupted run from its last save, exactly where it was.")
        self.resume_button.clicked.connect(self.resume_selected)
        self.load_button = QPushButton("Load settings", self)
        self.load_button.setToolTip("Put the selected run's settings into the form, to train a variation.")
        self.load_button.clicked.connect(self._load_selected)
        self.folder_button = QPushButton("Open folder", self)
        self.folder_button.setToolTip("Show the selected run's folder in the file manager.")
        self.folder_button.clicked.connect(self._open_selected)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.table, 1)
        layout.addLayout(_buttons(self.refresh_button, self.resume_button, self.load_button, self.folder_button))
        ops.historyChanged.connect(self.refresh)
        ops.currentChanged.connect(self._update_buttons)
        self.refresh()

    def runs(self) -> list[RunInfo]:
        return list(self.ops.history)

    def refresh(self) -> None:
        selected = self.selected()
        chosen = str(selected.path) if selected is not None else ""
        if self.ops.resume_offer and any(str(r.path) == self.ops.resume_offer for r in self.ops.history):
            chosen, self.ops.resume_offer = self.ops.resume_offer, ""  # offered once, ready for Resume
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for run in self.ops.history:
            row = self.table.rowCount()
            self.table.insertRow(row)
            steps = f"{run.step}/{run.total}" if run.total else str(run.step)
            if run.status is RunStatus.INTERRUPTED and run.saved_step != run.step:
                steps += f" (saved at {run.saved_step})"
            loss = f"{run.final_loss:.4f}" if run.final_loss is not None else ""
            if run.best is not None:  # the checkpoint to use: the lowest validation loss
                loss += f" · best val {run.best[1]:.4f} at step {run.best[0]}"
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)) if run.started else ""
            for column, text in enumerate(
                (run.path.name, run.status.value, steps, loss, str(len(run.samples)), started)
            ):
                item = QTableWidgetItem(text)
                item.setToolTip(run.problem or str(run.path))
                if run.status is RunStatus.UNREADABLE:
                    item.setForeground(QBrush(FAILED_COLOUR))
                self.table.setItem(row, column, item)
            if str(run.path) == chosen:
                self.table.selectRow(row)
        self.table.blockSignals(False)
        self._update_buttons()

    def selected(self) -> RunInfo | None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if not rows:
            return None
        row = min(rows)
        return self.ops.history[row] if row < len(self.ops.history) else None

    def select(self, run_dir: str) -> bool:
        for row, run in enumerate(self.ops.history):
            if str(run.path) == str(run_dir):
                self.table.selectRow(row)
                return True
        return False

    def _on_selection(self) -> None:
        run = self.selected()
        if run is not None:
            self.ops.show_run(run.path)
        self._update_buttons()

    def resume_selected(self) -> None:
        run = self.selected()
        if run is not None and run.resumable:
            self.ops.resume(run.path)

    def _load_selected(self) -> None:
        run = self.selected()
        if run is not None and run.config is not None:
            self.loadConfigRequested.emit(run.config)

    def _open_selected(self) -> None:
        run = self.selected()
        if run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    def _update_buttons(self) -> None:
        run = self.selected()
        self.resume_button.setEnabled(run is not None and run.resumable)
        self.load_button.setEnabled(run is not None and run.config is not None)
        self.folder_button.setEnabled(run is not None)
