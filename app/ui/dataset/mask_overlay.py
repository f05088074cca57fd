"""The Dataset tab's "Masks" toggle: each picture's loss mask over its preview, and a flag on
every picture without a usable mask (masked loss, ``[masks] enabled`` in the Train tab).

Masks are found and read by :mod:`app.core.dataset.masks`, the same code the trainer uses, so
what the overlay shows is what training weights. Decoding runs on a pool thread.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QCheckBox, QWidget

from app.core.dataset.masks import MaskError, find_mask, load_mask

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


def mask_toggle(parent: QWidget, preview: Any, session: Any) -> QCheckBox:
    """The toggle, bound to the preview (overlay) and the dataset session (flags)."""
    box = QCheckBox("Masks", parent)
    box.setToolTip(TOGGLE_TIP)
    box.toggled.connect(preview.set_masks_shown)
    box.toggled.connect(session.set_masking)
    return box
