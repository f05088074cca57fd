"""Helpers for the Train tab tests: small folders of solid-colour pictures with captions."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

RED = (220, 30, 30)


def write_pictures(folder: Path, colour=RED, caption: str | None = "sks", count: int = 4, size=(64, 64)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, colour).save(folder / f"img{i}.png")
        if caption is not None:
            (folder / f"img{i}.txt").write_text(caption, encoding="utf-8")
    return folder
