"""Qt helpers for the dataset GUI tests: real drop events, thumbnails loaded."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication


def drop(target, paths: list[Path]) -> None:
    """A real drag-enter + drop of file URLs, as a file manager sends them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(
        QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(target, event)
    assert event.isAccepted()


def all_thumbnails_loaded(tab) -> bool:
    for row in range(tab.model.rowCount()):
        item = tab.model.item(row)
        tab.model.data(tab.model.index(row), Qt.ItemDataRole.DecorationRole)  # asks for it, like the view
        if item.usable and not tab.thumbnails.is_loaded(str(item.path)):
            return False
    return True


def caption_files(folder: Path) -> dict[str, bytes]:
    """name -> bytes of every .txt in ``folder``; safe while another thread adds or removes files."""
    out = {}
    for p in folder.glob("*.txt"):
        try:
            out[p.name] = p.read_bytes()
        except FileNotFoundError:
            pass
    return out
