"""Rewrite an adapter file into another layout: kohya, diffusers, peft or ComfyUI's own names.

The file is read against a base model (kohya names turn ``.`` into ``_``, so only the
model's real module names tell ``to_q`` from ``to.q``), and every layer is written back
with the same tensors under the new names; the metadata is kept. kohya and ComfyUI
layouts carry every network type (LyCORIS keeps its tensor names in both); diffusers and
peft carry LoRA and DoRA only, with the scale alpha/rank folded into ``lora_B`` because
they have no per-layer alpha. A type a layout cannot carry is refused with a sentence.
"""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_save

from app.core.adapters import Part
from app.core.files import atomic_write_bytes
from app.engine.adapter_formats import IncompatibleAdapter, LayerDelta, LayerIndex, Target, read_adapter
from app.engine.lora_files import te_module_path


class Layout(str, enum.Enum):
    KOHYA = "kohya"
    DIFFUSERS = "diffusers"
    PEFT = "peft"
    COMFY = "comfy"


# reader role -> the tensor suffix kohya / LyCORIS / ComfyUI files use for it
_SUFFIX = {
    "down": "lora_down.weight",
    "up": "lora_up.weight",
    "mid": "lora_mid.weight",
    "a1": "a1.weight",
    "a2": "a2.weight",
    "b1": "b1.weight",
    "b2": "b2.weight",
}
_KOHYA_TE = {Part.TEXT_ENCODER: "lora_te", Part.TEXT_ENCODER_2: "lora_te2"}
_COMFY_TE = {
    Part.TEXT_ENCODER: "text_encoders.clip_l.transformer",
    Part.TEXT_ENCODER_2: "text_encoders.clip_g.transformer",
}
_DIFFUSERS_PART = {
    Part.UNET: "unet",
    Part.TRANSFORMER: "transformer",
    Part.TEXT_ENCODER: "text_encoder",
    Part.TEXT_ENCODER_2: "text_encoder_2",
}


def _name(layout: Layout, target: Target, index: LayerIndex, xl: bool) -> str:
    path = target.path if target.part.denoiser else te_module_path(target.path)
    if layout is Layout.KOHYA:
        prefix = "lora_unet" if target.part is Part.UNET else _KOHYA_TE[target.part]
        prefix = "lora_te1" if xl and target.part is Part.TEXT_ENCODER else prefix
        return f"{prefix}_{path.replace('.', '_')}"
    if layout is Layout.COMFY:
        if target.part is Part.UNET:
            sgm = index.sgm_path(target)
            return f"diffusion_model.{sgm or path}"
        return f"{_COMFY_TE[target.part]}.{path}"
    if layout is Layout.PEFT:
        return f"base_model.model.{path}"
    return f"{_DIFFUSERS_PART[target.part]}.{path}"


def _factor_tensors(layout: Layout, name: str, delta: LayerDelta, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    t = delta.tensors
    if layout in (Layout.KOHYA, Layout.COMFY):
        out = {f"{name}.{_SUFFIX.get(role, role)}": v.to(dtype) for role, v in t.items()}
        if delta.rank or delta.alpha is not None:  # the true alpha, float32 (never the rank as int64)
            out[f"{name}.alpha"] = torch.tensor(float(delta.alpha if delta.alpha is not None else delta.rank))
        if delta.dora is not None:
            out[f"{name}.dora_scale"] = delta.dora.to(dtype)
        return out
    up = delta.pick_rows(t["up"]).float() * delta.scale()  # a piece of a fused layer: its rows
    # a copy: the pieces of a fused layer share one down, and safetensors refuses shared tensors
    out = {f"{name}.lora_A.weight": t["down"].to(dtype, copy=True), f"{name}.lora_B.weight": up.to(dtype)}
    if delta.dora is not None:
        out[f"{name}.lora_magnitude_vector"] = delta.dora.reshape(-1).to(dtype)
    return out


def _refusal(path: Path, layout: Layout, target: Target, delta: LayerDelta, shape: tuple[int, ...]) -> str:
    if layout in (Layout.KOHYA, Layout.COMFY) and target.part is Part.TRANSFORMER:
        return (
            f"{path}: a transformer (Flux) adapter cannot be rewritten in the {layout.value} layout, which "
            "fuses its q/k/v layers; use --to diffusers, or bake it (the baked file is in the kohya Flux layout)"
        )
    if layout in (Layout.KOHYA, Layout.COMFY):
        return ""
    kind = {
        "lora": "LoRA",
        "loha": "LoHa",
        "lokr": "LoKr",
        "full": "full-weight",
        "set": "set_weight",
        "ia3": "(IA)³",
        "glora": "GLoRA",
        "oft": "OFT",
        "boft": "BOFT",
    }.get(delta.kind, delta.kind)
    if delta.kind != "lora" or "mid" in delta.tensors:
        return (
            f"{path}: a {kind}{' (tucker)' if 'mid' in delta.tensors else ''} adapter cannot be written in "
            f"the {layout.value} layout (it holds LoRA and DoRA only); use --to kohya or --to comfy"
        )
    if delta.dora is not None and delta.dora_axis(shape) is not True:
        return (
            f"{path}: its DoRA magnitudes are per input column, which the {layout.value} layout cannot "
            "hold (peft keeps one per output row); use --to kohya or --to comfy"
        )
    if layout is Layout.PEFT and not target.part.denoiser:
        return (
            f"{path}: it changes a text encoder too, and peft's own layout holds one model; "
            "use --to diffusers for a file with every part"
        )
    return ""


def convert(src: str | Path, out: str | Path, layout: Layout | str, index: LayerIndex, family) -> Path:
    """Write ``src`` as ``layout`` to ``out`` (atomically); returns ``out``. Raises IncompatibleAdapter."""
    layout = Layout(layout)
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise IncompatibleAdapter(f"{out}: is the file being converted; write the copy under another name")
    parsed = read_adapter(src, index, family)
    xl = Part.TEXT_ENCODER_2 in index.parts
    dtype = _file_dtype(src)
    tensors: dict[str, torch.Tensor] = {}
    for target, delta in sorted(parsed.layers.items()):
        problem = _refusal(src, layout, target, delta, index.shape(target))
        if problem:
            raise IncompatibleAdapter(problem)
        tensors.update(_factor_tensors(layout, _name(layout, target, index, xl), delta, dtype))
    metadata = dict(parsed.info.metadata)
    metadata.pop("lora_adapter_metadata", None)  # its alphas are folded into lora_B or written as .alpha
    data = safetensors_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata or None)
    if layout is Layout.PEFT:
        _write_peft_config(out, parsed)
    atomic_write_bytes(out, data)
    return out


def _write_peft_config(out: Path, parsed) -> None:
    ranks = sorted({d.rank for d in parsed.layers.values()})
    config = {
        "peft_type": "LORA",
        "r": ranks[0],
        "lora_alpha": ranks[0],  # scale folded into lora_B
        "rank_pattern": {t.path: d.rank for t, d in parsed.layers.items() if d.rank != ranks[0]},
        "alpha_pattern": {t.path: d.rank for t, d in parsed.layers.items() if d.rank != ranks[0]},
        "target_modules": sorted(t.path for t in parsed.layers),
        "use_dora": any(d.dora is not None for d in parsed.layers.values()),
        "bias": "none",
    }
    atomic_write_bytes(out.with_name("adapter_config.json"), json.dumps(config, indent=2).encode("utf-8"))


def _file_dtype(path: Path) -> torch.dtype:
    """The dtype most of the file's tensors have (the reader works in float32; the copy keeps the file's)."""
    from safetensors import safe_open

    counts: dict[torch.dtype, int] = {}
    with safe_open(str(path), "pt") as fh:
        for key in fh.keys():
            sl = fh.get_slice(key)
            if math.prod(sl.get_shape()) > 1:
                dt = {"F16": torch.float16, "BF16": torch.bfloat16}.get(sl.get_dtype(), torch.float32)
                counts[dt] = counts.get(dt, 0) + 1
    return max(counts, key=counts.get) if counts else torch.float32
