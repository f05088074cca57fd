"""Atomic file writes: a temp file in the same folder, fsync, ``os.replace``, fsync of the folder.

A crash or Ctrl+C during a save leaves either the old file or the new one, never half; the
folder's fsync makes the rename itself survive a power cut. A full disk or a read-only
folder becomes a :class:`SaveError` naming the file, with the error kind the GUI shows.
``mkstemp``/``mkdtemp`` make private (0600/0700) temp files; every result is given the mode an
ordinary ``open()`` would have (0666/0777 less the umask), so shared outputs stay readable.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.core.errors import ErrorKind

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}


class SaveError(OSError):
    """A file could not be saved: the disk is full (``kind`` DISK_FULL) or writing is not allowed
    (PERMISSION). ``str()`` is one sentence; :meth:`sentence` words what the user does next."""

    def __init__(self, kind: ErrorKind, path: Path, reason: str, need_bytes: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.path = Path(path)
        self.reason = reason
        self.need_bytes = need_bytes

    def sentence(self, then: str = "try again") -> str:
        if self.kind is ErrorKind.DISK_FULL:
            return f"Disk full while saving {self.path}: free {free_hint(self.need_bytes)} and {then}"
        return (
            f"Cannot save {self.path} ({self.reason}): the folder is read-only or not yours; "
            f"make it writable and {then}"
        )

    def __str__(self) -> str:
        return self.sentence()


def free_hint(need_bytes: int | None) -> str:
    """How much space to free, as a user reads it ("0.3 GB"); at least 0.1 GB."""
    if not need_bytes:
        return "some space"
    return f"{max(0.1, math.ceil(need_bytes * 1.1 / 1e8) / 10):.1f} GB"


def size_text(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{max(n, 0) / 1e6:.0f} MB"


def save_error(exc: OSError, path: Path, need_bytes: int | None = None) -> SaveError | None:
    """``exc`` as a :class:`SaveError` when it is a full disk or a refused write, else None."""
    if isinstance(exc, SaveError):
        return exc
    if exc.errno in _FULL:
        return SaveError(ErrorKind.DISK_FULL, path, exc.strerror or "no space left", need_bytes)
    if exc.errno in _DENIED:
        return SaveError(ErrorKind.PERMISSION, path, exc.strerror or "permission denied", need_bytes)
    return None


@contextmanager
def saving(path: Path, need_bytes: int | None = None) -> Iterator[None]:
    """Around any write of ``path``: a full disk or a refused write raises :class:`SaveError`."""
    try:
        yield
    except OSError as exc:
        err = save_error(exc, path, need_bytes)
        if err is None or err is exc:
            raise
        raise err from None


def free_bytes(folder: Path) -> int | None:
    """Free space where ``folder`` is (or would be created); None when it cannot be told."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the rename is still atomic
        pass
    finally:
        os.close(fd)


def replace_durably(src: Path, dst: Path) -> None:
    """``os.replace`` then fsync of the target's folder."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    # The only portable way to read the umask is to set it and put it back; the lock keeps two
    # threads from seeing each other's temporary 0.
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def ordinary_mode(folder: bool = False) -> int:
    """The mode ``open()`` (or ``mkdir``) would give a new file (folder) under the umask."""
    return (0o777 if folder else 0o666) & ~current_umask()


def make_ordinary(path: Path | str, folder: bool = False) -> None:
    """Undo the privacy of a ``mkstemp``/``mkdtemp`` result that becomes a user-visible file."""
    os.chmod(path, ordinary_mode(folder))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    with saving(path, len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), ordinary_mode())
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            replace_durably(Path(tmp), path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def temp_path_beside(path: Path) -> Path:
    """A fresh temp name in the target's folder, for writers that want a path (PIL, safetensors)."""
    path = Path(path)
    with saving(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, ordinary_mode())  # writers that reopen the path keep this mode
    finally:
        os.close(fd)
    return Path(tmp)
