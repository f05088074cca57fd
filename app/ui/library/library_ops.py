"""The Library tab's state and operations, with no widget in sight.

Wraps :class:`app.core.library.Library` (adapters on disk) and :class:`app.core.hub.client.Hub`
(search, details, downloads). All disk and network work runs on a thread pool; results
come back as signals on the GUI thread. Downloads can be cancelled and resumed; a
finished download is verified by the core and recorded in the library before
``downloadFinished`` is emitted, so it is already under Local when the tab hears of it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal
from PySide6.QtGui import QImage

from app.core.families import Family
from app.core.hub.client import Hub
from app.core.hub.errors import HubError, HubErrorKind
from app.core.hub.models import HubFile, HubRepo, SearchQuery
from app.core.library import Library, LibraryEntry
from app.ui.common.tasks import TaskRunner

log = logging.getLogger(__name__)

THUMB_SIZE = 176


def load_thumbnail(path: str | None = None, data: bytes | None = None, size: int = THUMB_SIZE) -> QImage | None:
    """A picture scaled to fit ``size`` (QImage is safe off the GUI thread; QPixmap is not)."""
    image = QImage(path) if path else QImage.fromData(data or b"")
    if image.isNull():
        return None
    return image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


@dataclass
class DownloadState:
    key: str
    repo: HubRepo
    file: HubFile
    cancel: threading.Event
    done: int = 0
    total: int | None = None


def download_key(repo_id: str, filename: str) -> str:
    return f"{repo_id}/{filename}"


class LibraryOps(QObject):
    localChanged = Signal()  # the library's entries changed (scan finished, download recorded)
    scanningChanged = Signal(bool)
    hubResults = Signal(list, bool, bool)  # (repos, more pages exist, appended to the previous ones)
    hubBusyChanged = Signal(bool)
    hubFailed = Signal(str, str)  # (kind, message) of a search or details request
    detailsReady = Signal(object)  # HubRepo with files and description
    thumbnailReady = Signal(str, QImage)  # (card key, picture)
    downloadProgress = Signal(str, object, object)  # (key, bytes done, bytes in all or None)
    downloadFinished = Signal(str, str)  # (key, path of the verified file, now in the library)
    downloadFailed = Signal(str, str, str)  # (key, kind, message); kind "cancelled" when stopped
    offlineChanged = Signal(bool, str)  # (offline, why)
    tokenStatusChanged = Signal(str)  # one line: who is signed in, or why not
    message = Signal(str)  # one line for the status bar

    def __init__(self, library: Library | None = None, hub: Hub | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library or Library()
        self._hub = hub  # made on first use, in a pool thread: huggingface_hub stays out of the start-up
        self._hub_lock = threading.Lock()
        self.tasks = TaskRunner(4, self)
        self.thumbs = TaskRunner(2, self)  # pictures never wait behind a download
        self.offline = False
        self.offline_reason = ""
        self.scanned = False
        self.downloads: dict[str, DownloadState] = {}
        self.repos: list[HubRepo] = []
        self._next_url: str | None = None
        self._search_seq = 0
        self._thumb_keys: set[str] = set()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def hub(self) -> Hub:
        with self._hub_lock:
            if self._hub is None:
                self._hub = Hub()
            return self._hub

    def start(self) -> None:
        """The first look at the tab: read the library, see whether the Hub is switched off, check the token."""
        self.refresh_local()

        def probe() -> tuple[bool, str | None]:
            offline = self.hub.offline()
            return offline, None if offline else self.hub.whoami()

        self.tasks.run(probe, self._on_probe, lambda kind, msg: self.tokenStatusChanged.emit(msg))

    def _on_probe(self, result: tuple[bool, str | None]) -> None:
        offline, name = result
        if offline:
            self._set_offline(True, "HF_HUB_OFFLINE is set: the Hub is not contacted")
            self.tokenStatusChanged.emit("Offline.")
        else:
            self.tokenStatusChanged.emit(
                f"Signed in as {name}." if name else "No Hub token: gated repos cannot be downloaded."
            )

    # -------------------------------------------------------- local

    def refresh_local(self) -> None:
        self.scanningChanged.emit(True)
        self.tasks.run(self.library.refresh, self._on_scanned, self._on_scan_failed)

    def _on_scanned(self, report: Any) -> None:
        self.scanned = True
        self.scanningChanged.emit(False)
        if report.problems:
            self.message.emit(
                f"Library: {len(report.entries)} adapters, {report.problems} cannot be used (marked in the list)."
            )
        self.localChanged.emit()

    def _on_scan_failed(self, kind: str, message: str) -> None:
        self.scanningChanged.emit(False)
        self.message.emit(f"Library: {message}")

    def local_entries(self, text: str = "", family: Family | None = None) -> list[LibraryEntry]:
        return self.library.search(text, family)

    def add_folder(self, folder: str) -> None:
        def work() -> Any:
            added = self.library.add_folder(folder)
            return added, self.library.refresh()

        self.scanningChanged.emit(True)
        self.tasks.run(
            work,
            lambda result: (self.message.emit(f"Added {result[0]}."), self._on_scanned(result[1])),
            self._on_scan_failed,
        )

    def remove_folder(self, folder: str) -> None:
        def work() -> Any:
            self.library.remove_folder(folder)
            return self.library.refresh()

        self.scanningChanged.emit(True)
        self.tasks.run(work, self._on_scanned, self._on_scan_failed)

    def local_thumbnail(self, entry: LibraryEntry) -> None:
        key = entry.path
        if key in self._thumb_keys or not (entry.preview or entry.embedded_preview):
            return
        self._thumb_keys.add(key)
        if entry.preview:
            self.thumbs.run(lambda: load_thumbnail(entry.preview), lambda img: self._thumb(key, img))
        else:
            self.thumbs.run(lambda: load_thumbnail(data=entry.preview_bytes()), lambda img: self._thumb(key, img))

    def _thumb(self, key: str, image: QImage | None) -> None:
        if image is not None:
            self.thumbnailReady.emit(key, image)

    # -------------------------------------------------------- hub

    def _set_offline(self, offline: bool, reason: str = "") -> None:
        if offline != self.offline or reason != self.offline_reason:
            self.offline, self.offline_reason = offline, reason
            self.offlineChanged.emit(offline, reason)

    def _hub_error(self, kind: str, message: str) -> None:
        if kind == HubErrorKind.OFFLINE.value:
            self._set_offline(True, message)
        self.hubBusyChanged.emit(False)
        self.hubFailed.emit(kind, message)

    def search(self, query: SearchQuery) -> None:
        """Search from the first page; an older search still running is ignored when it ends."""
        self._search_seq += 1
        seq = self._search_seq
        self.hubBusyChanged.emit(True)
        self.tasks.run(
            lambda: self.hub.search(query),
            lambda page: self._on_page(seq, page, False),
            lambda kind, msg: self._on_search_failed(seq, kind, msg),
        )

    def load_more(self) -> bool:
        if not self._next_url:
            return False
        url, seq = self._next_url, self._search_seq
        self.hubBusyChanged.emit(True)
        self.tasks.run(
            lambda: self.hub.more(url),
            lambda page: self._on_page(seq, page, True),
            lambda kind, msg: self._on_search_failed(seq, kind, msg),
        )
        return True

    def _on_page(self, seq: int, page: Any, append: bool) -> None:
        if seq != self._search_seq:
            return
        self._set_offline(False)
        self.repos = (self.repos if append else []) + page.repos
        self._next_url = page.next_url
        self.hubBusyChanged.emit(False)
        self.hubResults.emit(page.repos, page.next_url is not None, append)

    def _on_search_failed(self, seq: int, kind: str, message: str) -> None:
        if seq == self._search_seq:
            self._hub_error(kind, message)

    def open_repo(self, repo_id: str) -> None:
        self.hubBusyChanged.emit(True)
        self.tasks.run(lambda: self.hub.details(repo_id), self._on_details, self._hub_error)

    def _on_details(self, repo: HubRepo) -> None:
        self.hubBusyChanged.emit(False)
        self.detailsReady.emit(repo)

    def hub_thumbnail(self, repo: HubRepo) -> None:
        key = f"hub:{repo.repo_id}"
        if key in self._thumb_keys or not repo.preview_files:
            return
        self._thumb_keys.add(key)
        name = repo.preview_files[0]

        def work() -> QImage | None:
            return load_thumbnail(str(self.hub.fetch(repo.repo_id, name)))

        self.thumbs.run(work, lambda img: self._thumb(key, img), lambda kind, msg: log.info("%s", msg))

    # -------------------------------------------------------- downloads

    def download(self, repo: HubRepo, file: HubFile) -> str:
        """Start (or resume) downloading one file; returns its key for the progress signals."""
        key = download_key(repo.repo_id, file.name)
        if key in self.downloads:
            return key
        state = DownloadState(key, repo, file, threading.Event(), total=file.size)
        self.downloads[key] = state

        def work(report) -> LibraryEntry:
            path = self.hub.download(
                repo.repo_id, file.name, expected_sha256=file.sha256, cancel=state.cancel, on_progress=report
            )
            preview = None
            if repo.preview_files:  # the card's picture, for the Local card (small, usually cached already)
                try:
                    preview = self.hub.fetch(repo.repo_id, repo.preview_files[0])
                except HubError as exc:
                    log.info("no preview for %s: %s", key, exc)
            return self.library.record_download(
                path,
                repo_id=repo.repo_id,
                trigger_words=repo.trigger_words,
                family=repo.family,
                license=repo.license,
                sha256=file.sha256,
                preview=preview,
            )

        self.tasks.run(
            work,
            lambda entry: self._on_downloaded(key, entry),
            lambda kind, msg: self._on_download_failed(key, kind, msg),
            lambda done, total: self._on_progress(key, done, total),
        )
        self.downloadProgress.emit(key, 0, file.size)
        return key

    def cancel_download(self, key: str) -> None:
        state = self.downloads.get(key)
        if state is not None:
            state.cancel.set()
            # The thread stops at its next chunk; the UI is told now, not then.
            self.downloads.pop(key, None)
            self.downloadFailed.emit(
                key, HubErrorKind.CANCELLED.value, f"{key}: cancelled; Download again to resume where it stopped"
            )

    def _on_progress(self, key: str, done: int, total: int | None) -> None:
        state = self.downloads.get(key)
        if state is not None:
            state.done, state.total = done, total
            self.downloadProgress.emit(key, done, total)

    def _on_downloaded(self, key: str, entry: LibraryEntry) -> None:
        self.downloads.pop(key, None)
        self.localChanged.emit()
        self.downloadFinished.emit(key, entry.path)
        note = f" ({entry.problem})" if entry.problem else ""
        self.message.emit(f"Downloaded {key}{note}.")

    def _on_download_failed(self, key: str, kind: str, message: str) -> None:
        if self.downloads.pop(key, None) is None:
            return  # already reported as cancelled
        if kind == HubErrorKind.OFFLINE.value:
            self._set_offline(True, message)
        self.downloadFailed.emit(key, kind, message)

    def downloaded_path(self, repo_id: str, filename: str) -> str | None:
        """The verified local copy of a Hub file, if it is in the library."""
        for entry in self.library.entries:
            if entry.repo_id == repo_id and Path(entry.path).name == Path(filename).name and entry.usable:
                return entry.path
        return None

    # -------------------------------------------------------- token

    def save_token(self, token: str) -> None:
        self.tokenStatusChanged.emit("Checking the token…")
        self.tasks.run(
            lambda: self.hub.save_token(token),
            lambda name: self.tokenStatusChanged.emit(f"Signed in as {name}."),
            lambda kind, msg: self.tokenStatusChanged.emit(msg),
        )

    def forget_token(self) -> None:
        self.tasks.run(
            self.hub.forget_token,
            lambda _: self.tokenStatusChanged.emit("Token removed."),
            lambda kind, msg: self.tokenStatusChanged.emit(msg),
        )

    # -------------------------------------------------------- exit

    def shutdown(self) -> None:
        """Stop downloads at their next chunk (what arrived is kept for resuming)."""
        for state in list(self.downloads.values()):
            state.cancel.set()
        self.downloads.clear()
