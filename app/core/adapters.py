"""Inspect an adapter ``.safetensors`` file from its header, without torch.

Tells the layout (kohya / diffusers / peft / LyCORIS), the network type, the base
family, rank and alpha, which parts it touches, trigger words and a preview picture.
Used by the Library (cards), the Generate tab (trigger-word chips, base mismatch marks)
and ``loraloom inspect``. Reads the JSON header only; the one exception is an ``alpha``
scalar (4 bytes) when the metadata does not carry it. Pickle files are refused, never
unpickled.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core import families
from app.core.adapter_keys import (
    DOWN_SUFFIXES,
    AdapterLayout,
    NetworkType,
    Part,
    layout_and_parts,
    module_of,
    network_type,
    not_an_adapter_reason,
    ranks_of,
)
from app.core.families import Family
from app.core.safe_files import check_regular, open_regular, read_regular
from app.core.safetensors_header import SafetensorsError, SafetensorsHeader, read_header

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_SIDECAR_BYTES = 1 << 20  # an A1111 <stem>.json holds a few fields
# What kohya writes for a setting it did not have (e.g. ss_network_dim of a LyCORIS run).
_UNSET = ("", "None", "null")
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".jpeg", ".webp")


class AdapterError(ValueError):
    """Not a usable adapter file; the message names the file and the reason."""


@dataclass
class AdapterInfo:
    path: Path
    layout: AdapterLayout
    network: NetworkType
    family: Family | None  # None: cannot tell (e.g. an unusual or tiny model)
    rank: int | None  # the most common rank
    alpha: float | None
    parts: list[Part]
    modules: int  # number of layers it changes
    trigger_words: list[str]
    preview: Path | None
    preview_bytes: bytes | None = field(default=None, repr=False)  # embedded cover image
    title: str = ""
    metadata: dict[str, str] = field(default_factory=dict, repr=False)
    family_evidence: str = ""  # why ``family`` is what it is (the load report shows it)

    def family_mismatch(self, base: Family | None) -> str | None:
        """The sentence refusing this adapter on a base model of another family, told from the
        header before anything loads; None when it fits or either family is unknown."""
        if families.fits(self.family, base):
            return None
        made_for = families.label(self.family)
        return (
            f"{self.path}: made for {made_for}, but the base model is {families.label(base)}; "
            f"pick a {made_for} base model for it"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "title": self.title,
            "layout": self.layout.value,
            "network": self.network.value,
            "family": self.family.value if self.family else None,
            "rank": self.rank,
            "alpha": self.alpha,
            "parts": [p.value for p in self.parts],
            "modules": self.modules,
            "trigger_words": self.trigger_words,
            "preview": str(self.preview) if self.preview else None,
            "embedded_preview": self.preview_bytes is not None,
        }


# Original (LDM/SGM) UNet names: which block and which transformer inside an attention.
_LDM_ATTENTION = re.compile(r"lora_unet_(input|middle|output)_blocks?_(\d+_)?1_transformer_blocks_(\d+)_")


def _family(
    names: list[str], shapes: dict[str, list[int]], meta: dict[str, str], parts: set[Part]
) -> tuple[Family | None, str]:
    """The base family and the evidence for it: the metadata, else the tensor widths, else
    the block structure. Original UNet names (``input_blocks_…``) alone say nothing: SD 1.x/2.x
    files use them too."""
    version = meta.get("ss_base_model_version")
    if (fam := families.by_base_version(version)) is not None:
        return fam, f"metadata ss_base_model_version = {version}"
    arch = meta.get("modelspec.architecture", "")
    if (fam := families.by_architecture(arch)) is not None:
        return fam, f"metadata modelspec.architecture = {arch}"
    if (marked := families.by_adapter_names(names)) is not None:
        return marked[0], f"its layer names are {families.label(marked[0])}'s ({marked[1]}){_alike(marked[0])}"
    if Part.TRANSFORMER in parts and (fam := families.with_transformer_denoiser()) is not None:
        return fam, f"it changes a transformer denoiser's layers (taken as {families.label(fam)}'s){_alike(fam)}"
    if Part.TEXT_ENCODER_2 in parts and (fam := families.with_second_text_encoder()) is not None:
        return fam, "it changes a second text encoder"
    if any(n.startswith("lora_unet_label_emb") for n in names) and (fam := families.with_size_conditioning()):
        return fam, f"it changes label_emb ({families.label(fam)}'s size conditioning)"
    if meta.get("ss_v2") == "True" and (fam := families.with_ss_v2()) is not None:
        return fam, "metadata ss_v2 = True"
    for n in names:
        if not n.endswith(DOWN_SUFFIXES):
            continue
        shape = shapes.get(n, [])
        if len(shape) < 2:
            continue
        low = n.lower()
        if ("attn2" in low and ("to_k" in low or "to_v" in low)) and (fam := families.by_cross_width(shape[1])):
            return fam, f"cross-attention reads {shape[1]}-wide text features ({n})"
        if (
            low.startswith(("lora_te_", "text_encoder."))
            and "self_attn" in low
            and (fam := families.by_text_width(shape[1]))
        ):
            return fam, f"text-encoder layers are {shape[1]} wide ({n})"
    return _family_from_blocks(names)


def _alike(family: Family) -> str:
    """The evidence's note on the families whose files look like ``family``'s without metadata."""
    alike = [f.label for f in families.FAMILIES if f.looks_like is family]
    return f"; a {' or '.join(alike)} file without metadata has the same names" if alike else ""


def _family_from_blocks(names: list[str]) -> tuple[Family | None, str]:
    """SDXL stacks several transformers in most attentions, SD 1.x/2.x one each; anything
    else (SD 1.x vs 2.x differ only in widths) cannot be told from the names."""
    for n in names:
        m = _LDM_ATTENTION.match(n)
        if m and int(m.group(3)) > 0 and (fam := families.with_stacked_transformers()) is not None:
            return fam, f"several transformer blocks in one attention ({n})"
    return None, "no metadata, and neither the widths nor the block structure tell"


# ------------------------------------------------------------------ trigger words and previews


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


def _trigger_words(
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


def _embedded_preview(meta: dict[str, str]) -> bytes | None:
    match = _DATA_URI.match(meta.get("modelspec.thumbnail", "").strip())
    if not match:
        return None
    try:
        return base64.b64decode(match.group(1), validate=False)
    except (binascii.Error, ValueError):
        return None


# ------------------------------------------------------------------ entry point


def _number(meta: dict[str, str], key: str, path: Path) -> float | None:
    """A numeric metadata field: None when absent or unset; :class:`AdapterError` when it is not a finite number."""
    text = meta.get(key, "").strip()
    if text in _UNSET:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AdapterError(f"{path}: its metadata {key} is {text[:40]!r}, not a finite number; the file is damaged")
    return value


def _alpha(header: SafetensorsHeader, names: list[str], root: str | Path | None) -> float | None:
    value = _number(header.metadata, "ss_network_alpha", header.path)
    if value is not None:
        return value
    key = next((n for n in names if n.endswith(".alpha")), None)
    if key is None:
        return None
    info = header.tensors[key]
    start, end = info["data_offsets"]
    fmt = {"F32": "<f", "F16": "<e", "F64": "<d", "BF16": None, "I64": "<q", "I32": "<i"}.get(info["dtype"])
    if end - start > 8 or fmt is None:
        return None
    try:
        with open_regular(header.path, root=root) as fh:
            fh.seek(header.data_start + start)
            raw = fh.read(end - start)
        value = float(struct.unpack(fmt, raw)[0])
    except (OSError, struct.error):
        return None
    if not math.isfinite(value):
        raise AdapterError(f"{header.path}: its {key} is {value}, not a finite number; the file is damaged")
    return value


def _rank(path: Path, names: list[str], shapes: dict[str, list[int]], meta: dict[str, str]) -> int | None:
    ranks = ranks_of(names, shapes)
    dim = _number(meta, "ss_network_dim", path)
    if dim is not None and (dim < 0 or dim != int(dim)):
        raise AdapterError(
            f"{path}: its metadata ss_network_dim is {meta['ss_network_dim'][:40]!r}, "
            "not a whole number; the file is damaged"
        )
    if 0 in ranks or (not ranks and dim == 0):
        raise AdapterError(f"{path}: a rank-0 adapter (its layers have no rank, so it changes nothing)")
    if ranks:
        return ranks.most_common(1)[0][0]
    return int(dim) if dim is not None else None


def inspect_adapter(
    path: str | Path, *, card_data: dict[str, Any] | None = None, top_tags: int = 3, root: str | Path | None = None
) -> AdapterInfo:
    """Describe an adapter file. Raises :class:`AdapterError` with a sentence naming the file, and
    nothing else, whatever the file holds. Only a regular file (inside ``root`` when given) is read."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise AdapterError(
            f"{p}: pickle files ({p.suffix}) can run code when opened and are refused; "
            "use a .safetensors version of this adapter"
        )
    try:
        header = read_header(p, root=root)
    except SafetensorsError as exc:
        raise AdapterError(str(exc)) from None
    names = sorted(header.tensors)
    shapes = {n: list(info["shape"]) for n, info in header.tensors.items()}
    layout, parts = layout_and_parts(names)
    if layout is None:
        raise AdapterError(f"{p}: {not_an_adapter_reason(names)}")
    meta = header.metadata
    try:
        tags = tag_frequency(meta)
    except ValueError as exc:
        raise AdapterError(f"{p}: its metadata ss_tag_frequency is malformed ({exc}); the file is damaged") from None
    network = network_type(names, shapes)
    if layout is AdapterLayout.LYCORIS or network not in (NetworkType.LORA, NetworkType.LOCON, NetworkType.DORA):
        layout = AdapterLayout.LYCORIS if layout is AdapterLayout.KOHYA else layout
    rank = _rank(p, names, shapes, meta)
    modules = {module_of(n) for n in names}
    order = [Part.UNET, Part.TRANSFORMER, Part.TEXT_ENCODER, Part.TEXT_ENCODER_2]
    family, evidence = _family(names, shapes, meta, parts)
    return AdapterInfo(
        path=p,
        layout=layout,
        network=network,
        family=family,
        rank=rank,
        alpha=_alpha(header, names, root),
        parts=[x for x in order if x in parts],
        modules=len(modules),
        trigger_words=_trigger_words(p, meta, card_data, top_tags, tags, root),
        preview=find_preview(p, root),
        preview_bytes=_embedded_preview(meta),
        title=meta.get("modelspec.title") or meta.get("ss_output_name") or p.stem,
        metadata=dict(meta),
        family_evidence=evidence,
    )
