"""Caption sidecars (``<stem>.txt`` beside the image): read, write atomically, split into tags.

A caption file that is not UTF-8 is read with replacement characters and flagged, and
:func:`write_caption` refuses to replace a read-only file: the user's files are never
overwritten behind their back.
"""

from __future__ import annotations

import collections
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from app.core.dataset.problems import Problem, ProblemKind
from app.core.errors import ErrorKind
from app.core.files import SaveError, atomic_write_bytes
from app.core.safe_files import RefusedFile, read_regular

CAPTION_SUFFIX = ".txt"
# A caption is a line of tags or a few sentences; 64 KB is far beyond any real one and
# keeps a mistaken or hostile file (a log, a dump) out of memory, the GUI and the adapter.
MAX_CAPTION_BYTES = 64 * 1024
DEFAULT_SEPARATOR = ", "
NEW_FILE_MODE = 0o644  # the temp file behind an atomic write is 0600; captions are ordinary files


class CaptionWriteError(OSError):
    """A caption could not be written; the message names the file and the reason."""

    kind = ErrorKind.BAD_INPUT

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: could not save the caption ({reason})")
        self.path = Path(path)
        self.reason = reason


def caption_path_for(image: str | Path) -> Path:
    image = Path(image)
    return image.with_name(image.stem + CAPTION_SUFFIX)


def decode_caption(data: bytes, path: Path | str = "") -> tuple[str, Problem | None]:
    """Caption bytes -> text (stripped). Non-UTF-8 bytes are replaced and flagged."""
    try:
        text = data.decode("utf-8-sig")
        problem = None
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        problem = Problem(
            ProblemKind.CAPTION_NOT_UTF8,
            f"{path}: the caption is not UTF-8 (bad byte at position {exc.start}); it is shown with "
            "replacement characters and will not be overwritten until you save it on purpose",
            blocking=False,
        )
    return text.strip(), problem


def read_caption_bytes(path: str | Path, root: str | Path | None = None) -> bytes | None:
    """The caption file's bytes, None when there is none. Only a regular file inside ``root`` (the
    dataset folder) of at most :data:`MAX_CAPTION_BYTES` is read; else :class:`RefusedFile`."""
    try:
        return read_regular(path, max_bytes=MAX_CAPTION_BYTES, root=root)
    except FileNotFoundError:
        return None


def read_caption(path: str | Path, root: str | Path | None = None) -> tuple[str, Problem | None]:
    """The caption text ("" when there is no file) and a problem, or None."""
    path = Path(path)
    try:
        data = read_caption_bytes(path, root)
    except RefusedFile as exc:
        return "", Problem(
            ProblemKind.CAPTION_UNREADABLE, f"{exc}; the picture is used without a caption", blocking=False
        )
    except OSError as exc:
        return "", Problem(
            ProblemKind.CAPTION_UNREADABLE,
            f"{path}: the caption file cannot be read ({exc.strerror or exc})",
            blocking=False,
        )
    if data is None:
        return "", None
    return decode_caption(data, path)


def is_read_only(path: Path) -> bool:
    """True when the file exists and has no owner write bit (respected even when running as root)."""
    try:
        return not (path.stat().st_mode & stat.S_IWUSR)
    except OSError:
        return False


def write_caption(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8, atomically, keeping the old file's permissions.

    Raises :class:`CaptionWriteError` (an OSError) naming the file for a read-only file,
    a missing or read-only folder, or a full disk.
    """
    write_caption_bytes(path, text.encode("utf-8"))


def write_caption_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    if is_read_only(path):
        raise CaptionWriteError(path, "the file is read-only")
    if not path.parent.is_dir():
        raise CaptionWriteError(path, "its folder does not exist")
    try:
        old_mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        old_mode = None
    try:
        atomic_write_bytes(path, data)
        os.chmod(path, old_mode if old_mode is not None else NEW_FILE_MODE)
    except SaveError as exc:
        if exc.kind is ErrorKind.DISK_FULL:
            raise  # the whole job stops: every later caption would fail the same way
        raise CaptionWriteError(path, exc.reason) from None
    except OSError as exc:
        raise CaptionWriteError(path, exc.strerror or str(exc)) from None


def remove_caption(path: str | Path) -> None:
    """Delete a caption file (used by undo when the file did not exist before)."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CaptionWriteError(path, exc.strerror or str(exc)) from None


# ---------------------------------------------------------------- tags


def _core(separator: str) -> str:
    """The part of a separator that splits: ", " splits on ",", a lone " " on " "."""
    return separator.strip() or separator or DEFAULT_SEPARATOR.strip()


def split_tags(text: str, separator: str = DEFAULT_SEPARATOR) -> list[str]:
    """``"a, b ,, c"`` -> ``["a", "b", "c"]``: split, strip, drop empty tags."""
    if not text:
        return []
    sep = _core(separator)
    parts = text.replace("\r\n", "\n").replace("\n", sep).split(sep)
    return [p.strip() for p in parts if p.strip()]


def join_tags(tags: Iterable[str], separator: str = DEFAULT_SEPARATOR) -> str:
    return separator.join(t.strip() for t in tags if t and t.strip())


class _HasCaption(Protocol):
    caption: str


def tag_frequencies(items: Iterable[_HasCaption | str], separator: str = DEFAULT_SEPARATOR) -> collections.Counter:
    """In how many captions each tag appears (a tag twice in one caption counts once)."""
    counter: collections.Counter = collections.Counter()
    for item in items:
        text = item if isinstance(item, str) else item.caption
        counter.update(set(split_tags(text, separator)))
    return counter


__all__ = [
    "CAPTION_SUFFIX",
    "DEFAULT_SEPARATOR",
    "CaptionWriteError",
    "caption_path_for",
    "decode_caption",
    "is_read_only",
    "join_tags",
    "MAX_CAPTION_BYTES",
    "read_caption",
    "read_caption_bytes",
    "remove_caption",
    "split_tags",
    "tag_frequencies",
    "write_caption",
    "write_caption_bytes",
]
