"""Adapter files' key names: which tool's layout a file has, which parts of a pipeline it
changes and its network type, from its tensor names alone (pure Python, no torch).

Split from :mod:`app.core.adapters` (which re-exports the enums) so that one module holds the
naming schemes of every layout the header reader knows: kohya, diffusers, peft, LyCORIS,
ComfyUI and, for Flux's transformer, BFL and XLabs.
"""

from __future__ import annotations

import collections
import re
from enum import Enum

from app.core import families


class AdapterLayout(str, Enum):
    KOHYA = "kohya"
    DIFFUSERS = "diffusers"
    PEFT = "peft"
    LYCORIS = "lycoris"
    COMFY = "comfy"  # ComfyUI's own names: diffusion_model.<original UNet path>, text_encoders.clip_l.…
    BFL = "bfl"  # Black Forest Labs' own Flux layer names without a prefix (double_blocks.N.img_attn.qkv)
    XLABS = "xlabs"  # XLabs' Flux attention-processor LoRAs (double_blocks.N.processor.qkv_lora1)


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


# ------------------------------------------------------------------ key patterns

# "lycoris_": SimpleTuner's LyCORIS files (UNet only).
_KOHYA_PREFIXES = {
    "lora_unet_": Part.UNET,
    "lora_te_": Part.TEXT_ENCODER,
    "lora_te1_": Part.TEXT_ENCODER,
    "lora_te2_": Part.TEXT_ENCODER_2,
    "lora_te3_": Part.TEXT_ENCODER_2,  # Flux.1's T5-XXL (pipe.text_encoder_2) in sd-scripts' files
    "lycoris_": Part.UNET,
    "lora_transformer_": Part.TRANSFORMER,
}
_DIFFUSERS_PREFIXES = {
    "unet.": Part.UNET,
    "transformer.": Part.TRANSFORMER,
    "text_encoder.": Part.TEXT_ENCODER,
    "text_encoder_2.": Part.TEXT_ENCODER_2,
}
# A transformer denoiser's layers, from each family's ``original_roots`` (Flux: BFL's own paths,
# which kohya ``lora_unet_`` with "_", ComfyUI ``diffusion_model.``, BFL and XLabs files use) and
# ``diffusers_roots`` (diffusers' paths: peft, SimpleTuner).
_BFL_ROOTS = families.denoiser_roots("original")
_TRANSFORMER_ROOTS = families.denoiser_roots("diffusers")
_TRANSFORMER_NAMES = (
    # no "_" after a kohya root: "lora_unet_img_in" is a whole module name
    tuple("lora_unet_" + r.rstrip(".").replace(".", "_") for r in _BFL_ROOTS)
    + tuple("diffusion_model." + r for r in _BFL_ROOTS)
    + tuple("lycoris_" + r.rstrip(".").replace(".", "_") for r in _TRANSFORMER_ROOTS)
    + tuple("base_model.model." + r for r in _TRANSFORMER_ROOTS)
    + ("lora_transformer_",)  # OneTrainer: lora_transformer_ + the diffusers path with "_"
)
_COMFY_PREFIXES = {
    "diffusion_model.": Part.UNET,
    "text_encoders.clip_l.": Part.TEXT_ENCODER,
    "text_encoders.clip_g.": Part.TEXT_ENCODER_2,
    "text_encoders.t5xxl.": Part.TEXT_ENCODER_2,  # Flux.1's T5-XXL
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
DOWN_SUFFIXES = (
    ".lora_down.weight",
    ".lora_A.weight",
    ".lora.down.weight",
    ".lora_A.default.weight",
    "_lora1.down.weight",  # XLabs: processor.qkv_lora1 (image stream) and qkv_lora2 (text stream)
    "_lora2.down.weight",
)
_XLABS_TENSOR = re.compile(r"(.*_lora[12])\.(down|up)\.weight$")


_LYCORIS_SUFFIXES = tuple(f".{m}" for m in _LYCORIS_MARKERS) + (".oft_blocks", ".hada_w1_b", ".lokr_w2")


def module_of(key: str) -> str:
    """``lora_unet_x.lora_down.weight`` -> ``lora_unet_x`` (the layer the tensor belongs to)."""
    if m := _XLABS_TENSOR.match(key):
        return m.group(1)
    for suffix in DOWN_SUFFIXES + (
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


def _kohya_part(name: str) -> Part:
    if name.startswith(_TRANSFORMER_NAMES):
        return Part.TRANSFORMER
    return next(p for pre, p in sorted(_KOHYA_PREFIXES.items(), key=lambda kv: -len(kv[0])) if name.startswith(pre))


def layout_and_parts(names: list[str]) -> tuple[AdapterLayout | None, set[Part]]:
    parts: set[Part] = set()
    kohya = [n for n in names if n.startswith(tuple(_KOHYA_PREFIXES))]
    if kohya:
        parts.update(_kohya_part(n) for n in kohya)
        lyco = any(n.startswith("lycoris_") or n.endswith(_LYCORIS_SUFFIXES) for n in kohya)
        return (AdapterLayout.LYCORIS if lyco else AdapterLayout.KOHYA), parts
    adapter_like = [n for n in names if "lora" in n.lower() or n.endswith(_LYCORIS_SUFFIXES)]
    if not adapter_like:
        return None, parts
    if any(n.startswith("base_model.model.") for n in adapter_like):
        # peft's own save of a single model (the UNet in our runs, or a Flux transformer)
        parts.add(Part.TRANSFORMER if any(n.startswith(_TRANSFORMER_NAMES) for n in adapter_like) else Part.UNET)
        return AdapterLayout.PEFT, parts
    bfl_names = _BFL_ROOTS + tuple("diffusion_model." + r for r in _BFL_ROOTS)
    if any(n.startswith(bfl_names) and ".processor." in n for n in adapter_like):
        return AdapterLayout.XLABS, {Part.TRANSFORMER}
    if any(n.startswith(_TRANSFORMER_NAMES) for n in adapter_like):  # ComfyUI's diffusion_model.double_blocks…
        parts.add(Part.TRANSFORMER)
        parts.update(
            p for n in adapter_like for pre, p in _COMFY_PREFIXES.items() if p is not Part.UNET and n.startswith(pre)
        )
        return AdapterLayout.COMFY, parts
    if any(n.startswith(_BFL_ROOTS) for n in adapter_like):
        return AdapterLayout.BFL, {Part.TRANSFORMER}
    for layout, prefixes in ((AdapterLayout.COMFY, _COMFY_PREFIXES), (AdapterLayout.DIFFUSERS, _DIFFUSERS_PREFIXES)):
        for n in adapter_like:
            parts.update(p for pre, p in prefixes.items() if n.startswith(pre))
        if parts:
            return layout, parts
    if any(n.startswith(_BARE_UNET_ROOTS) for n in adapter_like):
        return AdapterLayout.DIFFUSERS, {Part.UNET}
    if any(n.startswith(_TRANSFORMER_ROOTS) for n in adapter_like):
        return AdapterLayout.DIFFUSERS, {Part.TRANSFORMER}
    return None, parts


def not_an_adapter_reason(names: list[str]) -> str | None:
    """Why tensors with these names are no LoRA adapter (None: they are one). Shared by the
    file check below and the Hub's look at a file's header before downloading it."""
    if layout_and_parts(sorted(names))[0] is not None:
        return None
    return f"not a LoRA adapter (none of its {len(names)} tensors is a LoRA weight)" + (
        "; it looks like a full model checkpoint" if len(names) > 500 else ""
    )


def network_type(names: list[str], shapes: dict[str, list[int]]) -> NetworkType:
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
        if n.endswith(DOWN_SUFFIXES) and len(shape) == 4 and shape[2:] != [1, 1]:
            return NetworkType.LOCON
    return NetworkType.LORA


def ranks_of(names: list[str], shapes: dict[str, list[int]]) -> collections.Counter:
    ranks: collections.Counter = collections.Counter()
    for n in names:
        if n.endswith(DOWN_SUFFIXES) and shapes.get(n) or n.endswith(".hada_w1_b") and shapes.get(n):
            ranks[shapes[n][0]] += 1
    return ranks
