"""Open the files users hand us (pictures, captions, adapters) as if each one were hostile.

Only a regular file is ever read: a FIFO would block ``open`` or ``read`` forever, a
device (``/dev/zero``, ``/dev/random``) never ends, and a symbolic link may point at any
file on the machine (a key file whose text would then travel inside an uploaded
adapter). So a path is resolved, checked to stay inside the folder the user gave (when
there is one), opened without following a last link and without blocking, checked with
``fstat`` on the open descriptor (no race between the check and the read) and read
with a size cap.

:class:`RefusedFile` is an ``OSError``, so a caller that already handles "cannot be
read" handles a refusal too; its message names the file and says why in one sentence.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from pathlib import Path
from typing import BinaryIO

from app.core.errors import ErrorKind

# O_NONBLOCK: opening a FIFO for reading then returns at once instead of waiting for a
# writer; it has no effect on the regular files we go on to read. Neither flag exists on
# Windows, which has no FIFOs or symlinks of this kind in user folders.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_LOOP = "a symbolic link loop (the link points back at itself); it is not read"


class RefusedFile(OSError):
    """A path that is not a regular file inside its folder, or is over a size cap."""

    kind = ErrorKind.BAD_INPUT

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:  # OSError's own str() would add "[Errno ...]" decorations
        return f"{self.path}: {self.reason}"


def _what(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    # A scan asks about the same folder thousands of times; it does not move during one.
    return os.path.realpath(root)


def _inside(real: str, root: str | os.PathLike[str]) -> bool:
    real_root = _real_root(os.fspath(root))
    # Both are realpath()s (absolute, normalised), so a prefix test is exact and much cheaper
    # than os.path.commonpath over thousands of files.
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def resolve_inside(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """The real path of ``path``; :class:`RefusedFile` when a link leads out of ``root``."""
    real = os.path.realpath(path)
    if root is not None and not _inside(real, root):
        raise RefusedFile(path, f"a link to {real}, outside the folder {root}; it is not read")
    return real


def _opened_path(fd: int, path: str | os.PathLike[str]) -> str:
    """Where the open descriptor really is (no race with a link changed after the check)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc (macOS, Windows): resolve the name instead
        return os.path.realpath(path)


def check_regular(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> os.stat_result:
    """``stat`` of a regular file inside ``root`` without opening it (for files read later by others)."""
    real = resolve_inside(path, root)
    try:
        st = os.stat(real, follow_symlinks=False)
    except OSError as exc:
        raise _refusal(path, exc) from None
    if stat.S_ISLNK(st.st_mode):  # realpath stops resolving only at a loop
        raise RefusedFile(path, _LOOP)
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFile(path, f"{_what(st.st_mode)}, not a regular file; it is not read")
    return st


def _refusal(path: str | os.PathLike[str], exc: OSError) -> OSError:
    """A symlink loop (ELOOP) becomes a refusal; every other error (missing, permission) stays as it is."""
    if exc.errno == errno.ELOOP:
        return RefusedFile(path, _LOOP)
    return exc


def open_regular(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, max_bytes: int | None = None
) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (inside ``root`` when given) of at
    most ``max_bytes``; else raise :class:`RefusedFile`. Missing or unreadable files raise the
    usual ``OSError`` subclasses."""
    try:
        st = os.stat(path)  # a FIFO or device is refused before anything opens it
    except OSError as exc:
        raise _refusal(path, exc) from None
    if not stat.S_ISREG(st.st_mode):
        if root is not None:
            resolve_inside(path, root)  # a link out of the folder is the first thing to say
        raise RefusedFile(path, f"{_what(st.st_mode)}, not a regular file; it is not read")
    try:
        fd = os.open(path, _OPEN_FLAGS | _BINARY)  # the usual case: no link at the end
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        # The last component is a link: follow it by hand (so a loop is told apart) and check
        # where it leads before opening the target, again without following a link.
        try:
            fd = os.open(resolve_inside(path, root), _OPEN_FLAGS | _BINARY)
        except OSError as exc2:
            raise _refusal(path, exc2) from None
    if root is not None:
        real = _opened_path(fd, path)
        if not _inside(real, root):  # a linked folder on the way
            os.close(fd)
            raise RefusedFile(path, f"a link to {real}, outside the folder {root}; it is not read")
    try:
        st = os.fstat(fd)  # again on what was opened: the name may have been swapped meanwhile
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile(path, f"{_what(st.st_mode)}, not a regular file; it is not read")
        if max_bytes is not None and st.st_size > max_bytes:
            raise RefusedFile(
                path,
                f"{st.st_size:,} bytes, over the {_size_words(max_bytes)} limit for this kind of file; it is not read",
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], *, max_bytes: int, root: str | os.PathLike[str] | None = None) -> bytes:
    """The bytes of a regular file (see :func:`open_regular`), never more than ``max_bytes``
    even if the file grows while it is read."""
    with open_regular(path, root=root, max_bytes=max_bytes) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RefusedFile(path, f"grew over the {_size_words(max_bytes)} limit while it was read; it is not read")
    return data


def _size_words(n: int) -> str:
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


__all__ = ["RefusedFile", "check_regular", "open_regular", "read_regular", "resolve_inside"]
