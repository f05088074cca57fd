"""Restore Generate settings from a PNG's A1111 ``parameters`` text, adapters included.

Reading the text chunk uses Qt (no PIL in the GUI path). Both it and finding the
adapters named in ``<lora:name:weight>`` tags (the Library is scanned) are disk work,
meant for a thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtGui import QImage

from app.core.adapters import AdapterError, inspect_adapter
from app.core.configs import Scheduler
from app.core.pngmeta import PARAMETERS_KEY, parse_parameters


def read_parameters(path: str | Path) -> dict[str, Any] | None:
    """The parsed ``parameters`` chunk of a PNG, or None when it has none."""
    # QImageReader.text() folds newlines into spaces; QImage keeps the text as written.
    text = QImage(str(path)).text(PARAMETERS_KEY)
    if not text:
        return None
    return parse_parameters(text)


def form_values(params: dict[str, Any]) -> dict[str, Any]:
    """The settings a Generate form can take from parsed parameters (unknown samplers left out)."""
    out: dict[str, Any] = {}
    for key in ("prompt", "negative", "steps", "guidance", "seed", "width", "height"):
        if key in params:
            out[key] = params[key]
    if params.get("scheduler") in {s.value for s in Scheduler}:
        out["scheduler"] = params["scheduler"]
    return out


@dataclass
class FoundAdapters:
    entries: list[dict[str, Any]] = field(default_factory=list)  # AdapterEntry dicts, in tag order
    trigger_words: list[str] = field(default_factory=list)  # of the found ones (to take out of the prompt)
    missing: list[str] = field(default_factory=list)  # names no known file matches


def candidate_files(extra: list[str | Path]) -> list[Path]:
    """Adapter files we know of: ``extra`` (the stack, siblings of the PNG) and the Library."""
    from app.core.library import Library

    files: dict[str, Path] = {}
    for item in extra:
        p = Path(item)
        folder = p if p.is_dir() else p.parent
        if folder.is_dir():
            for f in folder.glob("*.safetensors"):
                files.setdefault(str(f), f)
    try:
        for entry in Library().refresh().entries:
            if entry.usable:
                files.setdefault(entry.path, Path(entry.path))
    except OSError:
        pass  # an unreadable library folder only means fewer candidates
    return list(files.values())


def find_adapters(tags: list[dict[str, Any]], extra: list[str | Path]) -> FoundAdapters:
    """Match ``<lora:name:…>`` tags to files by stem or title (disk work: run off the GUI thread)."""
    found = FoundAdapters()
    if not tags:
        return found
    candidates = candidate_files(extra)
    by_stem = {f.stem.lower(): f for f in candidates}
    titles: dict[str, Path] | None = None
    for tag in tags:
        name = str(tag.get("name", "")).strip()
        path = by_stem.get(name.lower())
        info = None
        if path is None:
            if titles is None:
                titles = {}
                for f in candidates:
                    try:
                        titles.setdefault(inspect_adapter(f).title.lower(), f)
                    except AdapterError:
                        continue
            path = titles.get(name.lower())
        if path is None:
            found.missing.append(name)
            continue
        try:
            info = inspect_adapter(path)
        except AdapterError:
            found.missing.append(name)
            continue
        entry: dict[str, Any] = {"path": str(path), "weight": float(tag.get("weight", 1.0)), "enabled": True}
        if tag.get("te_weight") is not None:
            entry["te_weight"] = float(tag["te_weight"])
        for key in ("lbw", "start", "stop"):  # the LoRA Block Weight extension's, as A1111 wrote them
            if key in tag:
                entry[key] = tag[key]
        found.entries.append(entry)
        found.trigger_words.extend(w for w in info.trigger_words if w not in found.trigger_words)
    return found
