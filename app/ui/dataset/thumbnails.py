"""Thumbnails made off the GUI thread and cached on disk.

Each request is a task of the shared relay (app/ui/common/tasks.py) on its own lane: QImageReader with a scaled size
(JPEG decodes at reduced size), EXIF orientation applied, saved as PNG under
``cache_dir()/thumbnails`` with a name made from path + mtime + size, so a changed file
gets a new thumbnail and a re-opened folder loads from the cache. The newest request
runs first (scrolling to the end of a large folder does not wait for the rows above).
Pixmaps are made in the GUI thread from the QImage the worker thread sends back.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QImageReader, QPixmap

from app.core import paths
from app.ui.common.tasks import TaskRunner

THUMB_SIZE = 160
MEMORY_LIMIT = 3000  # pixmaps kept in memory (about 100 kB each at most)


def thumbnail_cache_dir() -> Path:
    return paths.cache_dir() / "thumbnails"


def cache_key(path: str, mtime_ns: int, size: int, thumb: int = THUMB_SIZE) -> str:
    return hashlib.sha1(f"{path}|{mtime_ns}|{size}|{thumb}".encode("utf-8", "surrogatepass")).hexdigest()


def make_thumbnail(path: str, thumb: int = THUMB_SIZE) -> QImage:
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > thumb or size.height() > thumb):
        reader.setScaledSize(size.scaled(QSize(thumb, thumb), Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if not image.isNull() and (image.width() > thumb or image.height() > thumb):
        image = image.scaled(
            thumb, thumb, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    return image


def cached_thumbnail(path: str, mtime_ns: int, size: int, cache: Path) -> QImage:
    """The thumbnail from the disk cache, else made and saved there (runs in a pool thread);
    a null image when the picture cannot be read."""
    cached = cache / f"{cache_key(path, mtime_ns, size)}.png"
    image = QImage()
    if cached.is_file():
        image = QImageReader(str(cached)).read()
    if image.isNull():
        image = make_thumbnail(path)
        if not image.isNull():
            _save(image, cached)
    return image


def _save(image: QImage, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{id(image)}.tmp")
        if image.save(str(tmp), "PNG"):
            os.replace(tmp, target)
        else:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written only costs speed


class ThumbnailLoader(QObject):
    """``pixmap(path, mtime_ns, size)`` returns a cached pixmap or None and schedules the work;
    ``ready(path)`` says when it is there."""

    ready = Signal(str)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, threads: int | None = None) -> None:
        super().__init__(parent)
        self._tasks = TaskRunner(threads or max(2, QThreadPool.globalInstance().maxThreadCount() // 2), self)
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: set[str] = set()
        self._failed: set[str] = set()
        self._priority = itertools.count(1)
        self.cache = thumbnail_cache_dir()

    def pixmap(self, path: str, mtime_ns: int, size: int) -> QPixmap | None:
        pix = self._pixmaps.get(path)
        if pix is not None:
            self._pixmaps.move_to_end(path)
            return pix
        if path not in self._pending and path not in self._failed:
            self._pending.add(path)
            # Newest first: a higher priority runs earlier; wrap well inside a C int.
            cache = self.cache
            self._tasks.run(
                lambda: cached_thumbnail(path, mtime_ns, size, cache),
                lambda image: self._on_done(path, image),
                lambda _kind, _message: self._on_done(path, QImage()),
                priority=next(self._priority) % 1_000_000_000,
            )
        return None

    def has_failed(self, path: str) -> bool:
        return path in self._failed

    def is_loaded(self, path: str) -> bool:
        return path in self._pixmaps

    def forget(self, path: str) -> None:
        self._pixmaps.pop(path, None)
        self._failed.discard(path)

    def clear(self) -> None:
        self._tasks.cancel_all()  # queued ones never start; running ones are dropped on arrival
        self._pixmaps.clear()
        self._pending.clear()
        self._failed.clear()

    def wait(self, msecs: int = 5000) -> bool:
        return self._tasks.wait(msecs)

    def _on_done(self, path: str, image: QImage) -> None:
        if path not in self._pending:
            return  # cleared meanwhile (another folder opened)
        self._pending.discard(path)
        if image.isNull():
            self._failed.add(path)
            self.failed.emit(path)
            return
        self._pixmaps[path] = QPixmap.fromImage(image)
        while len(self._pixmaps) > MEMORY_LIMIT:
            self._pixmaps.popitem(last=False)
        self.ready.emit(path)
