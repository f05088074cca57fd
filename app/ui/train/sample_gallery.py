"""Sample pictures of a run, grouped by step (newest on top); a click shows one enlarged.

Pictures are read and scaled on a pool thread; only the finished thumbnail reaches the
GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.common.tasks import TaskRunner
from app.ui.widgets.picture_dialog import PictureDialog

THUMB = 128


def load_thumbnail(path: str, size: int = THUMB) -> QImage:
    """Read a picture (EXIF orientation applied) and fit it in ``size`` × ``size``; raises OSError."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    image = reader.read()
    if image.isNull():
        raise OSError(f"{path}: {reader.errorString()}")
    # Small renders (tiny models) are enlarged with sharp pixels, large ones reduced smoothly.
    mode = (
        Qt.TransformationMode.FastTransformation
        if max(image.width(), image.height()) < size
        else Qt.TransformationMode.SmoothTransformation
    )
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)


class _StepGroup(QWidget):
    def __init__(self, step: int, parent: QWidget) -> None:
        super().__init__(parent)
        self.step = step
        self.title = QLabel(f"Step {step}", self)
        self.title.setStyleSheet("font-weight: bold;")
        self.row = QHBoxLayout()
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 6)
        layout.addWidget(self.title)
        layout.addLayout(self.row)


class SampleViewer(PictureDialog):
    """One sample picture enlarged, with its step and prompt."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, width=560, height=620)
        self.setWindowTitle("Sample")

    def show_sample(self, path: str, step: int, meta: dict) -> None:
        prompt = meta.get("prompt", "")
        self.show_picture(path, f"Step {step} · {Path(path).name}" + (f"\n{prompt}" if prompt else ""))
        self.setWindowTitle(f"Sample at step {step}")
        self.show()
        self.raise_()


class SampleGallery(QScrollArea):
    sampleClicked = Signal(str, int, dict)  # (path, step, meta)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self._inner = QWidget(self)
        self._column = QVBoxLayout(self._inner)
        self._column.setContentsMargins(4, 4, 4, 4)
        self._placeholder = QLabel("Sample pictures appear here as the run renders them.", self._inner)
        self._placeholder.setEnabled(False)
        self._column.addWidget(self._placeholder)
        self._column.addStretch(1)
        self.setWidget(self._inner)
        self._groups: dict[int, _StepGroup] = {}
        self._buttons: dict[str, QToolButton] = {}
        self._loaded: set[str] = set()
        self._runner = TaskRunner(max_threads=2, parent=self)
        self.viewer: SampleViewer | None = None
        self.sampleClicked.connect(self._enlarge)

    def clear(self) -> None:
        self._runner.cancel_all()  # thumbnails still loading for the old run are dropped
        for group in self._groups.values():
            group.setParent(None)
            group.deleteLater()
        self._groups.clear()
        self._buttons.clear()
        self._loaded.clear()
        self._placeholder.setVisible(True)

    def add(self, step: int, path: str, meta: dict | None = None) -> None:
        if path in self._buttons:
            return
        meta = dict(meta or {})
        group = self._group(step)
        button = QToolButton(group)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        button.setIconSize(QSize(THUMB, THUMB))
        button.setFixedSize(THUMB + 12, THUMB + 30)
        button.setAutoRaise(True)
        number = Path(path).stem.rsplit("-", 1)[-1]
        button.setText(f"try #{number}" if Path(path).name.startswith("try-") else f"#{number}")  # Try a prompt
        button.setToolTip(meta.get("prompt") or path)
        button.clicked.connect(lambda _c=False, p=path, s=step, m=meta: self.sampleClicked.emit(p, s, m))
        # Ordered by the picture's index within the step (file names step000010-0, -1 …).
        index = sum(1 for p in self._buttons if self._buttons[p].parent() is group and Path(p).name < Path(path).name)
        group.row.insertWidget(index, button)
        self._buttons[path] = button
        self._placeholder.setVisible(False)
        self._runner.run(
            lambda p=path: load_thumbnail(p),
            lambda image, p=path: self._on_thumbnail(p, image),
            lambda _k, message, p=path: self._on_failed(p, message),
        )

    def _group(self, step: int) -> _StepGroup:
        group = self._groups.get(step)
        if group is None:
            group = _StepGroup(step, self._inner)
            self._groups[step] = group
            newer = sum(1 for s in self._groups if s > step)  # newest step on top
            self._column.insertWidget(1 + newer, group)  # after the (hidden) placeholder
        return group

    def _on_thumbnail(self, path: str, image: QImage) -> None:
        button = self._buttons.get(path)
        if button is None:
            return
        button.setIcon(QIcon(QPixmap.fromImage(image)))
        self._loaded.add(path)

    def _on_failed(self, path: str, message: str) -> None:
        button = self._buttons.get(path)
        if button is None:
            return
        button.setText("unreadable")
        button.setToolTip(message)

    def _enlarge(self, path: str, step: int, meta: dict) -> None:
        if self.viewer is None:
            self.viewer = SampleViewer(self.window())
        self.viewer.show_sample(path, step, meta)

    # ------------------------------------------------------------ for tests and the tab
    def steps(self) -> list[int]:
        """Steps with pictures, newest first (the order on screen)."""
        return sorted(self._groups, reverse=True)

    def paths(self) -> list[str]:
        return list(self._buttons)

    def loaded(self) -> list[str]:
        """Pictures whose thumbnail is on show."""
        return [p for p in self._buttons if p in self._loaded]

    def button(self, path: str) -> QToolButton | None:
        return self._buttons.get(path)

    def wait(self, ms: int = 10_000) -> bool:
        return self._runner.wait(ms)
