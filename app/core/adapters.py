"""Inspect an adapter ``.safetensors`` file from its header, without torch.

Tells the layout (kohya / diffusers / peft / LyCORIS), the network type, the base
family, rank and alpha, which parts it touches, trigger words and a preview picture.
Used by the Library (cards), the Generate tab (trigger-word chips, base mismatch marks)
and ``loraloom inspect``. Reads the JSON header only; the one exception is an ``alpha``
scalar (4 bytes) when the metadata does not carry it. Pickle files are refused, never
unpickled.
"""

from __future__ import annotations

import collections
import math
import re
import struct
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from app.core import families
from app.core.adapter_words import embedded_preview, find_preview, tag_frequency, trigger_words
from app.core.families import Family
from app.core.safe_files import open_regular
from app.core.safetensors_header import SafetensorsError, SafetensorsHeader, read_header

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# What kohya writes for a setting it did not have (e.g. ss_network_dim of a LyCORIS run).
_UNSET = ("", "None", "null")


class AdapterError(ValueError):
    """Not a usable adapter file; the message names the file and the reason."""


class AdapterLayout(str, Enum):
    KOHYA = "kohya"
    DIFFUSERS = "diffusers"
    PEFT = "peft"
    LYCORIS = "lycoris"
    COMFY = "comfy"  # ComfyUI's own names: diffusion_model.<original UNet path>, text_encoders.clip_l.…
    XLABS = "xlabs"  # XLabs' Flux LoRAs: double_blocks.N.processor.qkv_lora1.down.weight
    ONETRAINER = "onetrainer"  # OneTrainer's Flux LoRAs: lora_transformer_…


class NetworkType(str, Enum):
    LORA = "lora"
    LOCON = "locon"
    LOHA = "loha"
    LOKR = "lokr"
    DORA = "dora"
    IA3 = "ia3"
    GLORA = "glora"
    OFT = "oft"
    BOFT = "boft"
    FULL = "full"


class Part(str, Enum):
    UNET = "unet"
    TEXT_ENCODER = "text_encoder"
    TEXT_ENCODER_2 = "text_encoder_2"
    TRANSFORMER = "transformer"  # the denoiser of Flux-class models (``pipe.transformer``)

    @property
    def denoiser(self) -> bool:
        """The part that predicts the noise (UNet or transformer), not a text encoder."""
        return self in (Part.UNET, Part.TRANSFORMER)


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
        if base is None or self.family is None or self.family is base:
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


# ------------------------------------------------------------------ key patterns

# "lycoris_": SimpleTuner's LyCORIS files (UNet only).
_KOHYA_PREFIXES = {
    "lora_unet_": Part.UNET,
    "lora_te_": Part.TEXT_ENCODER,
    "lora_te1_": Part.TEXT_ENCODER,
    "lora_te2_": Part.TEXT_ENCODER_2,
    "lora_te3_": Part.TEXT_ENCODER_2,  # Flux's T5 (its pipeline's text_encoder_2)
    "lycoris_": Part.UNET,
}
_DIFFUSERS_PREFIXES = {
    "unet.": Part.UNET,
    "transformer.": Part.TRANSFORMER,
    "text_encoder.": Part.TEXT_ENCODER,
    "text_encoder_2.": Part.TEXT_ENCODER_2,
}
# Layouts of one tool for one family, told by their prefixes alone.
_TOOL_PREFIXES = {
    "lora_transformer_": (AdapterLayout.ONETRAINER, Part.TRANSFORMER),
    "double_blocks.": (AdapterLayout.XLABS, Part.TRANSFORMER),
    "single_blocks.": (AdapterLayout.XLABS, Part.TRANSFORMER),
}
_COMFY_PREFIXES = {
    "diffusion_model.": Part.UNET,
    "text_encoders.clip_l.": Part.TEXT_ENCODER,
    "text_encoders.clip_g.": Part.TEXT_ENCODER_2,
}
# diffusers module paths without "unet." (some trainers save the UNet's own state dict).
_BARE_UNET_ROOTS = (
    "down_blocks.",
    "mid_block.",
    "up_blocks.",
    "conv_in.",
    "conv_out.",
    "time_embedding.",
    "add_embedding.",
)
_LYCORIS_MARKERS = {
    "hada_w1_a": NetworkType.LOHA,
    "lokr_w1": NetworkType.LOKR,
    "lokr_w1_a": NetworkType.LOKR,
    "on_input": NetworkType.IA3,
    "a1.weight": NetworkType.GLORA,
    "diff": NetworkType.FULL,
}
_DOWN_SUFFIXES = (
    ".lora_down.weight",
    ".lora_A.weight",
    ".lora.down.weight",
    ".lora_A.default.weight",
    "_lora1.down.weight",  # XLabs: processor.qkv_lora1 (image stream) and qkv_lora2 (text stream)
    "_lora2.down.weight",
)
_XLABS_TENSOR = re.compile(r"(.*_lora[12])\.(down|up)\.weight$")


_LYCORIS_SUFFIXES = tuple(f".{m}" for m in _LYCORIS_MARKERS) + (".oft_blocks", ".hada_w1_b", ".lokr_w2")


def _module_of(key: str) -> str:
    """``lora_unet_x.lora_down.weight`` -> ``lora_unet_x`` (the layer the tensor belongs to)."""
    if m := _XLABS_TENSOR.match(key):
        return m.group(1)
    for suffix in _DOWN_SUFFIXES + (
        ".lora_up.weight",
        ".lora_B.weight",
        ".lora_B.default.weight",
        ".lora.up.weight",
        ".alpha",
        ".lora_mid.weight",
        ".dora_scale",
        ".lora_magnitude_vector",
        ".a1.weight",
        ".a2.weight",
        ".b1.weight",
        ".b2.weight",
    ):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key.rsplit(".", 1)[0]


def _layout_and_parts(names: list[str]) -> tuple[AdapterLayout | None, set[Part]]:
    parts: set[Part] = set()
    kohya = [n for n in names if n.startswith(tuple(_KOHYA_PREFIXES))]
    if kohya:
        for n in kohya:
            parts.add(
                next(p for pre, p in sorted(_KOHYA_PREFIXES.items(), key=lambda kv: -len(kv[0])) if n.startswith(pre))
            )
        lyco = any(n.startswith("lycoris_") or n.endswith(_LYCORIS_SUFFIXES) for n in kohya)
        return (AdapterLayout.LYCORIS if lyco else AdapterLayout.KOHYA), parts
    adapter_like = [n for n in names if "lora" in n.lower() or n.endswith(_LYCORIS_SUFFIXES)]
    if not adapter_like:
        return None, parts
    for prefix, (layout, part) in _TOOL_PREFIXES.items():
        if any(n.startswith(prefix) for n in adapter_like):
            return layout, {part} | {p for n in adapter_like for pre, p in _KOHYA_PREFIXES.items() if n.startswith(pre)}
    if any(n.startswith("base_model.model.") for n in adapter_like):
        parts.add(Part.UNET)  # peft's own save of a single model (the UNet in our runs)
        return AdapterLayout.PEFT, parts
    for layout, prefixes in ((AdapterLayout.COMFY, _COMFY_PREFIXES), (AdapterLayout.DIFFUSERS, _DIFFUSERS_PREFIXES)):
        for n in adapter_like:
            parts.update(p for pre, p in prefixes.items() if n.startswith(pre))
        if parts:
            return layout, parts
    if any(n.startswith(_BARE_UNET_ROOTS) for n in adapter_like):
        return AdapterLayout.DIFFUSERS, {Part.UNET}
    return None, parts


def not_an_adapter_reason(names: list[str]) -> str | None:
    """Why tensors with these names are no LoRA adapter (None: they are one). Shared by the
    file check below and the Hub's look at a file's header before downloading it."""
    if _layout_and_parts(sorted(names))[0] is not None:
        return None
    return f"not a LoRA adapter (none of its {len(names)} tensors is a LoRA weight)" + (
        "; it looks like a full model checkpoint" if len(names) > 500 else ""
    )


def _network_type(names: list[str], shapes: dict[str, list[int]]) -> NetworkType:
    for n in names:
        for marker, kind in _LYCORIS_MARKERS.items():
            if n.endswith(f".{marker}"):
                return kind
        if n.endswith(".oft_blocks"):
            return NetworkType.BOFT if len(shapes.get(n, [])) == 4 else NetworkType.OFT
    if any(n.endswith((".dora_scale", ".lora_magnitude_vector")) for n in names):
        return NetworkType.DORA
    if any(n.endswith(".lora_mid.weight") for n in names):
        return NetworkType.LOCON
    for n in names:
        shape = shapes.get(n, [])
        if n.endswith(_DOWN_SUFFIXES) and len(shape) == 4 and shape[2:] != [1, 1]:
            return NetworkType.LOCON
    return NetworkType.LORA


def _ranks(names: list[str], shapes: dict[str, list[int]]) -> collections.Counter:
    ranks: collections.Counter = collections.Counter()
    for n in names:
        if n.endswith(_DOWN_SUFFIXES) and shapes.get(n) or n.endswith(".hada_w1_b") and shapes.get(n):
            ranks[shapes[n][0]] += 1
    return ranks


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
    if (found := families.by_adapter_names(names)) is not None:
        return found[0], f"{families.label(found[0])} layer names ({found[1]})"
    if Part.TEXT_ENCODER_2 in parts and (fam := families.with_second_text_encoder()) is not None:
        return fam, "it changes a second text encoder"
    if any(n.startswith("lora_unet_label_emb") for n in names) and (fam := families.with_size_conditioning()):
        return fam, f"it changes label_emb ({families.label(fam)}'s size conditioning)"
    if meta.get("ss_v2") == "True" and (fam := families.with_ss_v2()) is not None:
        return fam, "metadata ss_v2 = True"
    for n in names:
        if not n.endswith(_DOWN_SUFFIXES):
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


def _family_from_blocks(names: list[str]) -> tuple[Family | None, str]:
    """SDXL stacks several transformers in most attentions, SD 1.x/2.x one each; anything
    else (SD 1.x vs 2.x differ only in widths) cannot be told from the names."""
    for n in names:
        m = _LDM_ATTENTION.match(n)
        if m and int(m.group(3)) > 0 and (fam := families.with_stacked_transformers()) is not None:
            return fam, f"several transformer blocks in one attention ({n})"
    return None, "no metadata, and neither the widths nor the block structure tell"


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
    ranks = _ranks(names, shapes)
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
    layout, parts = _layout_and_parts(names)
    if layout is None:
        raise AdapterError(f"{p}: {not_an_adapter_reason(names)}")
    meta = header.metadata
    try:
        tags = tag_frequency(meta)
    except ValueError as exc:
        raise AdapterError(f"{p}: its metadata ss_tag_frequency is malformed ({exc}); the file is damaged") from None
    network = _network_type(names, shapes)
    if layout is AdapterLayout.LYCORIS or network not in (NetworkType.LORA, NetworkType.LOCON, NetworkType.DORA):
        layout = AdapterLayout.LYCORIS if layout is AdapterLayout.KOHYA else layout
    rank = _rank(p, names, shapes, meta)
    modules = {_module_of(n) for n in names}
    order = [Part.UNET, Part.TRANSFORMER, Part.TEXT_ENCODER, Part.TEXT_ENCODER_2]
    family, evidence = _family(names, shapes, meta, parts)
    if family is not None and Part(families.spec(family).denoiser) is Part.TRANSFORMER and Part.UNET in parts:
        parts = (parts - {Part.UNET}) | {Part.TRANSFORMER}  # kohya and ComfyUI name the denoiser "unet" whatever it is
    return AdapterInfo(
        path=p,
        layout=layout,
        network=network,
        family=family,
        rank=rank,
        alpha=_alpha(header, names, root),
        parts=[x for x in order if x in parts],
        modules=len(modules),
        trigger_words=trigger_words(p, meta, card_data, top_tags, tags, root),
        preview=find_preview(p, root),
        preview_bytes=embedded_preview(meta),
        title=meta.get("modelspec.title") or meta.get("ss_output_name") or p.stem,
        metadata=dict(meta),
        family_evidence=evidence,
    )
