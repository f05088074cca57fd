"""Search, inspect and download LoRA repos on the Hugging Face Hub, through ``huggingface_hub``.

No Qt, no torch: the GUI runs this on a thread pool, the CLI calls it directly.

Hub endpoints used (``{E}`` is the endpoint, ``HF_ENDPOINT`` or https://huggingface.co):

- ``GET {E}/api/models?filter=lora&filter=base_model:adapter:<id>&search=&sort=&limit=&expand=…``
  — search, one page at a time; the next page is the ``Link: rel="next"`` URL.
- ``GET {E}/api/models/{repo}[/revision/{rev}]?blobs=true`` — details (``HfApi.model_info``):
  card data, tags, the files with their sizes and LFS sha256.
- ``HEAD {E}/{repo}/resolve/{rev}/{file}`` — commit, ETag (the LFS sha256), size, and the
  CDN location (``get_hf_file_metadata``).
- ``GET`` of that location with ``Range`` — the bytes (see :mod:`app.core.hub_download`).
- ``GET {E}/api/whoami-v2`` — checking a token before it is stored (``huggingface_hub.login``).

Every failure is a :class:`HubError` with a :class:`HubErrorKind` and one sentence.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core import families
from app.core.families import Family
# The Hub's errors and their translation live in hub_errors; imported here, where callers look.
from app.core.hub_errors import HubError, HubErrorKind, _short, translate_error, write_failed  # noqa: F401

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None"], None]  # (bytes done, bytes in all or None)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
ADAPTER_SUFFIX = ".safetensors"
DESCRIPTION_LIMIT = 40_000  # characters of README shown; the rest is a link away
MAX_JSON_BYTES = 50_000_000  # a search page or a repo's metadata; real ones are well under 1 MB
SEARCH_EXPAND = ["author", "cardData", "downloads", "gated", "lastModified", "likes", "siblings", "tags",
                 "trendingScore"]


class HubSort(str, Enum):
    DOWNLOADS = "downloads"
    LIKES = "likes"
    TRENDING = "trending"
    UPDATED = "updated"


_SORT_PARAM = {HubSort.DOWNLOADS: "downloads", HubSort.LIKES: "likes", HubSort.TRENDING: "trendingScore",
               HubSort.UPDATED: "lastModified"}


# Base ids a LoRA repo names in ``base_model``; the first of each is used for the search filter.
FAMILY_BASES: dict[Family, tuple[str, ...]] = {f.id: f.hub_bases for f in families.FAMILIES}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def family_of_base(base_ids: list[str]) -> Family | None:
    """The family of a base model id; a fine-tune is guessed from its name (``…xl…`` is SDXL)."""
    for base in base_ids:
        if (family := families.by_hub_base(base)) is not None:
            return family
    for base in base_ids:
        if (family := families.guess_from_name(base.rsplit("/", 1)[-1])) is not None:
            return family
    return None


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(HubErrorKind.BAD_NAME, f"{repo_id!r} is not a Hub repo id (owner/name)") from None
    if "/" not in repo_id:
        raise HubError(HubErrorKind.BAD_NAME, f"{repo_id!r} is not a Hub repo id (owner/name)")


def is_safe_name(name: str) -> bool:
    """A repo file name that stays inside its folder: relative, no ``..``, no backslash or drive."""
    if not name or "\\" in name or "\0" in name or name.startswith("/") or len(name) > 1000:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts) and ":" not in parts[0]


def check_file_name(repo_id: str, name: str) -> None:
    if not is_safe_name(name):
        raise HubError(HubErrorKind.BAD_NAME,
                       f"{repo_id}: the file name {name!r} would be written outside the download folder; refused")


# ------------------------------------------------------------------ data


@dataclass
class HubFile:
    name: str
    size: int | None = None
    sha256: str | None = None  # the LFS oid, when the Hub listed it
    safe: bool = True  # False: a name that would escape the cache; shown, never downloaded

    @property
    def is_adapter(self) -> bool:
        return self.safe and self.name.lower().endswith(ADAPTER_SUFFIX)


@dataclass
class HubRepo:
    repo_id: str
    author: str = ""
    sha: str = ""  # the commit these details describe
    downloads: int = 0
    likes: int = 0
    last_modified: str = ""
    tags: list[str] = field(default_factory=list)
    base_models: list[str] = field(default_factory=list)
    family: Family | None = None
    trigger_words: list[str] = field(default_factory=list)
    license: str = ""
    gated: bool = False
    preview_files: list[str] = field(default_factory=list)  # repo paths of pictures, best first
    files: list[HubFile] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    description: str = ""  # the model card's text (Markdown), filled by details()

    @property
    def adapter_files(self) -> list[HubFile]:
        return [f for f in self.files if f.is_adapter]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id, "author": self.author, "sha": self.sha, "downloads": self.downloads,
            "likes": self.likes, "last_modified": self.last_modified, "base_models": self.base_models,
            "family": self.family.value if self.family else None, "trigger_words": self.trigger_words,
            "license": self.license, "gated": self.gated, "preview_files": self.preview_files,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256, "safe": f.safe} for f in self.files],
            "tags": self.tags,
        }


@dataclass
class SearchQuery:
    text: str = ""
    family: Family | None = None
    base_id: str = ""  # any base model id; wins over family
    sort: HubSort = HubSort.DOWNLOADS
    limit: int = 20  # repos per page

    def params(self) -> list[tuple[str, str]]:
        params = [("filter", "lora")]
        base = self.base_id.strip() or (FAMILY_BASES[self.family][0] if self.family else "")
        if base:
            params.append(("filter", f"base_model:adapter:{base}"))
        if self.text.strip():
            params.append(("search", self.text.strip()))
        params += [("sort", _SORT_PARAM[HubSort(self.sort)]), ("limit", str(max(1, min(self.limit, 100))))]
        params += [("expand", e) for e in SEARCH_EXPAND]
        return params


@dataclass
class SearchPage:
    repos: list[HubRepo]
    next_url: str | None  # pass to Hub.more() for the next page
    skipped: int = 0  # entries the server sent that we could not read


def _words(value: Any) -> list[str]:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    if not isinstance(value, str):
        return []
    return [w.strip() for w in value.split(",") if w.strip()]


def card_trigger_words(card: dict[str, Any]) -> list[str]:
    words: list[str] = []
    for key in ("instance_prompt", "trigger_words", "trigger_word", "trigger", "activation_text"):
        for w in _words(card.get(key)):
            if w not in words:
                words.append(w)
    return words


def repo_from_info(info: Any) -> HubRepo:
    """A :class:`HubRepo` from ``huggingface_hub``'s ``ModelInfo`` (search entry or details)."""
    check_repo_id(info.id)
    card: dict[str, Any] = {}
    if info.card_data is not None:
        card = info.card_data.to_dict() if hasattr(info.card_data, "to_dict") else dict(info.card_data)
    tags = [str(t) for t in (info.tags or [])]
    bases = [b for b in ([card["base_model"]] if isinstance(card.get("base_model"), str)
                         else card.get("base_model") or []) if isinstance(b, str)]
    for t in tags:
        if t.startswith("base_model:adapter:") and t[len("base_model:adapter:"):] not in bases:
            bases.append(t[len("base_model:adapter:"):])
    family = family_of_base(bases)
    if family is None:
        family = families.by_hub_tags(tags)
    files = []
    for s in info.siblings or []:
        lfs = getattr(s, "lfs", None)
        sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        files.append(HubFile(s.rfilename, s.size, sha, is_safe_name(s.rfilename)))
    previews: list[str] = []
    for w in card.get("widget") or []:
        url = (w.get("output") or {}).get("url") if isinstance(w, dict) and isinstance(w.get("output"), dict) else None
        if isinstance(url, str) and is_safe_name(url) and url.lower().endswith(IMAGE_SUFFIXES):
            previews.append(url)
    previews += [f.name for f in files if f.safe and f.name.lower().endswith(IMAGE_SUFFIXES) and f.name not in previews]
    license_ = card.get("license") or next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), "")
    return HubRepo(
        repo_id=info.id, author=info.author or info.id.split("/")[0], sha=info.sha or "",
        downloads=int(info.downloads or 0), likes=int(info.likes or 0),
        last_modified=info.last_modified.isoformat() if info.last_modified else "", tags=tags, base_models=bases,
        family=family, trigger_words=card_trigger_words(card), license=str(license_ or ""),
        gated=bool(info.gated), preview_files=previews, files=files, card=card,
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


# ------------------------------------------------------------------ client


class Hub:
    """One Hub endpoint, token and cache. Safe to use from several threads at once."""

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None,
                 cache_dir: str | Path | None = None, timeout: float = 10.0, deadline: float = 60.0) -> None:
        from huggingface_hub import constants

        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.token = token  # None: huggingface_hub's own token store (HF_TOKEN or `hf auth login`)
        self.cache_dir = Path(cache_dir or constants.HF_HUB_CACHE).expanduser().resolve()
        self.timeout = timeout  # the longest silence of the server
        self.deadline = deadline  # the longest a whole search or metadata answer may take

    @staticmethod
    def offline() -> bool:
        """True when HF_HUB_OFFLINE is set: no request is made, only the cache is used."""
        from huggingface_hub import constants

        return constants.is_offline_mode()

    def _headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        from app import __version__

        return build_hf_headers(token=self.token, library_name="loraloom", library_version=__version__)

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        from app import __version__

        return HfApi(endpoint=self.endpoint, token=self.token, library_name="loraloom", library_version=__version__)

    # -------------------------------------------------------- search

    def search(self, query: SearchQuery) -> SearchPage:
        """The first page of LoRA repos matching ``query``."""
        return self._page(f"{self.endpoint}/api/models", query.params(), "search")

    def more(self, next_url: str) -> SearchPage:
        """The page after one returned by :meth:`search` or :meth:`more`."""
        if _origin(next_url) != _origin(self.endpoint):
            raise HubError(HubErrorKind.SERVER, f"search: the next page points away from {self.endpoint}; refused")
        return self._page(next_url, None, "search")

    def _page(self, url: str, params: list[tuple[str, str]] | None, what: str) -> SearchPage:
        from huggingface_hub.hf_api import ModelInfo

        response, items = self._get_json(url, params, what)
        if not isinstance(items, list):
            raise HubError(HubErrorKind.SERVER, f"{what}: the Hub sent something other than a list of repos")
        repos, skipped = [], 0
        for item in items:
            try:
                if "siblings" not in item:
                    item["siblings"] = None
                repos.append(repo_from_info(ModelInfo(**item)))
            except (HubError, KeyError, TypeError, ValueError, AttributeError) as exc:
                skipped += 1
                log.warning("skipping a search result that cannot be read: %s", _short(exc))
        next_url = response.links.get("next", {}).get("url")
        if next_url and _origin(next_url) != _origin(self.endpoint):
            next_url = None
        return SearchPage(repos, next_url, skipped)

    def _get_json(self, url: str, params: Any, what: str) -> tuple[Any, Any]:
        """(response, decoded JSON) of a GET, within ``self.deadline`` in all and at most MAX_JSON_BYTES.

        The client's own timeout only bounds each silence, so a server trickling a byte a
        second would hold a search for ever; the body is read here against a deadline.
        """
        import json

        import httpx2
        from huggingface_hub.utils import get_session, hf_raise_for_status

        end = time.monotonic() + self.deadline
        try:
            with get_session().stream("GET", url, params=params, headers=self._headers(), timeout=self.timeout,
                                      follow_redirects=True) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JSON_BYTES:
                        raise HubError(HubErrorKind.SERVER, f"{what}: the Hub's answer is too large "
                                                            f"(over {MAX_JSON_BYTES // 1_000_000} MB); refused")
                    if time.monotonic() > end:
                        raise HubError(HubErrorKind.OFFLINE, f"{what}: the Hub is answering too slowly (no "
                                                             f"whole answer in {self.deadline:g} s); try again later")
            # A whole response again (the stream is spent) for the error messages of hf_raise_for_status.
            whole = httpx2.Response(response.status_code, headers=response.headers, content=bytes(body),
                                    request=response.request)
            hf_raise_for_status(whole)
            return whole, json.loads(body)
        except Exception as exc:  # noqa: BLE001 - translated, or re-raised when unknown
            raise translate_error(exc, what) from None

    # -------------------------------------------------------- details

    def details(self, repo_id: str, revision: str | None = None) -> HubRepo:
        """Card data, files with sizes and sha256, and the card's text."""
        from urllib.parse import quote

        from huggingface_hub.hf_api import ModelInfo

        check_repo_id(repo_id)
        url = f"{self.endpoint}/api/models/{repo_id}"  # as HfApi.model_info asks, but within the deadline
        if revision is not None:
            url += f"/revision/{quote(revision, safe='')}"
        _response, data = self._get_json(url, {"blobs": True}, repo_id)
        try:
            info = ModelInfo(**data)
        except Exception as exc:  # noqa: BLE001 - a dict of the wrong shape
            raise translate_error(exc if isinstance(exc, (KeyError, TypeError, ValueError)) else ValueError(exc),
                                  repo_id) from None
        repo = repo_from_info(info)
        if any(f.name == "README.md" for f in repo.files):
            try:
                text = self.fetch(repo_id, "README.md", revision=repo.sha or revision).read_text(
                    encoding="utf-8", errors="replace")
                repo.description = _card_text(text)
            except HubError as exc:
                log.info("no description for %s: %s", repo_id, exc)
        return repo

    # -------------------------------------------------------- files

    def download(self, repo_id: str, filename: str, *, revision: str | None = None,
                 expected_sha256: str | None = None, on_progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> Path:
        """Download one file into the HF cache, resumably, verified; returns its path in the cache.

        A file already in the cache is returned at once (after checking its hash). When the
        Hub cannot be reached, a cached copy is returned if there is one.
        """
        from app.core.hub_download import download_to_cache

        return download_to_cache(self, repo_id, filename, revision=revision or "main",
                                 expected_sha256=expected_sha256, on_progress=on_progress, cancel=cancel)

    def not_an_adapter(self, repo_id: str, filename: str, *, revision: str | None = None) -> str | None:
        """Why the Hub file is no LoRA adapter, read from its safetensors header alone (a ranged
        request of a few kB), so a full model is refused before gigabytes are fetched. None when it
        is one, or when the header cannot be read: the download's own checks then decide."""
        from app.core.adapters import not_an_adapter_reason

        if self.offline() or not filename.lower().endswith(ADAPTER_SUFFIX) or not is_safe_name(filename):
            return None
        if self.cached(repo_id, filename, revision) is not None:
            return None  # nothing to save: the download is a cache hit, checked after it
        try:
            meta = self._api().parse_safetensors_file_metadata(repo_id, filename, revision=revision,
                                                                timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure here leaves the decision to the download
            log.info("%s/%s: header not read before the download (%s)", repo_id, filename, exc)
            return None
        reason = not_an_adapter_reason(list(meta.tensors))
        return f"{repo_id}/{filename}: {reason}; nothing was downloaded" if reason else None

    def fetch(self, repo_id: str, filename: str, *, revision: str | None = None) -> Path:
        """A small file (card text, preview picture): same checks as :meth:`download`."""
        return self.download(repo_id, filename, revision=revision)

    def cached(self, repo_id: str, filename: str, revision: str | None = None) -> Path | None:
        """The cached copy of a file, without any network; None when it is not there."""
        from huggingface_hub import try_to_load_from_cache

        if not is_safe_name(filename):
            return None
        found = try_to_load_from_cache(repo_id, filename, cache_dir=self.cache_dir, revision=revision)
        return Path(found) if isinstance(found, str) and Path(found).is_file() else None

    # -------------------------------------------------------- token (huggingface_hub's own store)

    def whoami(self) -> str | None:
        """The Hub user name of the stored token, or None without one."""
        from huggingface_hub import get_token

        if self.token is False or (self.token is None and get_token() is None):
            return None
        try:
            return str(self._api().whoami()["name"])
        except Exception as exc:  # noqa: BLE001
            raise translate_error(exc, "Hub token") from None

    def save_token(self, token: str) -> str:
        """Check a token with the Hub and keep it in huggingface_hub's token store; returns the user name.

        The token is never logged nor written anywhere else.
        """
        from huggingface_hub import login

        token = token.strip()
        if not token:
            raise HubError(HubErrorKind.BAD_NAME, "Hub token: the field is empty")
        try:
            name = str(self._api().whoami(token=token)["name"])
            login(token=token, add_to_git_credential=False, skip_if_logged_in=False)
        except Exception as exc:  # noqa: BLE001
            err = translate_error(exc, "Hub token")
            if err.kind is HubErrorKind.NOT_FOUND:  # whoami answers 401 for a bad token
                err = HubError(HubErrorKind.NEEDS_TOKEN, "Hub token: the Hub refused this token")
            raise err from None
        return name

    @staticmethod
    def forget_token() -> None:
        """Remove the stored token(s) from huggingface_hub's store."""
        from huggingface_hub import get_token, logout

        if get_token() is not None:
            logout()


def _card_text(readme: str) -> str:
    """The body of a model card (the YAML header removed), cut to a readable length."""
    from huggingface_hub import ModelCard

    try:
        text = ModelCard(readme, ignore_metadata_errors=True).text
    except Exception:  # noqa: BLE001 - a broken card header only costs the description
        text = re.sub(r"\A---\n.*?\n---\n", "", readme, flags=re.S)
    text = text.strip()
    return text if len(text) <= DESCRIPTION_LIMIT else text[:DESCRIPTION_LIMIT] + "\n\n…"
