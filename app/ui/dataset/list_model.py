"""The thumbnail grid's model (a QAbstractListModel over the session's items), its filter
proxy (the filter box, parsed by :mod:`app.core.dataset.filter`) and the badge delegate."""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.core.dataset.filter import parse_filter
from app.core.dataset.problems import ProblemKind
from app.core.dataset.scan import ImageItem
from app.ui.dataset.dataset_ops import DatasetSession
from app.ui.dataset.thumbnails import THUMB_SIZE, ThumbnailLoader

ItemRole = Qt.ItemDataRole.UserRole + 1
BadgeRole = Qt.ItemDataRole.UserRole + 2  # "error" | "note" | ""
PendingRole = Qt.ItemDataRole.UserRole + 3

_Index = QModelIndex | QPersistentModelIndex


class DatasetListModel(QAbstractListModel):
    def __init__(self, session: DatasetSession, thumbnails: ThumbnailLoader, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.thumbnails = thumbnails
        self._rows: dict[int, int] = {}  # id(item) -> row
        self._row_of_path: dict[str, int] = {}
        self._placeholder = _placeholder_pixmap()
        self._broken = QApplication.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        session.opened.connect(self._reset)
        session.itemsAdded.connect(self._on_added)
        session.itemsChanged.connect(self._on_changed)
        thumbnails.ready.connect(self._on_thumb)
        thumbnails.failed.connect(self._on_thumb)

    @property
    def items(self) -> list[ImageItem]:
        return self.session.items

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.session.items)

    def item(self, row: int) -> ImageItem | None:
        return self.session.items[row] if 0 <= row < len(self.session.items) else None

    def row_of(self, item: ImageItem) -> int:
        return self._rows.get(id(item), -1)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole):
        item = self.item(index.row()) if index.isValid() else None
        if item is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return item.path.name
        if role == Qt.ItemDataRole.DecorationRole:
            if not _decodable(item):
                return self._broken
            key = str(item.path)
            pixmap = self.thumbnails.pixmap(key, item.mtime_ns, item.file_size)
            if pixmap is not None:
                return pixmap
            return self._broken if self.thumbnails.has_failed(key) else self._placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [str(item.path), f"{item.width}×{item.height}, repeats {item.repeats}"]
            lines += [("✖ " if p.blocking else "• ") + p.message for p in item.problems]
            lines.append(f"caption: {item.caption}" if item.caption else "no caption")
            return "\n".join(lines)
        if role == ItemRole:
            return item
        if role == BadgeRole:
            if not item.usable:
                return "error"
            return "note" if item.problems else ""
        if role == PendingRole:
            return self.session.is_pending(item)
        return None

    # ------------------------------------------------------------ updates
    def _reset(self, _root: str = "") -> None:
        self.beginResetModel()
        self.thumbnails.clear()
        self._rows.clear()
        self._row_of_path.clear()
        self.endResetModel()

    def _on_added(self, first: int, count: int) -> None:
        self.beginInsertRows(QModelIndex(), first, first + count - 1)
        for row in range(first, first + count):
            item = self.session.items[row]
            self._rows[id(item)] = row
            self._row_of_path[str(item.path)] = row
        self.endInsertRows()

    def _on_changed(self, items: list[ImageItem]) -> None:
        rows = [self._rows[id(i)] for i in items if id(i) in self._rows]
        if not rows:
            return
        self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)))

    def _on_thumb(self, path: str) -> None:
        row = self._row_of_path.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class DatasetFilterProxy(QSortFilterProxyModel):
    """Rows that match the filter box's text."""

    def __init__(self, separator: str, parent=None) -> None:
        super().__init__(parent)
        self._filter = parse_filter("", separator)
        self._separator = separator

    def set_filter_text(self, text: str) -> None:
        self._filter = parse_filter(text, self._separator)
        self.invalidateRowsFilter()

    def filter_text(self) -> str:
        return self._filter.text

    def filterAcceptsRow(self, row: int, parent: _Index) -> bool:  # noqa: N802
        if self._filter.empty:
            return True
        model = self.sourceModel()
        item = model.item(row) if isinstance(model, DatasetListModel) else None
        return item is not None and self._filter.matches(item)


# Blocking problems of a picture that still decodes: its thumbnail is shown, with the red badge.
_STILL_A_PICTURE = {ProblemKind.TOO_SMALL, ProblemKind.EXCLUDED, ProblemKind.DUPLICATE}


def _decodable(item: ImageItem) -> bool:
    return all(p.kind in _STILL_A_PICTURE for p in item.problems if p.blocking)


def _placeholder_pixmap() -> QPixmap:
    pix = QPixmap(THUMB_SIZE, THUMB_SIZE)
    pix.fill(QColor(128, 128, 128, 40))
    return pix


class BadgeDelegate(QStyledItemDelegate):
    """The default icon + name, plus a badge: red for an unusable image, amber for a note,
    a dot for a caption not saved yet, and a dim mark for a missing caption."""

    COLORS = {"error": QColor("#d32f2f"), "note": QColor("#f9a825")}

    def initStyleOption(self, option: QStyleOptionViewItem, index: _Index) -> None:  # noqa: N802
        super().initStyleOption(option, index)
        # A selected item's icon is drawn in QIcon.Selected mode, which the style makes by tinting
        # it with the highlight colour. A picture's own colours matter here: give the icon the
        # same pixmap for Selected, so the selection shows only around the picture and its label.
        if not option.icon.isNull():
            pixmap = option.icon.pixmap(option.decorationSize)
            icon = QIcon(pixmap)
            icon.addPixmap(pixmap, QIcon.Mode.Selected)
            option.icon = icon

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        super().paint(painter, option, index)
        badge = index.data(BadgeRole)
        item = index.data(ItemRole)
        rect: QRect = option.rect
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if badge:
            painter.setBrush(self.COLORS[badge])
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawEllipse(QRect(rect.left() + 6, rect.top() + 6, 16, 16))
            painter.setPen(QColor("white"))
            painter.drawText(
                QRect(rect.left() + 6, rect.top() + 6, 16, 16),
                Qt.AlignmentFlag.AlignCenter,
                "!" if badge == "error" else "i",
            )
        if index.data(PendingRole):
            painter.setBrush(QColor("#1565c0"))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawEllipse(QRect(rect.right() - 20, rect.top() + 6, 12, 12))
        if item is not None and not item.has_caption and item.usable:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(
                QRect(rect.left(), rect.top() + 4, rect.width() - 8, 16), Qt.AlignmentFlag.AlignRight, "no caption"
            )
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:  # noqa: N802
        return QSize(THUMB_SIZE + 16, THUMB_SIZE + 36)


__all__ = ["BadgeDelegate", "BadgeRole", "DatasetFilterProxy", "DatasetListModel", "ItemRole", "PendingRole"]
