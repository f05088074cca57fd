"""The Dataset tab's "Masks" toggle: each picture's loss mask over its preview, and a flag on
every picture without a usable mask (masked loss, ``[masks] enabled`` in the Train tab); and
its Auto-mask… button (CLIPSeg masks made by the worker).

Masks are found and read by :mod:`app.core.dataset.masks`, the same code the trainer uses, so
what the overlay shows is what training weights. Decoding runs on a pool thread.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QCheckBox, QInputDialog, QPushButton, QWidget

from app.core.dataset.masks import MaskError, find_mask, load_mask
from app.ui.dataset.automask_ops import AutoMasks
from app.ui.dataset.dataset_ops import DatasetSession

OVERLAY_MAX = 1280
TINT = (200, 0, 90)  # where the mask is black (not trained): tinted
TINT_ALPHA = 0.6
TOGGLE_TIP = (
    "Show each picture's loss mask (name.mask.png, masks/name.png or its alpha channel) over the "
    "preview, tinting what is not trained, and flag the pictures that have no usable mask."
)


def load_overlay(path: str, size: tuple[int, int]) -> QImage:
    """A tint where the mask of the picture at ``path`` is black (runs in a pool thread); a null
    image when the picture has no usable mask (the flag in its problems says why)."""
    ref = find_mask(path)
    if ref is None:
        return QImage()
    try:
        mask = load_mask(ref, size)
    except MaskError:
        return QImage()
    mask.thumbnail((OVERLAY_MAX, OVERLAY_MAX))
    alpha = mask.point(lambda v: int((255 - v) * TINT_ALPHA))
    tint = Image.merge("RGBA", (*(Image.new("L", mask.size, c) for c in TINT), alpha))
    data = tint.tobytes()
    return QImage(data, tint.width, tint.height, 4 * tint.width, QImage.Format.Format_RGBA8888).copy()


AUTOMASK_TIP = (
    'Make a mask for every picture without one: CLIPSeg keeps what your words name ("person", '
    '"the cat"). Saved as name.mask.png beside each picture, for you to edit.'
)


class MaskControls:
    """The Masks toggle (bound to the preview's overlay and the session's flags) and Auto-mask…
    (a prompt, then the ``mask`` job)."""

    def __init__(self, parent: QWidget, preview: Any, session: DatasetSession) -> None:
        self.parent, self.preview = parent, preview
        self.toggle = QCheckBox("Masks", parent)
        self.toggle.setToolTip(TOGGLE_TIP)
        self.toggle.toggled.connect(preview.set_masks_shown)
        self.toggle.toggled.connect(session.set_masking)
        self.auto = AutoMasks(session, parent)
        self.auto.finished.connect(lambda _n: preview.set_masks_shown(preview.masks_shown))
        self.button = QPushButton("Auto-mask…", parent)
        self.button.setToolTip(AUTOMASK_TIP)
        self.button.clicked.connect(self.ask)
        self.dialog: QInputDialog | None = None

    def ask(self) -> QInputDialog:
        """The prompt, not modal; OK starts the job."""
        if self.dialog is None:
            self.dialog = QInputDialog(self.parent)
            self.dialog.setWindowTitle("Auto-mask")
            self.dialog.setLabelText("What to keep in every picture (CLIPSeg), e.g. person, the cat:")
            self.dialog.setTextValue("subject")
            self.dialog.textValueSelected.connect(self.auto.start)
        self.dialog.open()
        return self.dialog
