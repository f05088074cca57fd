"""What the Hub sends, as data: repos, files, search queries and pages; and the checks on
repo ids and file names that keep every download inside its folder. No network here (see
:mod:`app.core.hub.client`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from app.core import families
from app.core.families import Family
from app.core.hub.errors import HubError, HubErrorKind

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
ADAPTER_SUFFIX = ".safetensors"
SEARCH_EXPAND = [
    "author",
    "cardData",
    "downloads",
    "gated",
    "lastModified",
    "likes",
    "siblings",
    "tags",
    "trendingScore",
]


class HubSort(str, Enum):
    DOWNLOADS = "downloads"
    LIKES = "likes"
    TRENDING = "trending"
    UPDATED = "updated"


_SORT_PARAM = {
    HubSort.DOWNLOADS: "downloads",
    HubSort.LIKES: "likes",
    HubSort.TRENDING: "trendingScore",
    HubSort.UPDATED: "lastModified",
}


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
        raise HubError(
            HubErrorKind.BAD_NAME,
            f"{repo_id}: the file name {name!r} would be written outside the download folder; refused",
        )


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
            "repo_id": self.repo_id,
            "author": self.author,
            "sha": self.sha,
            "downloads": self.downloads,
            "likes": self.likes,
            "last_modified": self.last_modified,
            "base_models": self.base_models,
            "family": self.family.value if self.family else None,
            "trigger_words": self.trigger_words,
            "license": self.license,
            "gated": self.gated,
            "preview_files": self.preview_files,
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
    bases = [
        b
        for b in ([card["base_model"]] if isinstance(card.get("base_model"), str) else card.get("base_model") or [])
        if isinstance(b, str)
    ]
    for t in tags:
        if t.startswith("base_model:adapter:") and t[len("base_model:adapter:") :] not in bases:
            bases.append(t[len("base_model:adapter:") :])
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
        repo_id=info.id,
        author=info.author or info.id.split("/")[0],
        sha=info.sha or "",
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        last_modified=info.last_modified.isoformat() if info.last_modified else "",
        tags=tags,
        base_models=bases,
        family=family,
        trigger_words=card_trigger_words(card),
        license=str(license_ or ""),
        gated=bool(info.gated),
        preview_files=previews,
        files=files,
        card=card,
    )


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL: a next page or a file's location must stay on the Hub's own."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port
