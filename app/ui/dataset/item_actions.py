"""What a right-click or double-click on a Dataset thumbnail does: Open, Show in folder,
Exclude from training (or Include again), Delete caption, and the enlarged picture."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMenu

from app.core.dataset.problems import ProblemKind
from app.core.dataset.scan import ImageItem
from app.ui.dataset.list_model import ItemRole
from app.ui.widgets.picture_dialog import PictureDialog

if TYPE_CHECKING:
    from app.ui.dataset.dataset_tab import DatasetTab


def is_excluded(item: ImageItem) -> bool:
    return item.has_problem(ProblemKind.EXCLUDED)


def open_path(path: Path) -> bool:
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def build_menu(tab: DatasetTab, items: list[ImageItem]) -> QMenu:
    """The context menu for the selected pictures (the one under the mouse when none is)."""
    menu = QMenu(tab)
    first = items[0]
    menu.addAction("Open", lambda: open_path(first.path)).setToolTip("Open the picture in the default viewer.")
    menu.addAction("Show in folder", lambda: open_path(first.path.parent))
    menu.addSeparator()
    count = f" ({len(items)} pictures)" if len(items) > 1 else ""
    if all(is_excluded(i) for i in items):
        menu.addAction(f"Include in training{count}", lambda: tab.session.set_excluded(items, False))
    else:
        menu.addAction(f"Exclude from training{count}", lambda: tab.session.set_excluded(items, True))
    delete = menu.addAction(f"Delete caption{count}", lambda: tab.delete_captions(items))
    delete.setEnabled(any(i.has_caption or i.caption_path.exists() for i in items))
    return menu


def show_context_menu(tab: DatasetTab, pos: QPoint) -> QMenu | None:
    index = tab.grid.indexAt(pos)
    if not index.isValid():
        return None
    items = tab.selected_items()
    under = index.data(ItemRole)
    if under is not None and under not in items:
        items = [under]
    if not items:
        return None
    menu = build_menu(tab, items)
    tab.context_menu = menu  # kept for tests; a new right-click replaces it
    menu.popup(tab.grid.viewport().mapToGlobal(pos))
    return menu


class PictureViewer(PictureDialog):
    """A dataset picture enlarged, with its caption (double-click a thumbnail)."""

    def show_item(self, item: ImageItem) -> None:
        self.setWindowTitle(item.path.name)
        self.show_picture(str(item.path), item.caption or "(no caption)")
        self.show()
        self.raise_()
