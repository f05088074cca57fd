"""Atomic file writes: a temp file in the same folder, fsync, then ``os.replace``.

A crash or Ctrl+C during a save leaves either the old file or the new one, never half.
``mkstemp``/``mkdtemp`` make private (0600/0700) temp files; every result is given the mode an
ordinary ``open()`` would have (0666/0777 less the umask), so shared outputs stay readable.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, ordinary_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, ordinary_mode())  # writers that reopen the path keep this mode
    finally:
        os.close(fd)
    return Path(tmp)
