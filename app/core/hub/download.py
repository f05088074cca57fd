"""Resumable, verified downloads into the standard Hugging Face cache.

``hf_hub_download`` (huggingface_hub 2.4) writes each attempt to a process-unique temp
file and deletes it on any failure, so a cancelled or dropped 200 MB download starts
again at 0 %. Here the bytes go to ``blobs/<sha256>.loraloom.incomplete`` in the cache
folder of the repo and the next attempt asks for the rest with ``Range``. The finished
file is checked against the Hub's sha256 (the LFS oid, also the blob's name) and only
then moved to ``blobs/<sha256>``; ``hf_hub_download`` itself then links it into
``snapshots/<commit>/<file>`` and writes ``refs/<revision>``, so the cache stays exactly
what every other huggingface_hub user expects. A file whose bytes do not match is
deleted and never reaches the library.

Metadata, headers, the HTTP session, error mapping and cache naming all come from
huggingface_hub; only the byte loop is ours (1 chunk as it arrives, so progress moves and
Cancel answers within a chunk instead of every 10 MB).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from app.core.files import replace_durably, save_error
from app.core.hub.errors import HubError, HubErrorKind, translate_error, write_failed
from app.core.hub.models import check_file_name, check_repo_id, origin

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None"], None]  # (bytes done, bytes in all or None)

PARTIAL_SUFFIX = ".loraloom.incomplete"
MAX_TRIES_WITHOUT_PROGRESS = 4
RETRY_WAITS = (0.5, 1.0, 2.0, 4.0)
PROGRESS_INTERVAL_S = 0.1
LOCK_WAIT_S = 2.0  # another thread or process downloading the same file: say so instead of waiting
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class HubSite(Protocol):
    """What a download needs of :class:`app.core.hub.client.Hub`. A protocol, so that this module does
    not import the client, which imports this one."""

    endpoint: str
    token: str | bool | None
    cache_dir: Path
    timeout: float

    def offline(self) -> bool: ...

    def cached(self, repo_id: str, filename: str, revision: str | None = None) -> Path | None: ...

    def headers(self) -> dict[str, str]: ...


class _Reporter:
    """Calls ``on_progress`` at most every 0.1 s, and always for the first and the last byte."""

    def __init__(self, on_progress: ProgressFn | None, total: int | None) -> None:
        self.on_progress = on_progress
        self.total = total
        self.last = 0.0
        self.started = False

    def __call__(self, done: int, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if force or not self.started or now - self.last >= PROGRESS_INTERVAL_S or done == self.total:
            self.started = True
            self.last = now
            self.on_progress(done, self.total)


def _check_cancel(cancel: threading.Event | None, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise HubError(HubErrorKind.CANCELLED, f"{what}: cancelled; Download again to resume")


def _hash_matches(
    path: Path, sha256: str | None, git_sha1: str | None, cancel: threading.Event | None, what: str
) -> bool:
    h = hashlib.sha256() if sha256 else hashlib.sha1()
    if not sha256:
        h.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            _check_cancel(cancel, what)
            h.update(chunk)
    return h.hexdigest() == (sha256 or git_sha1)


def _size_text(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def download_to_cache(
    hub: HubSite,
    repo_id: str,
    filename: str,
    *,
    revision: str,
    expected_sha256: str | None,
    on_progress: ProgressFn | None,
    cancel: threading.Event | None,
) -> Path:
    from filelock import Timeout as FileLockTimeout
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock

    what = f"{repo_id}/{filename}"
    check_repo_id(repo_id)
    check_file_name(repo_id, filename)
    storage = hub.cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")

    def from_cache(error: HubError) -> Path:
        cached = hub.cached(repo_id, filename, revision)
        if cached is None:
            raise error
        log.info("%s: using the cached copy (%s)", what, error)
        return cached

    if hub.offline():
        return from_cache(
            HubError(HubErrorKind.OFFLINE, f"{what}: offline (HF_HUB_OFFLINE is set) and not downloaded before")
        )
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub.endpoint)
    try:
        meta = get_hf_file_metadata(url, token=hub.token, timeout=hub.timeout, endpoint=hub.endpoint)
    except Exception as exc:  # noqa: BLE001
        err = translate_error(exc, what)
        if err.kind in (HubErrorKind.OFFLINE, HubErrorKind.INCOMPLETE):
            return from_cache(err)
        raise err from None
    etag, commit = meta.etag, meta.commit_hash
    sha256, git_sha1 = _checksums(etag, commit, expected_sha256, hub.endpoint, what)
    blob = storage / "blobs" / etag
    pointer = storage / "snapshots" / commit / filename
    if not (_inside(pointer, storage) and _inside(blob, storage)):
        raise HubError(HubErrorKind.BAD_NAME, f"{what}: would be written outside the download folder; refused")

    if pointer.is_file():  # in the cache already: check it, then it is a hit
        if _hash_matches(pointer, sha256, git_sha1, cancel, what):
            if on_progress is not None:
                on_progress(pointer.stat().st_size, pointer.stat().st_size)
            return pointer
        log.warning("%s: the cached copy does not match the Hub's checksum; downloading it again", what)
        blob.unlink(missing_ok=True)
        pointer.unlink(missing_ok=True)
    elif blob.is_file() and not _hash_matches(blob, sha256, git_sha1, cancel, what):
        log.warning("%s: a cached blob does not match the Hub's checksum; downloading it again", what)
        blob.unlink()  # e.g. left by another tool; a good blob is only linked, never fetched again
    if not blob.is_file():
        lock = hub.cache_dir / ".locks" / storage.name / f"{etag}.loraloom.lock"
        try:  # one writer per partial file, across threads and processes (the GUI and the CLI)
            lock.parent.mkdir(parents=True, exist_ok=True)
            with WeakFileLock(lock, timeout=LOCK_WAIT_S):
                if not blob.is_file():
                    _fetch_and_verify(url, meta, hub, blob, sha256, git_sha1, on_progress, cancel, what)
        except FileLockTimeout:
            raise HubError(
                HubErrorKind.INCOMPLETE,
                f"{what}: another download of this file is running; try again when it has finished",
            ) from None
        except OSError as exc:  # the lock, the folders or the final rename in the download folder
            saved = save_error(exc, blob, meta.size)
            if saved is None:
                raise
            raise write_failed(saved, what, hub.cache_dir) from None
    return _link_into_snapshot(hub, repo_id, filename, revision, blob, cancel, what)


def _checksums(
    etag: str | None, commit: str | None, expected_sha256: str | None, endpoint: str, what: str
) -> tuple[str | None, str | None]:
    """(sha256, git sha1) the file's bytes must match, from the Hub's ETag; exactly one is set."""
    if not etag or not commit or not re.fullmatch(r"[\w.-]+", etag) or not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise HubError(
            HubErrorKind.SERVER, f"{what}: {endpoint} did not answer like a Hugging Face Hub (no commit or ETag)"
        )
    sha256 = etag if _SHA256.fullmatch(etag) else None
    if expected_sha256 and sha256 and expected_sha256 != sha256:
        raise HubError(
            HubErrorKind.CORRUPT, f"{what}: the file changed on the Hub since it was listed; open the repo again"
        )
    sha256 = sha256 or expected_sha256
    git_sha1 = etag if sha256 is None and _GIT_SHA1.fullmatch(etag) else None
    if sha256 is None and git_sha1 is None:
        raise HubError(
            HubErrorKind.CORRUPT, f"{what}: the Hub gave no checksum for this file, so it cannot be verified; refused"
        )
    return sha256, git_sha1


def _link_into_snapshot(
    hub: HubSite, repo_id: str, filename: str, revision: str, blob: Path, cancel: threading.Event | None, what: str
) -> Path:
    """The verified blob linked into ``snapshots/`` (and ``refs/<revision>`` written) by huggingface_hub."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=hub.cache_dir,
                endpoint=hub.endpoint,
                token=hub.token,
                etag_timeout=hub.timeout,
            )
        )
    except Exception as exc:  # noqa: BLE001
        raise translate_error(exc, what) from None
    if path.resolve() != blob.resolve():  # the repo changed between our request and the library's
        real = path.resolve()
        if not _hash_matches(
            real,
            real.name if _SHA256.fullmatch(real.name) else None,
            real.name if _GIT_SHA1.fullmatch(real.name) else None,
            cancel,
            what,
        ):
            path.unlink(missing_ok=True)
            real.unlink(missing_ok=True)
            raise HubError(
                HubErrorKind.CORRUPT,
                f"{what}: the file changed during the download and its bytes do not match; try again",
            )
    return path


def _fetch_and_verify(
    url: str,
    meta,
    hub: HubSite,
    blob: Path,
    sha256: str | None,
    git_sha1: str | None,
    on_progress: ProgressFn | None,
    cancel: threading.Event | None,
    what: str,
) -> None:
    """Bytes into ``<blob>.loraloom.incomplete`` (resuming), checked, then renamed to the blob."""
    partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
    blob.parent.mkdir(parents=True, exist_ok=True)
    location, headers = _location(url, meta, hub)
    _fetch(location, partial, meta.size, headers, hub.timeout, _Reporter(on_progress, meta.size), cancel, what)
    if not _hash_matches(partial, sha256, git_sha1, cancel, what):
        partial.unlink(missing_ok=True)
        raise HubError(
            HubErrorKind.CORRUPT,
            f"{what}: the downloaded bytes do not match the Hub's checksum (sha256); the file was deleted, try again",
        )
    replace_durably(partial, blob)


def _location(url: str, meta, hub: HubSite) -> tuple[str, dict[str, str]]:
    """Where the bytes are, and the headers to send there (no token for a CDN on another host)."""
    headers = hub.headers()
    headers["Accept-Encoding"] = "identity"  # sizes and Range offsets are of the file itself
    if meta.xet_file_data is not None or not meta.location:
        return url, headers  # the resolve URL redirects to the bytes; httpx drops the token on the way
    location = meta.location
    if origin(location) != origin(url) and origin(location) != origin(hub.endpoint):
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    return location, headers


def _fetch(
    location: str,
    partial: Path,
    size: int | None,
    headers: dict[str, str],
    timeout: float,
    report: _Reporter,
    cancel: threading.Event | None,
    what: str,
) -> None:
    import httpx2
    from huggingface_hub.utils import get_session

    failures = 0
    restarted = False
    while True:
        _check_cancel(cancel, what)
        have = _bytes_kept(partial, size, what)
        if size is not None and have == size:
            report(have, force=True)
            return
        request_headers = dict(headers)
        if have:
            request_headers["Range"] = f"bytes={have}-"
        start = have
        try:
            with get_session().stream(
                "GET", location, headers=request_headers, timeout=timeout, follow_redirects=True
            ) as response:
                if response.status_code == 416 and have and not restarted:
                    partial.unlink()  # the server has less than we kept: start again, once
                    restarted = True
                    continue
                _raise_for_status(response, what)
                mode = "ab"
                if have and response.status_code != 206:  # the server ignored Range: start again
                    mode, have, start = "wb", 0, 0
                with partial.open(mode) as fh:
                    report(have, force=True)
                    for chunk in response.iter_bytes():
                        _check_cancel(cancel, what)
                        fh.write(chunk)
                        have += len(chunk)
                        report(have)
        except HubError:
            raise
        except OSError as exc:  # writing the partial file (or offline mode switched on meanwhile)
            raise _os_failure(exc, partial, (size - have) if size is not None else None, what) from None
        except httpx2.TransportError as exc:
            err = translate_error(exc, what)
            if err.kind is not HubErrorKind.INCOMPLETE and not have:
                raise err from None
            got = partial.stat().st_size if partial.exists() else 0
            failures = 0 if got > start else failures + 1
            if failures >= MAX_TRIES_WITHOUT_PROGRESS:
                raise HubError(
                    HubErrorKind.INCOMPLETE,
                    f"{what}: the download stopped at {_size_text(got)} of {_size_text(size)} "
                    f"({err}); Download again to resume",
                ) from None
            log.info("%s: connection lost at %s of %s, resuming", what, _size_text(got), _size_text(size))
            _wait_before_retry(failures, cancel, what)
            continue
        got = partial.stat().st_size
        if size is None or got == size:
            report(got, force=True)
            return
        if got > size:
            partial.unlink()
            raise HubError(
                HubErrorKind.CORRUPT,
                f"{what}: the server sent more bytes than the file has; the download was deleted, try again",
            )
        failures = 0 if got > start else failures + 1  # a clean close before the end: resume
        if failures >= MAX_TRIES_WITHOUT_PROGRESS:
            raise HubError(
                HubErrorKind.INCOMPLETE,
                f"{what}: the server stops sending at {_size_text(got)} of "
                f"{_size_text(size)}; Download again to resume",
            )


def _os_failure(exc: OSError, partial: Path, missing: int | None, what: str) -> HubError:
    """The sentence for an OSError while fetching: offline, the disk (full, read-only), or else."""
    if isinstance(exc, ConnectionError):
        return translate_error(exc, what)
    saved = save_error(exc, partial, missing)
    if saved is not None:
        return write_failed(saved, what, partial.parent)
    return HubError(HubErrorKind.SERVER, f"{what}: cannot write {partial} ({exc.strerror or exc})")


def _bytes_kept(partial: Path, size: int | None, what: str) -> int:
    """The bytes of the partial file to resume from (0 when it is longer than the file), once the
    disk is known to have room for the rest."""
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    if size is not None and have < size:
        free = shutil.disk_usage(partial.parent).free
        if free < size - have:
            raise HubError(
                HubErrorKind.DISK_FULL,
                f"{what}: needs {_size_text(size - have)} more, only {_size_text(free)} free in {partial.parent}",
            )
    return have


def _raise_for_status(response, what: str) -> None:
    """A 404, 401 or 5xx answer as the sentence of its :class:`HubError`."""
    from huggingface_hub.utils import hf_raise_for_status

    if response.status_code >= 400:
        response.read()
        try:
            hf_raise_for_status(response)
        except Exception as exc:  # noqa: BLE001 - 404, 401, 5xx as sentences
            raise translate_error(exc, what) from None


def _wait_before_retry(failures: int, cancel: threading.Event | None, what: str) -> None:
    """A pause growing with the failures in a row; Cancel ends it at once."""
    wait = RETRY_WAITS[min(failures, len(RETRY_WAITS) - 1)]
    if cancel is not None and cancel.wait(wait):
        _check_cancel(cancel, what)
    elif cancel is None:
        time.sleep(wait)
