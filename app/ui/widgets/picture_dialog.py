"""One picture enlarged in its own window, with a line of text under it (a dataset picture
with its caption, a training sample with its step and prompt)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from app.ui.widgets.image_preview import ImagePreview


class PictureDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, *, width: int = 720, height: int = 760) -> None:
        super().__init__(parent)
        self.preview = ImagePreview(self)
        self.caption = QLabel("", self)
        self.caption.setWordWrap(True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.caption)
        self.resize(width, height)

    def show_picture(self, path: str, text: str) -> None:
        """Show ``path``; the text line says why when the picture cannot be shown."""
        error = self.preview.load(path)
        self.caption.setText(error or text)
