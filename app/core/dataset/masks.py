"""Loss masks of dataset pictures: where training looks (white) and where it does not (black).

A picture's mask is, first found first: its sidecar ``name.mask.png`` (what the automatic
masker writes, and what a user edits), a file of the same stem in a ``masks/`` folder beside
it, or the picture's own alpha channel. Masks are hostile files like the pictures: a mask
that is not a regular file inside the picture's folder, not an image, or not the picture's
size raises :class:`MaskError` with one sentence, and the trainer then trains that picture
without a mask (it never skips the picture or stops the run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from app.core.dataset.problems import Problem, ProblemKind
from app.core.safe_files import RefusedFile, open_regular

MASK_SUFFIX = ".mask.png"
MASKS_FOLDER = "masks"
MASK_EXTENSIONS = (".png", ".webp", ".jpg", ".jpeg", ".bmp")
MAX_MASK_BYTES = 256 << 20
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


class MaskError(ValueError):
    """A mask that cannot be used; the message is one sentence naming the file."""


class MaskSource(str, Enum):
    SIDECAR = "sidecar"  # name.mask.png beside the picture
    FOLDER = "folder"  # masks/name.png
    ALPHA = "alpha"  # the picture's own alpha channel


@dataclass(frozen=True)
class MaskRef:
    source: MaskSource
    path: Path  # the mask file (the picture itself for ALPHA)


def is_mask_name(name: str) -> bool:
    """Mask sidecars are not training pictures (the dataset scan leaves them out)."""
    return name.lower().endswith(MASK_SUFFIX)


def sidecar_path(image: str | Path) -> Path:
    image = Path(image)
    return image.with_name(image.stem + MASK_SUFFIX)


def find_mask(image: str | Path) -> MaskRef | None:
    """Where ``image``'s mask is (not yet checked: :func:`load_mask` does that), or None."""
    image = Path(image)
    candidates = [(sidecar_path(image), MaskSource.SIDECAR)]
    candidates += [(image.parent / MASKS_FOLDER / (image.stem + ext), MaskSource.FOLDER) for ext in MASK_EXTENSIONS]
    for path, source in candidates:
        if os.path.lexists(path):  # a dangling or outside link is found, then refused by load_mask
            return MaskRef(source, path)
    return MaskRef(MaskSource.ALPHA, image) if _has_alpha(image) else None


def _has_alpha(image: Path) -> bool:
    try:
        with open_regular(image, max_bytes=MAX_MASK_BYTES) as fh, Image.open(fh) as im:
            return im.mode in _ALPHA_MODES or "transparency" in im.info
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False  # the picture's own problems are the scan's to report


def load_mask(ref: MaskRef, size: tuple[int, int]) -> Image.Image:
    """The mask as an 8-bit grey picture of ``size`` (the picture's size after EXIF rotation)."""
    path = ref.path
    try:
        with open_regular(path, root=_folder(ref), max_bytes=MAX_MASK_BYTES) as fh, Image.open(fh) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if ref.source is MaskSource.ALPHA or _has_transparency(im):
                mask = im.convert("RGBA").getchannel("A")  # a cut-out saved as the mask: its alpha says where
            else:
                mask = im.convert("L")
    except RefusedFile as exc:  # a link out of the folder, a FIFO, an oversized file: it says which
        raise MaskError(f"mask {exc}") from None
    except (UnidentifiedImageError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        # before OSError: Pillow's "cannot identify image file" is one
        raise MaskError(f"mask {path}: not an image that can be decoded") from None
    except OSError as exc:
        raise MaskError(f"mask {path}: cannot be read ({exc.strerror or exc})") from None
    if mask.size != tuple(size):
        raise MaskError(f"mask {path}: {mask.size[0]}x{mask.size[1]} pixels, but the picture is {size[0]}x{size[1]}")
    return mask


def _has_transparency(im: Image.Image) -> bool:
    if im.mode not in _ALPHA_MODES and "transparency" not in im.info:
        return False
    return im.convert("RGBA").getchannel("A").getextrema()[0] < 255


def _folder(ref: MaskRef) -> Path:
    """The folder a mask must stay inside: the picture's folder (masks/ is below it)."""
    return ref.path.parent.parent if ref.source is MaskSource.FOLDER else ref.path.parent


def mask_problem(image: str | Path, size: tuple[int, int]) -> Problem | None:
    """What the Dataset tab flags when masking is on: no mask, or a mask that cannot be used."""
    ref = find_mask(image)
    if ref is None:
        return Problem(
            ProblemKind.NO_MASK,
            f"{image}: no mask (no {sidecar_path(image).name}, no {MASKS_FOLDER}/ file, no alpha channel); "
            "it trains on the whole picture",
            blocking=False,
        )
    try:
        load_mask(ref, size)
    except MaskError as exc:
        return Problem(ProblemKind.MASK_UNUSABLE, f"{exc}; the picture trains without a mask", blocking=False)
    return None
