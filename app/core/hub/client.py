"""Search, inspect and download LoRA repos on the Hugging Face Hub, through ``huggingface_hub``.

No Qt, no torch: the GUI runs this on a thread pool, the CLI calls it directly.

Hub endpoints used (``{E}`` is the endpoint, ``HF_ENDPOINT`` or https://huggingface.co):

- ``GET {E}/api/models?filter=lora&filter=base_model:adapter:<id>&search=&sort=&limit=&expand=…``
  — search, one page at a time; the next page is the ``Link: rel="next"`` URL.
- ``GET {E}/api/models/{repo}[/revision/{rev}]?blobs=true`` — details (``HfApi.model_info``):
  card data, tags, the files with their sizes and LFS sha256.
- ``HEAD {E}/{repo}/resolve/{rev}/{file}`` — commit, ETag (the LFS sha256), size, and the
  CDN location (``get_hf_file_metadata``).
- ``GET`` of that location with ``Range`` — the bytes (see :mod:`app.core.hub.download`).
- ``GET {E}/api/whoami-v2`` — checking a token before it is stored (``huggingface_hub.login``).

Every failure is a :class:`HubError` with a :class:`HubErrorKind` and one sentence.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from app.core.hub.download import ProgressFn, download_to_cache
from app.core.hub.errors import HubError, HubErrorKind, brief, translate_error
from app.core.hub.models import (
    ADAPTER_SUFFIX,
    HubRepo,
    SearchPage,
    SearchQuery,
    check_repo_id,
    is_safe_name,
    origin,
    repo_from_info,
)

log = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 40_000  # characters of README shown; the rest is a link away
MAX_JSON_BYTES = 50_000_000  # a search page or a repo's metadata; real ones are well under 1 MB


# ------------------------------------------------------------------ client


class Hub:
    """One Hub endpoint, token and cache. Safe to use from several threads at once."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        timeout: float = 10.0,
        deadline: float = 60.0,
    ) -> None:
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

    def headers(self) -> dict[str, str]:
        """The headers of every request (user agent, the token when there is one)."""
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
        if origin(next_url) != origin(self.endpoint):
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
                log.warning("skipping a search result that cannot be read: %s", brief(exc))
        next_url = response.links.get("next", {}).get("url")
        if next_url and origin(next_url) != origin(self.endpoint):
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
            with get_session().stream(
                "GET", url, params=params, headers=self.headers(), timeout=self.timeout, follow_redirects=True
            ) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JSON_BYTES:
                        raise HubError(
                            HubErrorKind.SERVER,
                            f"{what}: the Hub's answer is too large (over {MAX_JSON_BYTES // 1_000_000} MB); refused",
                        )
                    if time.monotonic() > end:
                        raise HubError(
                            HubErrorKind.OFFLINE,
                            f"{what}: the Hub is answering too slowly (no "
                            f"whole answer in {self.deadline:g} s); try again later",
                        )
            # A whole response again (the stream is spent) for the error messages of hf_raise_for_status.
            whole = httpx2.Response(
                response.status_code, headers=response.headers, content=bytes(body), request=response.request
            )
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
            raise translate_error(
                exc if isinstance(exc, (KeyError, TypeError, ValueError)) else ValueError(exc), repo_id
            ) from None
        repo = repo_from_info(info)
        if any(f.name == "README.md" for f in repo.files):
            try:
                text = self.fetch(repo_id, "README.md", revision=repo.sha or revision).read_text(
                    encoding="utf-8", errors="replace"
                )
                repo.description = _card_text(text)
            except HubError as exc:
                log.info("no description for %s: %s", repo_id, exc)
        return repo

    # -------------------------------------------------------- files

    def download(
        self,
        repo_id: str,
        filename: str,
        *,
        revision: str | None = None,
        expected_sha256: str | None = None,
        on_progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Download one file into the HF cache, resumably, verified; returns its path in the cache.

        A file already in the cache is returned at once (after checking its hash). When the
        Hub cannot be reached, a cached copy is returned if there is one.
        """
        return download_to_cache(
            self,
            repo_id,
            filename,
            revision=revision or "main",
            expected_sha256=expected_sha256,
            on_progress=on_progress,
            cancel=cancel,
        )

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
            meta = self._api().parse_safetensors_file_metadata(
                repo_id, filename, revision=revision, timeout=self.timeout
            )
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
