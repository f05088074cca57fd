"""Errors of the Hub client: a closed set of kinds, and any exception from the client (or from
writing into the download folder) turned into one :class:`HubError` sentence."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from app.core.errors import ErrorKind
from app.core.files import SaveError, free_hint, save_error


class HubErrorKind(str, Enum):
    OFFLINE = "offline"  # no network, the server is down, or HF_HUB_OFFLINE is set
    NOT_FOUND = "not_found"  # no such repo or revision
    FILE_NOT_FOUND = "file_not_found"
    NEEDS_TOKEN = "needs_token"  # gated or private, or the token was refused
    BAD_NAME = "bad_name"  # an invalid repo id or a file name that would leave the cache
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"  # interrupted; what arrived is kept and the next try resumes
    CORRUPT = "corrupt"  # the bytes do not match the Hub's sha256; they were deleted
    DISK_FULL = "disk_full"
    PERMISSION = "permission"  # the download folder is read-only or not the user's
    SERVER = "server"  # any other answer we cannot use


class HubError(Exception):
    def __init__(self, kind: HubErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def gated_sentence(what: str, exc: BaseException, repo_id: str = "") -> str:
    """A gated repo (FLUX.1-dev, for one) refused the download: without a token (HTTP 401) a
    token is missing; with one (403) its account has not accepted the licence yet."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    page = f"https://huggingface.co/{repo_id}" if repo_id else "its page on the Hub"
    if status == 403:
        return (
            f"{what}: your Hub token may not download this gated repo yet; "
            f"accept its licence on {page} with that account, then try again"
        )
    return f"{what}: this repo is gated; accept its licence on {page} and save a Hub token in the Library settings"


def translate_error(exc: BaseException, what: str) -> HubError:
    """Any exception from the client as a :class:`HubError` whose message starts with ``what``."""
    import httpx2
    from huggingface_hub import errors

    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return HubError(
            HubErrorKind.OFFLINE, f"{what}: offline (HF_HUB_OFFLINE is set), only downloaded files are available"
        )
    if isinstance(exc, errors.GatedRepoError):
        return HubError(HubErrorKind.NEEDS_TOKEN, gated_sentence(what, exc))
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(HubErrorKind.NOT_FOUND, f"{what}: no such revision on the Hub")
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return HubError(HubErrorKind.FILE_NOT_FOUND, f"{what}: no such file in the repo")
    if isinstance(exc, errors.RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else 404
        hint = " (or it is private: save a Hub token in the Library settings)" if status == 401 else ""
        return HubError(HubErrorKind.NOT_FOUND, f"{what}: no such repo on the Hub{hint}")
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            return HubError(
                HubErrorKind.NEEDS_TOKEN,
                f"{what}: the Hub refused access (HTTP {status}); check the Hub token in the Library settings",
            )
        return HubError(HubErrorKind.SERVER, f"{what}: the Hub answered HTTP {status}")
    if isinstance(exc, httpx2.TooManyRedirects):
        return HubError(HubErrorKind.SERVER, f"{what}: the Hub sent redirect after redirect (a loop); try again later")
    if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ProxyError)):
        return HubError(HubErrorKind.OFFLINE, f"{what}: cannot reach the Hub ({brief(exc)})")
    if isinstance(exc, httpx2.TransportError):
        return HubError(HubErrorKind.INCOMPLETE, f"{what}: the connection failed ({brief(exc)})")
    if isinstance(exc, errors.HFValidationError):
        return HubError(HubErrorKind.BAD_NAME, f"{what}: {exc}")
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return HubError(HubErrorKind.SERVER, f"{what}: the Hub sent an answer that cannot be read ({brief(exc)})")
    if isinstance(exc, OSError):
        saved = save_error(exc, Path(what))
        if saved is not None:  # writing into the download folder (refs, links) failed
            return write_failed(saved, what)
        return HubError(HubErrorKind.SERVER, f"{what}: {brief(exc)}")
    raise exc


def write_failed(exc: SaveError, what: str, folder: Path | None = None) -> HubError:
    """A full disk or a refused write during a download, in the words of every other save."""
    where = f" in {folder}" if folder is not None else ""
    if exc.kind is ErrorKind.DISK_FULL:
        return HubError(
            HubErrorKind.DISK_FULL,
            f"Disk full while saving {what}{where}: free {free_hint(exc.need_bytes)} and Download again to resume",
        )
    return HubError(
        HubErrorKind.PERMISSION,
        f"Cannot save {what}{where} ({exc.reason}): the folder is read-only "
        "or not yours; make it writable and Download again",
    )


def brief(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters (its type's name when empty)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
