"""A strip of recent renders under the preview; clicking one shows it again."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

ICON = 56


class HistoryStrip(QListWidget):
    picked = Signal(str, dict)  # (path, meta)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setIconSize(QSize(ICON, ICON))
        self.setMinimumHeight(0)
        self.setMaximumHeight(ICON + 26)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setMovement(QListView.Movement.Static)
        self.setToolTip("Recent pictures: click one to show it again.")
        self.itemClicked.connect(self._on_click)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(0, 0)  # foldable: a short window hides the strip, not the picture

    def set_history(self, history: list[tuple[str, dict[str, Any]]]) -> None:
        self.clear()
        for path, meta in history:
            # Small tiles: the files are a few hundred kB at most and already on disk.
            item = QListWidgetItem(QIcon(QPixmap(path).scaled(ICON, ICON, Qt.AspectRatioMode.KeepAspectRatio)), "")
            item.setData(Qt.ItemDataRole.UserRole, (path, meta))
            item.setToolTip(f"Seed {meta.get('seed')}\n{path}")
            self.addItem(item)

    def paths(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole)[0] for i in range(self.count())]

    def _on_click(self, item: QListWidgetItem) -> None:
        path, meta = item.data(Qt.ItemDataRole.UserRole)
        self.picked.emit(path, dict(meta))
