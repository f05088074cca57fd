"""An adapter file's trigger words and preview picture: kohya/modelspec metadata, A1111 and
Civitai sidecar files beside it, a Hub model card. Read by ``app.core.adapters.inspect_adapter``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import re
from pathlib import Path
from typing import Any

from app.core.safe_files import check_regular, read_regular

MAX_SIDECAR_BYTES = 1 << 20  # an A1111 <stem>.json holds a few fields
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".jpeg", ".webp")


def tag_frequency(meta: dict[str, str]) -> collections.Counter:
    """Tag -> count summed over the datasets of ``ss_tag_frequency``; raises ValueError when it
    is not ``{dataset: {tag: count}}`` with finite non-negative counts (``json`` accepts NaN and
    Infinity, and ``int(inf)`` would crash the caller)."""
    text = meta.get("ss_tag_frequency")
    if not text:
        return collections.Counter()

    def reject(name: str) -> Any:
        raise ValueError(f"{name} is not a count")

    try:
        freq = json.loads(text, parse_constant=reject)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(freq, dict) or not all(isinstance(tags, dict) for tags in freq.values()):
        raise ValueError("not a {dataset: {tag: count}} object")
    counts: collections.Counter = collections.Counter()
    for tags in freq.values():
        for tag, n in tags.items():
            if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 <= n < 2**63:
                raise ValueError(f"the count of tag {tag[:60]!r} is not a whole number")
            counts[tag.strip()] += int(n)
    return counts


def _sidecar_words(path: Path, root: str | Path | None) -> str:
    """``activation text`` of an A1111 ``<stem>.json`` beside the file (a broken one gives nothing)."""
    sidecar = path.with_suffix(".json")
    try:
        data = json.loads(read_regular(sidecar, max_bytes=MAX_SIDECAR_BYTES, root=root).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return ""  # missing, refused or broken: only no words from it
    return str(data.get("activation text", "")) if isinstance(data, dict) else ""


def trigger_words(
    path: Path,
    meta: dict[str, str],
    card_data: dict[str, Any] | None,
    top_tags: int,
    tags: collections.Counter,
    root: str | Path | None,
) -> list[str]:
    words: list[str] = []

    def add(text: str | None) -> None:
        for w in (t.strip() for t in (text or "").split(",")):
            if w and w not in words:
                words.append(w)

    add(meta.get("modelspec.trigger_phrase"))
    add(_sidecar_words(path, root))
    if card_data:
        for key in ("instance_prompt", "trigger_words", "trigger_word", "activation_text"):
            value = card_data.get(key)
            add(", ".join(map(str, value)) if isinstance(value, list) else value)
    if not words:
        for tag, _ in tags.most_common(top_tags):
            add(tag)
    return words


def find_preview(path: Path, root: str | Path | None = None) -> Path | None:
    """A1111 / Civitai sidecars: ``<stem>.preview.png`` first, then ``<stem>.png`` and friends
    (regular files inside ``root`` only: the GUI opens what this returns)."""
    stem = path.with_suffix("")
    for suffix in PREVIEW_SUFFIXES:
        candidate = Path(str(stem) + suffix)
        try:
            check_regular(candidate, root)
        except OSError:
            continue
        return candidate
    return None


_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,(.+)$", re.S)


def embedded_preview(meta: dict[str, str]) -> bytes | None:
    match = _DATA_URI.match(meta.get("modelspec.thumbnail", "").strip())
    if not match:
        return None
    try:
        return base64.b64decode(match.group(1), validate=False)
    except (binascii.Error, ValueError):
        return None
