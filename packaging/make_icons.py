"""Render the app icon (resources/icons/loraloom.svg) into the PNG, ICO and ICNS files packaging uses.

Run ``.venv/bin/python packaging/make_icons.py`` after changing the SVG; the outputs are
committed (small PNGs), so a package build needs no SVG renderer.
Uses Qt's own SVG renderer (QtSvg is part of PySide6-Essentials) and Pillow for ICO/ICNS.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "loraloom.svg"
APP_ID = "io.github.loraloom.LoRALoom"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
HICOLOR = ROOT / "packaging" / "linux" / "icons" / "hicolor"


def render(renderer: QSvgRenderer, size: int) -> Image.Image:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return Image.open(io.BytesIO(bytes(data))).convert("RGBA")


def main() -> int:
    QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"{SVG}: not a valid SVG", file=sys.stderr)
        return 1
    images = {size: render(renderer, size) for size in SIZES}
    for size, image in images.items():
        out = HICOLOR / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        # A 256-colour palette keeps the committed files small (the icon has few colours besides the gradient).
        image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    scalable = HICOLOR / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SVG, scalable)
    images[256].save(
        ROOT / "packaging" / "windows" / "loraloom.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)]
    )
    images[512].save(ROOT / "packaging" / "macos" / "loraloom.icns")
    print(f"wrote {len(SIZES)} PNGs under {HICOLOR}, the .ico and the .icns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
