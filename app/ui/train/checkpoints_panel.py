"""The adapter files of the shown run: Use in Generate, Open folder, Compare."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

PATH_ROLE = Qt.ItemDataRole.UserRole


class CheckpointsPanel(QWidget):
    useInGenerate = Signal(str)  # an adapter file for the Generate tab's stack
    compareRequested = Signal(list)  # the chosen files (all of the run when none is selected)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_dir = ""
        self.list = QListWidget(self)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setToolTip(
            "Checkpoints saved during the run and the final adapter; double-click to use one in the Generate tab."
        )
        self.list.itemDoubleClicked.connect(lambda item: self.useInGenerate.emit(item.data(PATH_ROLE)))
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.use_button = QPushButton("Use in Generate", self)
        self.use_button.setToolTip("Add the selected checkpoint to the Generate tab's adapter stack.")
        self.use_button.clicked.connect(self._use_selected)
        self.folder_button = QPushButton("Open folder", self)
        self.folder_button.setToolTip("Show the run's folder in the file manager.")
        self.folder_button.clicked.connect(self.open_folder)
        self.compare_button = QPushButton("Compare…", self)
        self.compare_button.setToolTip(
            "Render one prompt and seed with each selected checkpoint (all when none is selected), side by side."
        )
        self.compare_button.clicked.connect(lambda: self.compareRequested.emit(self.chosen()))
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        for button in (self.use_button, self.folder_button, self.compare_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._update_buttons()

    def set_adapters(self, run_dir: str, adapters: list[tuple[str, str]]) -> None:
        self.run_dir = run_dir
        self.list.clear()
        for label, path in adapters:
            self._append(label, path)
        self._update_buttons()

    def add(self, label: str, path: str) -> None:
        if path in self.paths():
            return
        self._append(label, path)
        self._update_buttons()

    def _append(self, label: str, path: str) -> None:
        item = QListWidgetItem(f"{label} — {Path(path).name}")
        item.setData(PATH_ROLE, path)
        item.setToolTip(path)
        self.list.addItem(item)

    def paths(self) -> list[str]:
        return [self.list.item(i).data(PATH_ROLE) for i in range(self.list.count())]

    def labels(self) -> list[tuple[str, str]]:
        return [
            (self.list.item(i).text().split(" — ")[0], self.list.item(i).data(PATH_ROLE))
            for i in range(self.list.count())
        ]

    def selected(self) -> list[str]:
        return [item.data(PATH_ROLE) for item in self.list.selectedItems()]

    def chosen(self) -> list[str]:
        return self.selected() or self.paths()

    def select(self, path: str) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setSelected(item.data(PATH_ROLE) == path)

    def _use_selected(self) -> None:
        for path in self.selected():
            self.useInGenerate.emit(path)

    def open_folder(self) -> None:
        chosen = self.selected()
        folder = Path(chosen[0]).parent if chosen else Path(self.run_dir) if self.run_dir else None
        if folder is not None and folder.is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _update_buttons(self) -> None:
        self.use_button.setEnabled(bool(self.list.selectedItems()))
        self.folder_button.setEnabled(bool(self.run_dir))
        self.compare_button.setEnabled(self.list.count() > 0)
