"""Which training presets suit a base model: the presets of its family first, named so
(``sd15-…``, ``sdxl-…``, ``flux-dev-…``) that :func:`app.core.families.guess_from_name` tells."""

from __future__ import annotations

import json
from pathlib import Path

from app.core import families, model_choice
from app.core.families import Family
from app.core.train_config import preset_names

_INDEX_LIMIT = 1 << 20  # a model_index.json is a few hundred bytes; never read a huge file


def base_family(base: str) -> Family | None:
    """The family of a base model as the Train tab sees it without loading it: a diffusers
    folder's ``model_index.json`` pipeline class, else what its name says; None when unknown."""
    if not base.strip():
        return None
    if model_choice.has_companions(base):  # a Flux.1 transformer file with its companion files
        return Family(model_choice.FAMILY)
    path = Path(base).expanduser()
    index = path / "model_index.json"
    try:
        if index.is_file() and index.stat().st_size < _INDEX_LIMIT:
            found = families.by_pipeline_class(str(json.loads(index.read_text(encoding="utf-8")).get("_class_name")))
            if found:
                return found[0]
    except (OSError, ValueError, AttributeError, RecursionError):
        pass  # unreadable or not JSON: the name may still tell
    return families.guess_from_name(path.name if path.name else base)


def presets_for(family: Family | None) -> list[str]:
    """The presets of ``family`` (all of them when it is unknown or has none)."""
    names = preset_names()
    if family is None:
        return names
    own = [n for n in names if families.guess_from_name(n) is family]
    return own or names
