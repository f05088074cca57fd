"""The large preview of the selected image, decoded off the GUI thread at screen size."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QImage, QImageReader, QPainter, QPaintEvent, QPalette, QPixmap
from PySide6.QtWidgets import QFrame, QSizePolicy, QWidget

from app.ui.common.tasks import TaskRunner
from app.ui.dataset.mask_overlay import load_overlay

PREVIEW_MAX = 1280


def load_preview(path: str) -> tuple[QImage, str]:
    """The picture at screen size (runs in a pool thread), with the reader's error when unreadable."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > PREVIEW_MAX:
        reader.setScaledSize(size.scaled(QSize(PREVIEW_MAX, PREVIEW_MAX), Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return image, "" if not image.isNull() else reader.errorString()


class PreviewPane(QFrame):
    loaded = Signal(str)  # path now shown (or failed)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 80)
        self._pixmap = QPixmap()
        self._path = ""
        self._text = "Drop a folder of pictures here, or use Open dataset."
        self._tasks = TaskRunner(1, self)
        self.masks_shown = False  # the Dataset tab's Masks toggle: the loss mask over the picture
        self._overlay = QPixmap()
        self._size: tuple[int, int] = (0, 0)

    def path(self) -> str:
        return self._path

    def pixmap(self) -> QPixmap:
        return self._pixmap

    def overlay(self) -> QPixmap:
        return self._overlay

    def set_masks_shown(self, on: bool) -> None:
        self.masks_shown = on
        if self._path:
            self.show_path(self._path)

    def show_path(self, path: str, size: tuple[int, int] | None = None) -> None:
        """Show ``path``; ``size`` (its width and height after EXIF rotation) is what a mask must match."""
        self._tasks.cancel_all()  # another image was picked: the one loading now is never shown
        self._size = size or self._size
        masks, wanted = self.masks_shown, self._size

        def load() -> tuple[QImage, str, QImage]:
            return (*load_preview(path), load_overlay(path, wanted) if masks else QImage())

        self._tasks.run(load, lambda result: self._on_done(path, *result))

    def show_text(self, text: str) -> None:
        self._tasks.cancel_all()
        self._pixmap = self._overlay = QPixmap()
        self._path = ""
        self._text = text
        self.update()

    def _on_done(self, path: str, image: QImage, error: str, overlay: QImage) -> None:
        self._path = path
        self._pixmap = QPixmap.fromImage(image) if not image.isNull() else QPixmap()
        self._overlay = QPixmap.fromImage(overlay) if not overlay.isNull() else QPixmap()
        self._text = f"Cannot show this picture ({error})." if image.isNull() else ""
        self.update()
        self.loaded.emit(path)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        super().paintEvent(event)
        painter = QPainter(self)
        area = self.contentsRect().adjusted(4, 4, -4, -4)
        if self._pixmap.isNull():
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._text)
            return
        size = self._pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(area.center())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, self._pixmap)
        if not self._overlay.isNull():
            painter.drawPixmap(target, self._overlay)
