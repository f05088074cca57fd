"""Check one image file from its header: size (after EXIF rotation), format, mode, problems.

Pillow opens lazily and reads no pixels; a cheap look at the end of the file finds
truncated JPEG/PNG/WebP/BMP files, and only a suspicious file (or every file with
``deep=True``) is decoded to confirm. Never raises for a bad file.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.core.dataset.problems import Problem, ProblemKind
from app.core.safe_files import RefusedFile, open_regular

DEFAULT_MIN_SIDE = 256

_ORIENTATION_TAG = 0x0112
_ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # width and height swap
_ORIENTATION_WORDS = {
    2: "mirrored",
    3: "rotated 180°",
    4: "flipped vertically",
    5: "mirrored and rotated 90°",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90°",
    8: "rotated 90° counter-clockwise",
}

# Pillow format names each suffix may hold.
_SUFFIX_FORMATS = {
    ".jpg": {"JPEG", "MPO"},
    ".jpeg": {"JPEG", "MPO"},
    ".png": {"PNG"},
    ".webp": {"WEBP"},
    ".bmp": {"BMP", "DIB"},
    ".tif": {"TIFF"},
    ".tiff": {"TIFF"},
}


@dataclass
class _Header:
    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""
    problems: list[Problem] = field(default_factory=list)


def _signature_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _looks_truncated(fh, fmt: str, head: bytes, size: int) -> bool:
    """A cheap look at the file's end; True means "decode it to be sure"."""
    if fmt in ("JPEG", "MPO"):
        fh.seek(max(0, size - 65536))
        return b"\xff\xd9" not in fh.read()
    if fmt == "PNG":
        return _png_damage(fh, size) == "truncated"
    if fmt == "WEBP" and len(head) >= 8:
        return int.from_bytes(head[4:8], "little") + 8 > size
    if fmt == "BMP" and len(head) >= 6:
        declared = int.from_bytes(head[2:6], "little")
        return declared > size
    return False


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CRC_BLOCK = 1 << 20


def _png_damage(fh, size: int) -> str | None:
    """Walk the PNG chunks checking each CRC (no decoding; zlib's CRC runs at memory speed).
    None: sound up to IEND; "truncated": it stops before IEND; else a sentence on the damage.
    Pillow checks no IDAT checksum, so a damaged pixel chunk would otherwise pass as a picture."""
    fh.seek(len(_PNG_SIGNATURE))
    pos = len(_PNG_SIGNATURE)
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return "truncated"
        length = int.from_bytes(head[:4], "big")
        kind = head[4:]
        if length > 2**31 - 1 or not kind.isalpha():
            return f"a chunk header at byte {pos} is not valid"
        if pos + 12 + length > size:
            # Running off the end is a cut file, unless the file still ends with IEND: then
            # this chunk's length is wrong.
            fh.seek(max(0, size - 12))
            return (
                f"the {kind.decode('ascii')} chunk at byte {pos} is longer than the file"
                if (b"IEND" in fh.read())
                else "truncated"
            )
        crc = zlib.crc32(kind)
        left = length
        while left:
            block = fh.read(min(left, _CRC_BLOCK))
            if not block:
                return "truncated"
            crc = zlib.crc32(block, crc)
            left -= len(block)
        stored = fh.read(4)
        if len(stored) < 4:
            return "truncated"
        if int.from_bytes(stored, "big") != crc:
            return f"its {kind.decode('ascii')} chunk at byte {pos} fails its checksum"
        if kind == b"IEND":
            return None
        pos += 12 + length


def _tail_says_truncated(fh, fmt: str, head: bytes, size: int) -> bool:
    try:
        return _looks_truncated(fh, fmt, head, size)
    except OSError:
        return False


def _mode_note(path: Path, im: Image.Image, head: bytes) -> str | None:
    mode = im.mode
    has_transparency = "transparency" in im.info
    if mode == "CMYK":
        return "CMYK colours (converted to RGB for training)"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return "16-bit grayscale (converted to 8-bit RGB for training)"
    if mode == "F":
        return "32-bit floating-point pixels (converted to 8-bit RGB for training)"
    if im.format == "PNG" and len(head) > 25 and head[24] == 16:
        return "16 bits per channel (converted to 8-bit RGB for training)"
    if mode in ("P", "PA"):
        if has_transparency or mode == "PA":
            return "palette colours with transparency (transparent areas become white for training)"
        return "palette colours (converted to RGB for training)"
    if mode in ("RGBA", "LA", "La", "RGBa") or has_transparency:
        return "an alpha channel (transparent areas become white for training)"
    if mode in ("L", "1"):
        return "grayscale (converted to RGB for training)"
    if mode != "RGB":
        return f"{mode} pixels (converted to RGB for training)"
    return None


def _orientation(im: Image.Image) -> int:
    try:
        if im.format == "TIFF":
            return int(getattr(im, "tag_v2", {}).get(_ORIENTATION_TAG, 1) or 1)
        raw = im.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # a damaged EXIF block only means "no rotation"
        return 1


def _confirm_by_decoding(im: Image.Image, path: Path, fmt: str) -> Problem | None:
    try:
        im.load()
    except (EOFError, OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        if isinstance(exc, EOFError) or "truncated" in text.lower() or "end of file" in text.lower():
            return Problem(
                ProblemKind.TRUNCATED,
                f"{path}: the {fmt} file is truncated (it stops before the image data ends)",
                blocking=True,
            )
        return Problem(ProblemKind.CORRUPT, f"{path}: the {fmt} image data is damaged ({text[:120]})", blocking=True)
    return None


def inspect_image(
    path: Path, min_side: int = DEFAULT_MIN_SIDE, *, deep: bool = False, root: Path | None = None
) -> _Header:
    """Size, format, mode and problems of one image file, from its header (``deep`` decodes it).
    Only a regular file (inside ``root``, the dataset folder, when given) is opened."""
    out = _Header()
    try:
        fh = open_regular(path, root=root)
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        reason = exc.reason if isinstance(exc, RefusedFile) else f"the file cannot be read ({exc.strerror or exc})"
        out.problems.append(Problem(ProblemKind.UNREADABLE, f"{path}: {reason}", blocking=True))
        return out
    if size == 0:
        fh.close()
        out.problems.append(Problem(ProblemKind.ZERO_BYTES, f"{path}: the file is empty (0 bytes)", blocking=True))
        return out
    suffix = path.suffix.lower()
    with fh:
        try:
            head = fh.read(32)
        except OSError as exc:
            out.problems.append(
                Problem(
                    ProblemKind.UNREADABLE, f"{path}: the file cannot be read ({exc.strerror or exc})", blocking=True
                )
            )
            return out
        sig = _signature_format(head)
        fh.seek(0)
        try:
            im = Image.open(fh)
        except Image.DecompressionBombError:
            out.problems.append(
                Problem(
                    ProblemKind.DECOMPRESSION_BOMB,
                    f"{path}: over Pillow's safety limit "
                    f"of {Image.MAX_IMAGE_PIXELS:,} pixels (a possible decompression bomb)",
                    blocking=True,
                )
            )
            return out
        except UnidentifiedImageError:
            if sig is not None and sig != "GIF":
                out.problems.append(
                    Problem(
                        ProblemKind.CORRUPT,
                        f"{path}: starts like a {sig} file but its header is damaged",
                        blocking=True,
                    )
                )
            else:
                out.problems.append(
                    Problem(
                        ProblemKind.NOT_AN_IMAGE,
                        f"{path}: not an image despite its {path.suffix} suffix",
                        blocking=True,
                    )
                )
            return out
        except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types for bad headers
            truncated = isinstance(exc, EOFError) or (sig is not None and _tail_says_truncated(fh, sig, head, size))
            kind = ProblemKind.TRUNCATED if truncated else ProblemKind.CORRUPT
            word = "truncated" if kind is ProblemKind.TRUNCATED else "damaged"
            out.problems.append(Problem(kind, f"{path}: the image header is {word} ({str(exc)[:120]})", blocking=True))
            return out
        with im:
            _describe(im, path, head, size, suffix, min_side, deep, fh, out)
    return out


def _describe(
    im: Image.Image, path: Path, head: bytes, size: int, suffix: str, min_side: int, deep: bool, fh, out: _Header
) -> None:
    fmt = im.format or "image"
    out.format, out.mode = fmt, im.mode
    width, height = im.size
    pixels = width * height
    if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
        out.problems.append(
            Problem(
                ProblemKind.DECOMPRESSION_BOMB,
                f"{path}: {width}×{height} is {pixels:,} "
                f"pixels, over Pillow's safety limit of {Image.MAX_IMAGE_PIXELS:,}",
                blocking=True,
            )
        )
        out.width, out.height = width, height
        return
    broken = None
    try:
        damage = _png_damage(fh, size) if fmt == "PNG" else None
        suspicious = damage == "truncated" or (fmt != "PNG" and _looks_truncated(fh, fmt, head, size))
    except OSError:
        damage, suspicious = None, True
    if damage not in (None, "truncated"):
        broken = Problem(ProblemKind.CORRUPT, f"{path}: the PNG data is damaged ({damage})", blocking=True)
    if broken is None and (suspicious or deep):
        fh.seek(0)
        broken = _confirm_by_decoding(im, path, fmt)
    if broken is not None:
        out.problems.append(broken)
    orientation = _orientation(im)
    if orientation in _ROTATING_ORIENTATIONS:
        width, height = height, width
    out.width, out.height = width, height
    if broken is not None:
        return
    if suffix in _SUFFIX_FORMATS and fmt not in _SUFFIX_FORMATS[suffix]:
        out.problems.append(
            Problem(
                ProblemKind.WRONG_SUFFIX,
                f"{path}: a {fmt} file with a {suffix} suffix (it is read as what it is)",
                blocking=False,
            )
        )
    if min(width, height) < min_side:
        out.problems.append(
            Problem(
                ProblemKind.TOO_SMALL,
                f"{path}: too small, {width}×{height} has a short side under {min_side} px",
                blocking=True,
            )
        )
    note = _mode_note(path, im, head)
    if note:
        out.problems.append(Problem(ProblemKind.UNUSUAL_MODE, f"{path}: {note}", blocking=False))
    if orientation in _ORIENTATION_WORDS:
        out.problems.append(
            Problem(
                ProblemKind.EXIF_ROTATED,
                f"{path}: EXIF says the picture is {_ORIENTATION_WORDS[orientation]}; it is shown and trained upright",
                blocking=False,
            )
        )
    if getattr(im, "is_animated", False):
        out.problems.append(
            Problem(
                ProblemKind.ANIMATED,
                f"{path}: an animation with {getattr(im, 'n_frames', 'several')} frames; only the first is used",
                blocking=False,
            )
        )
