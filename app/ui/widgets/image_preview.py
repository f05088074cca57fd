"""Shows one picture scaled to fit, keeping the original pixels for saving and tests."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPaintEvent, QPalette, QPixmap
from PySide6.QtWidgets import QFrame, QSizePolicy, QWidget


class ImagePreview(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(256, 256)
        self._pixmap = QPixmap()
        self._path = ""
        self._placeholder = "The picture appears here."

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(520, 520)

    def pixmap(self) -> QPixmap:
        """The picture at its own size (not the scaled copy on screen)."""
        return self._pixmap

    def path(self) -> str:
        return self._path

    def load(self, path: str) -> str | None:
        """Show the picture at ``path``; returns an error message instead of raising."""
        reader = QImageReader(path)
        reader.setAutoTransform(True)  # honour EXIF orientation
        image: QImage = reader.read()
        if image.isNull():
            return f"could not read {path}: {reader.errorString()}"
        self._pixmap = QPixmap.fromImage(image)
        self._path = path
        self.setToolTip(path)
        self.update()
        return None

    def clear(self) -> None:
        self._pixmap = QPixmap()
        self._path = ""
        self.setToolTip("")
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        super().paintEvent(event)
        painter = QPainter(self)
        area = self.contentsRect().adjusted(6, 6, -6, -6)
        if self._pixmap.isNull():
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, self._placeholder)
            return
        size = self._pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        # Small renders (tiny models, 64 px) are enlarged; sharp pixels show them honestly.
        enlarging = size.width() > self._pixmap.width()
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(area.center())
        painter.fillRect(target.adjusted(-1, -1, 1, 1), QColor(0, 0, 0, 40))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not enlarging)
        painter.drawPixmap(target, self._pixmap)
