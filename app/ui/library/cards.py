"""A grid of adapter cards: picture, name, base-family badge, rank, trigger words.

An adapter made for another family than the current model gets an orange frame and a
"≠ base" tag (marked, never hidden); one that cannot be used is greyed with its problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.core import families
from app.core.families import FAMILIES

CARD_W, CARD_H, PICTURE_H = 196, 262, 150
FAMILY_COLORS = {f.id.value: f.color for f in FAMILIES}
UNKNOWN_COLOR = "#757575"
MISMATCH_COLOR = "#ef6c00"
PROBLEM_COLOR = "#c62828"
CardRole = Qt.ItemDataRole.UserRole + 1


@dataclass
class CardItem:
    key: str  # a library path, or "hub:<repo id>"
    title: str
    subtitle: str = ""  # repo id, source, downloads …
    family: str | None = None  # a Family value, None: unknown
    rank: int | None = None
    trigger_words: list[str] = field(default_factory=list)
    problem: str = ""
    payload: Any = None  # the LibraryEntry or HubRepo behind the card
    image: QImage | None = None

    def badge(self) -> str:
        """The family's label ("Flux.1", "SD 1.x"); an unknown value as it is."""
        return families.label(self.family) or "?"


def family_mismatch(family: str | None, current: str | None) -> bool:
    try:
        return not families.fits(family, current)
    except ValueError:  # a family value this version does not know
        return bool(family and current and family != current)


class CardModel(QAbstractListModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.items: list[CardItem] = []
        self.current_family: str | None = None
        self._rows: dict[str, int] = {}

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.items)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.items):
            return None
        item = self.items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.title
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [item.title, item.subtitle]
            if family_mismatch(item.family, self.current_family):
                lines.append(f"Made for {item.badge()}; the current model is {families.label(self.current_family)}.")
            if item.problem:
                lines.append(item.problem)
            return "\n".join(x for x in lines if x)
        if role == CardRole:
            return item
        return None

    def set_items(self, items: list[CardItem]) -> None:
        self.beginResetModel()
        self.items = list(items)
        self._rows = {it.key: i for i, it in enumerate(self.items)}
        self.endResetModel()

    def append(self, items: list[CardItem]) -> None:
        if not items:
            return
        start = len(self.items)
        self.beginInsertRows(QModelIndex(), start, start + len(items) - 1)
        self.items += items
        self._rows.update({it.key: start + i for i, it in enumerate(items)})
        self.endInsertRows()

    def row_of(self, key: str) -> int:
        return self._rows.get(key, -1)

    def set_image(self, key: str, image: QImage) -> None:
        row = self.row_of(key)
        if row >= 0:
            self.items[row].image = image
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def set_current_family(self, family: str | None) -> None:
        self.current_family = family
        if self.items:
            self.dataChanged.emit(self.index(0), self.index(len(self.items) - 1))


class CardDelegate(QStyledItemDelegate):
    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        return QSize(CARD_W, CARD_H)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        item: CardItem = index.data(CardRole)
        model = index.model()
        current = getattr(model, "current_family", None)
        rect = option.rect.adjusted(5, 5, -5, -5)
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        border = (
            QColor(MISMATCH_COLOR) if family_mismatch(item.family, current) else palette.color(QPalette.ColorRole.Mid)
        )
        if selected:
            border = palette.color(QPalette.ColorRole.Highlight)
        painter.setPen(QPen(border, 2.5 if selected or family_mismatch(item.family, current) else 1))
        painter.setBrush(palette.color(QPalette.ColorRole.Base))
        painter.drawRoundedRect(rect, 8, 8)

        picture = QRect(rect.left() + 8, rect.top() + 8, rect.width() - 16, PICTURE_H)
        painter.fillRect(picture, palette.color(QPalette.ColorRole.AlternateBase))
        if item.image is not None and not item.image.isNull():
            pix = QPixmap.fromImage(item.image)
            size = pix.size().scaled(picture.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(picture.center())
            painter.drawPixmap(target, pix)
        else:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(picture, Qt.AlignmentFlag.AlignCenter, "no preview")

        y = picture.bottom() + 8
        badge_font = QFont(option.font)
        badge_font.setBold(True)
        badge_font.setPointSizeF(max(6.0, option.font.pointSizeF() * 0.8))
        painter.setFont(badge_font)
        x = rect.left() + 8
        for text, color in self._badges(item, current):
            width = painter.fontMetrics().horizontalAdvance(text) + 10
            badge = QRect(x, y, width, 16)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(color))
            painter.drawRoundedRect(badge, 4, 4)
            painter.setPen(QColor("white"))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
            x += width + 4

        title_font = QFont(option.font)
        title_font.setBold(True)
        painter.setFont(title_font)
        text_color = palette.color(QPalette.ColorRole.Text)
        if item.problem:
            text_color = palette.color(QPalette.ColorRole.PlaceholderText)
        painter.setPen(text_color)
        line = QRect(rect.left() + 8, y + 20, rect.width() - 16, 18)
        painter.drawText(
            line,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            painter.fontMetrics().elidedText(item.title, Qt.TextElideMode.ElideRight, line.width()),
        )
        painter.setFont(option.font)
        line.translate(0, 18)
        if item.problem:
            painter.setPen(QColor(PROBLEM_COLOR))
            text = "⚠ " + item.problem.split(": ", 1)[-1]
        else:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            text = ", ".join(item.trigger_words) if item.trigger_words else item.subtitle
        painter.drawText(
            line,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, line.width()),
        )
        painter.restore()

    @staticmethod
    def _badges(item: CardItem, current: str | None) -> list[tuple[str, str]]:
        badges = [(item.badge(), FAMILY_COLORS.get(item.family or "", UNKNOWN_COLOR))]
        if item.rank:
            badges.append((f"r{item.rank}", UNKNOWN_COLOR))
        if family_mismatch(item.family, current):
            badges.append(("≠ base", MISMATCH_COLOR))
        return badges


class CardGrid(QListView):
    """Cards in rows that wrap with the width; ``cardActivated(CardItem)`` on click or Enter."""

    cardActivated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cards = CardModel(self)
        self.setModel(self.cards)
        self.setItemDelegate(CardDelegate(self))
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(2)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMouseTracking(True)
        self.selectionModel().currentChanged.connect(self._on_current)
        self.activated.connect(self._on_current)

    def _on_current(self, index: QModelIndex, _previous: QModelIndex | None = None) -> None:
        if index.isValid():
            self.cardActivated.emit(self.cards.items[index.row()])

    def select_key(self, key: str) -> bool:
        row = self.cards.row_of(key)
        if row < 0:
            return False
        self.setCurrentIndex(self.cards.index(row))
        return True
