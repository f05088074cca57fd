"""Base-model families as data: one table, one frozen entry per family.

Everything the app decides by family without torch reads this table: the kohya and
modelspec metadata written into and read from adapter files, how a family is told from
tensor widths or a pipeline class, the Hub's base-model ids, the labels, colours and
sizes the GUI shows. What needs torch (pipeline classes, prompt encoding, the tiny test
models) lives in ``app/engine/families/<id>.py``. Adding a family = one entry here + one
engine file + its tiny model + tests (CONTRIBUTING.md, "Add a base-model family").

The ``Family`` values are on disk (TOML configs, library JSON, tiny-model info files):
never change them.
"""

from __future__ import annotations

import re

from app.core.family_spec import BlockLayout, Distilled, Family, FamilySpec
from app.core.family_table import FAMILIES

__all__ = ["FAMILIES", "FALLBACK", "BlockLayout", "Distilled", "Family", "FamilySpec"]

_BY_ID = {f.id: f for f in FAMILIES}
# Assumed when nothing tells: a ``.ckpt`` cannot be inspected without unpickling (diffusers
# detects it itself), and an SD pipeline with other widths (tiny test models) is SD 1.x-shaped.
FALLBACK = Family.SD1


# ---------------------------------------------------------------- lookups (None: no family says so)


def spec(family: Family | str) -> FamilySpec:
    """The entry of a family (``Family`` or its value); ValueError for an unknown value."""
    return _BY_ID[Family(family)]


def label(family: Family | str | None) -> str:
    """ "SD 1.x" for a known family; an unknown value as it is."""
    if family is None:
        return ""
    try:
        return spec(family).label
    except ValueError:
        return str(family)


def supported_labels() -> str:
    """ "SD 1.x, SD 2.x and SDXL": the families, for messages."""
    labels = [f.label for f in FAMILIES]
    return ", ".join(labels[:-1]) + f" and {labels[-1]}" if len(labels) > 1 else labels[0]


def _first(matches) -> Family | None:
    return next((f.id for f in FAMILIES if matches(f)), None)


def by_base_version(value: str | None) -> Family | None:
    """kohya ``ss_base_model_version`` -> family."""
    return _first(lambda f: value in f.base_versions_read)


def by_architecture(arch: str) -> Family | None:
    """modelspec ``architecture`` (e.g. ``stable-diffusion-v2-768-v/lora``) -> family."""
    return _first(lambda f: arch.startswith(f.architecture_prefix)) if arch else None


def by_cross_width(width: int, among: tuple[Family, ...] | None = None) -> Family | None:
    """The family whose cross-attention reads ``width``-wide text features."""
    return _first(lambda f: f.cross_width == width and (among is None or f.id in among))


def by_text_width(width: int, among: tuple[Family, ...] | None = None) -> Family | None:
    """The single-text-encoder family whose encoder is ``width`` wide. Two-encoder families
    are left out: SDXL's first encoder is as wide as SD 1.x's, so the width tells nothing."""
    return _first(lambda f: len(f.text_widths) == 1 and f.text_widths[0] == width and (among is None or f.id in among))


def by_pipeline_class(name: str) -> tuple[Family, ...]:
    """Families a diffusers pipeline class serves (several: SD 1.x and 2.x share one)."""
    return tuple(f.id for f in FAMILIES if name in f.pipeline_classes)


def by_variant(variant: str) -> Family:
    """Family of a bundled config variant (``sd21-base`` -> sd2)."""
    found = _first(lambda f: variant in f.variants)
    if found is None:
        raise ValueError(f"unknown model variant {variant!r}")
    return found


def all_variants() -> tuple[str, ...]:
    return tuple(v for f in FAMILIES for v in f.variants)


def with_second_text_encoder() -> Family | None:
    return _first(lambda f: len(f.te_prefixes) > 1)


def with_size_conditioning() -> Family | None:
    return _first(lambda f: f.size_conditioning)


def with_ss_v2() -> Family | None:
    return _first(lambda f: f.ss_v2)


def with_stacked_transformers() -> Family | None:
    return _first(lambda f: f.stacked_transformers)


def with_transformer_denoiser() -> Family | None:
    return _first(lambda f: f.transformer_denoiser)


def by_adapter_names(names: list[str]) -> tuple[Family, str] | None:
    """The family whose ``adapter_markers`` one of ``names`` matches, newest family first, with
    that name; None when no marker matches."""
    for f in reversed(FAMILIES):
        for marker in f.adapter_markers:
            pattern = re.compile(marker)
            if (hit := next((n for n in names if pattern.search(n)), None)) is not None:
                return f.id, hit
    return None


def fits(adapter: Family | str | None, base: Family | str | None) -> bool:
    """Whether an adapter of family ``adapter`` may go on a base model of family ``base``: the
    same family, either unknown, or a base whose files look like the adapter's family's
    (``looks_like``: a Flux.1-named file on Chroma may be a Chroma file without metadata)."""
    if not adapter or not base or Family(adapter) is Family(base):
        return True
    return spec(base).looks_like is Family(adapter)


def denoiser_roots(which: str) -> tuple[str, ...]:
    """Every family's ``original_roots`` or ``diffusers_roots`` (``which``), without repeats."""
    return tuple(dict.fromkeys(r for f in FAMILIES for r in getattr(f, f"{which}_roots")))


_BY_HUB_BASE = {base.lower(): f.id for f in FAMILIES for base in f.hub_bases}


def by_hub_base(base_id: str) -> Family | None:
    """A Hub base-model id (any case) -> family."""
    return _BY_HUB_BASE.get(base_id.lower())


def guess_from_name(name: str) -> Family | None:
    """A fine-tune's family guessed from its repo name. Newest families first: their names
    often carry an older family's marker too (``…-xl-v1-5``)."""
    low = name.lower()
    return next((f.id for f in reversed(FAMILIES) if re.search(f.hub_name_pattern, low)), None)


def by_hub_tags(tags: list[str]) -> Family | None:
    return _first(lambda f: any(t in f.hub_tags for t in tags))
