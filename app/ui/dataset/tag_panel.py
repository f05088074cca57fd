"""Tags by frequency: click one to filter the grid; rename or delete it everywhere."""

from __future__ import annotations

import collections

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)


class TagPanel(QWidget):
    tagClicked = Signal(str)
    renameRequested = Signal(str, str)  # (old, new)
    deleteRequested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = QStandardItemModel(0, 2, self)
        self.model.setHorizontalHeaderLabels(["Tag", "Images"])
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Find a tag")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(40)
        self.table.clicked.connect(self._on_clicked)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu)
        self.rename_button = QPushButton("Rename…", self)
        self.rename_button.setToolTip("Rename the selected tag in every caption (undo restores the files).")
        self.rename_button.clicked.connect(self._ask_rename)
        self.delete_button = QPushButton("Delete", self)
        self.delete_button.setToolTip("Remove the selected tag from every caption (undo restores the files).")
        self.delete_button.clicked.connect(self._ask_delete)
        buttons = QHBoxLayout()
        buttons.addWidget(self.rename_button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

    def set_frequencies(self, counts: collections.Counter) -> None:
        selected = self.selected_tag()
        self.model.removeRows(0, self.model.rowCount())
        for tag, count in counts.most_common():
            name = QStandardItem(tag)
            name.setData(tag.casefold(), Qt.ItemDataRole.UserRole)
            number = QStandardItem(str(count))
            number.setData(count, Qt.ItemDataRole.UserRole)
            number.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.model.appendRow([name, number])
        if selected:
            self.select_tag(selected)

    def tags(self) -> list[tuple[str, int]]:
        """(tag, count) in the order shown."""
        out = []
        for row in range(self.proxy.rowCount()):
            out.append((self.proxy.index(row, 0).data(), int(self.proxy.index(row, 1).data(Qt.ItemDataRole.UserRole))))
        return out

    def selected_tag(self) -> str | None:
        rows = self.table.selectionModel().selectedRows(0)
        return rows[0].data() if rows else None

    def select_tag(self, tag: str) -> bool:
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data() == tag:
                self.table.selectRow(row)
                return True
        return False

    def _on_clicked(self, index: QModelIndex) -> None:
        self.tagClicked.emit(self.proxy.index(index.row(), 0).data())

    def _menu(self, pos) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        tag = self.proxy.index(index.row(), 0).data()
        menu = QMenu(self)
        for text, slot in (
            ("Show images with this tag", lambda: self.tagClicked.emit(tag)),
            ("Rename everywhere…", lambda: self._ask_rename(tag)),
            ("Delete everywhere", lambda: self._ask_delete(tag)),
        ):
            action = QAction(text, menu)
            action.triggered.connect(slot)
            menu.addAction(action)
        menu.exec(self.table.viewport().mapToGlobal(pos))

    def _ask_rename(self, tag: str | None = None) -> None:
        tag = tag if isinstance(tag, str) else self.selected_tag()
        if not tag:
            return
        new, ok = QInputDialog.getText(self, "Rename tag", f"Rename “{tag}” in every caption to:", text=tag)
        if ok and new.strip() and new.strip() != tag:
            self.renameRequested.emit(tag, new.strip())

    def _ask_delete(self, tag: str | None = None) -> None:
        tag = tag if isinstance(tag, str) else self.selected_tag()
        if not tag:
            return
        answer = QMessageBox.question(self, "Delete tag", f"Remove “{tag}” from every caption? Undo puts it back.")
        if answer == QMessageBox.StandardButton.Yes:
            self.deleteRequested.emit(tag)
