"""Scan a dataset folder into :class:`ImageItem` records, each with its problems in words.

Sizes come from file headers (Pillow opens lazily and reads no pixels); a cheap look
at the end of the file finds truncated JPEG/PNG/WebP/BMP files, and only a suspicious
file is decoded to confirm. Nothing here raises for a bad image: every problem becomes a
:class:`Problem` on the item. Only a missing folder raises :class:`DatasetError`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from app.core.dataset.captions import DEFAULT_SEPARATOR, caption_path_for, read_caption, tag_frequencies
from app.core.dataset.image_check import DEFAULT_MIN_SIDE, inspect_image
from app.core.dataset.masks import MASKS_FOLDER, is_mask_name
from app.core.dataset.problems import Problem, ProblemKind
from app.core.errors import ErrorKind
from app.core.safe_files import open_regular

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")


class DatasetError(ValueError):
    """The dataset folder itself is unusable (missing, not a folder) or an image cannot be loaded."""

    kind = ErrorKind.BAD_INPUT


@dataclass
class ImageItem:
    path: Path  # absolute
    caption_path: Path  # <stem>.txt beside the image
    caption: str  # "" when there is no caption file
    width: int  # after EXIF rotation; 0 when unreadable
    height: int
    repeats: int  # from a kohya "N_name" folder (10_mychar -> 10), else 1
    problems: list[Problem] = field(default_factory=list)
    file_size: int = 0
    mtime_ns: int = 0
    format: str = ""  # Pillow's format name ("JPEG", "PNG", ...), "" when unreadable
    mode: str = ""  # Pillow's mode as stored in the file

    @property
    def usable(self) -> bool:
        return not any(p.blocking for p in self.problems)

    @property
    def has_caption(self) -> bool:
        return bool(self.caption.strip())

    def has_problem(self, kind: ProblemKind) -> bool:
        return any(p.kind is kind for p in self.problems)


@dataclass
class Dataset:
    root: Path
    items: list[ImageItem]
    separator: str = DEFAULT_SEPARATOR
    min_side: int = DEFAULT_MIN_SIDE

    def usable_items(self) -> list[ImageItem]:
        return [item for item in self.items if item.usable]

    def item_for(self, path: str | Path) -> ImageItem | None:
        target = Path(path).resolve()
        return next((item for item in self.items if item.path == target), None)

    def tag_frequencies(self):
        return tag_frequencies(self.items, self.separator)

    def problem_counts(self) -> dict[ProblemKind, int]:
        counts: dict[ProblemKind, int] = {}
        for item in self.items:
            for kind in {p.kind for p in item.problems}:
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def repeats_by_folder(self) -> dict[str, tuple[int, int]]:
        """Folder (relative to root) -> (repeats, number of usable images)."""
        out: dict[str, tuple[int, int]] = {}
        for item in self.usable_items():
            rel = str(item.path.parent.relative_to(self.root)) if item.path.parent != self.root else "."
            repeats, count = out.get(rel, (item.repeats, 0))
            out[rel] = (repeats, count + 1)
        return out


# ---------------------------------------------------------------- finding files


def check_folder(folder: str | Path) -> Path:
    root = Path(folder).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (a dataset is a folder of pictures)")
    return root.resolve()


def is_image_name(name: str) -> bool:
    """A training picture's name: an image suffix, not hidden, not a mask sidecar (name.mask.png)."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".") and not is_mask_name(name)


def iter_image_files(root: Path) -> list[Path]:
    """Every image-suffixed file under ``root`` (recursive, hidden folders skipped), sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda exc: None):
        # Hidden folders and masks/ folders (loss masks, app/core/dataset/masks.py) hold no pictures to train.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != MASKS_FOLDER)
        base = Path(dirpath)
        found.extend(base / name for name in sorted(filenames) if is_image_name(name))
    return found


def repeats_for(path: Path, root: Path) -> int:
    """kohya's rule: the nearest folder named ``N_name`` (the dataset folder included) sets repeats."""
    folder = path.parent
    while True:
        match = _REPEATS_FOLDER.match(folder.name)
        if match:
            return max(1, int(match.group(1)))
        if folder == root or folder.parent == folder:
            return 1
        folder = folder.parent


# ---------------------------------------------------------------- one image


def make_item(path: Path, root: Path, min_side: int = DEFAULT_MIN_SIDE, *, deep: bool = False) -> ImageItem:
    path = path if path.is_absolute() else path.resolve()
    try:
        st: os.stat_result | None = path.stat()
    except OSError:
        st = None
    header = inspect_image(path, min_side, deep=deep, root=root)
    cap_path = caption_path_for(path)
    caption, cap_problem = read_caption(cap_path, root)
    problems = list(header.problems)
    if cap_problem is not None:
        problems.append(cap_problem)
    return ImageItem(
        path=path,
        caption_path=cap_path,
        caption=caption,
        width=header.width,
        height=header.height,
        repeats=repeats_for(path, root),
        problems=problems,
        file_size=st.st_size if st else 0,
        mtime_ns=st.st_mtime_ns if st else 0,
        format=header.format,
        mode=header.mode,
    )


# ---------------------------------------------------------------- whole folder


def _file_hash(path: Path, root: Path) -> str | None:
    digest = hashlib.blake2b(digest_size=20)
    try:
        with open_regular(path, root=root) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def duplicate_problems(items: list[ImageItem], root: Path) -> list[tuple[ImageItem, Problem]]:
    """Images whose bytes equal an earlier one's (only same-size files are hashed)."""
    by_size: dict[int, list[ImageItem]] = {}
    for item in items:
        if item.file_size > 0 and item.format:
            by_size.setdefault(item.file_size, []).append(item)
    found: list[tuple[ImageItem, Problem]] = []
    for group in by_size.values():
        if len(group) < 2:
            continue
        first_by_hash: dict[str, ImageItem] = {}
        for item in group:
            digest = _file_hash(item.path, root)
            if digest is None:
                continue
            first = first_by_hash.setdefault(digest, item)
            if first is not item:
                found.append(
                    (
                        item,
                        Problem(
                            ProblemKind.DUPLICATE,
                            f"{item.path}: the same picture as {_rel(first.path, root)}",
                            blocking=False,
                        ),
                    )
                )
    return found


def shared_caption_problems(items: list[ImageItem], root: Path) -> list[tuple[ImageItem, Problem]]:
    """Images that share one caption file (``a.jpg`` and ``a.png`` both use ``a.txt``)."""
    by_caption: dict[Path, list[ImageItem]] = {}
    for item in items:
        by_caption.setdefault(item.caption_path, []).append(item)
    found: list[tuple[ImageItem, Problem]] = []
    for path, group in by_caption.items():
        if len(group) < 2:
            continue
        names = ", ".join(_rel(i.path, root) for i in group)
        for item in group:
            found.append(
                (
                    item,
                    Problem(
                        ProblemKind.CAPTION_SHARED,
                        f"{path}: this caption file belongs to several images ({names})",
                        blocking=False,
                    ),
                )
            )
    return found


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


ProgressCallback = Callable[[int, int], None]


def scan_dataset(
    folder: str | Path,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    separator: str = DEFAULT_SEPARATOR,
    deep: bool = False,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Dataset:
    """Every image under ``folder`` with its caption, size, repeats and problems. Never raises
    for a bad image; raises :class:`DatasetError` when ``folder`` is missing or not a folder."""
    root = check_folder(folder)
    paths = iter_image_files(root)
    items: list[ImageItem] = []
    total = len(paths)
    for index, path in enumerate(paths):
        if should_stop is not None and should_stop():
            break
        items.append(make_item(path, root, min_side, deep=deep))
        if on_progress is not None and (index % 64 == 63 or index == total - 1):
            on_progress(index + 1, total)
    finish_scan(items, root)
    return Dataset(root=root, items=items, separator=separator, min_side=min_side)


def finish_problems(items: list[ImageItem], root: Path) -> list[tuple[ImageItem, Problem]]:
    """Checks that need every item (duplicates, shared caption files), as (item, problem) pairs;
    computed without touching the items, so a GUI can apply them on its own thread."""
    from app.core.dataset.exclusions import excluded_problems

    return duplicate_problems(items, root) + shared_caption_problems(items, root) + excluded_problems(items, root)


def finish_scan(items: list[ImageItem], root: Path) -> None:
    for item, problem in finish_problems(items, root):
        item.problems.append(problem)


# ---------------------------------------------------------------- training-time load


def load_training_image(path: str | Path) -> Image.Image:
    """Decode fully, apply EXIF orientation, and return 8-bit RGB (alpha composited on white)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)
    except Image.DecompressionBombError:
        raise DatasetError(f"{path}: too many pixels to load safely") from None
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: the image cannot be decoded ({str(exc)[:160]})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        im = im.convert("I")
        mode = "I"
    if mode in ("I", "F"):
        # 16-bit (or float) range -> 8 bits, not clipped to white.
        peak = 65535.0 if mode == "I" and (im.getextrema()[1] or 0) > 255 else (255.0 if mode == "I" else 1.0)
        im = im.point(lambda v: v * (255.0 / peak)).convert("L")
        mode = "L"
    if mode == "P" or (mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    if mode != "RGB":
        return im.convert("RGB")
    return im.copy() if im.readonly else im


__all__ = [
    "DEFAULT_MIN_SIDE",
    "IMAGE_SUFFIXES",
    "Dataset",
    "DatasetError",
    "ImageItem",
    "Problem",
    "ProblemKind",
    "check_folder",
    "inspect_image",
    "iter_image_files",
    "load_training_image",
    "make_item",
    "repeats_for",
    "scan_dataset",
    "to_rgb",
]
