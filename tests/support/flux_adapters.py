"""Flux LoRA files in every common layout, for the tiny Flux, with seeded random factors.

Each layout writes the key names its tool writes (kohya sd-scripts, ComfyUI, BFL, XLabs,
diffusers/ai-toolkit, peft, OneTrainer); fused layers (a double block's ``img_attn.qkv``, a single
block's ``linear1``) get one factor pair of the fused width, as those tools save them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from app.core.families import Family
from app.engine import flux_keys
from app.engine.families import engine
from app.engine.lora_files import te_module_path

LAYOUTS = ("kohya", "comfy", "bfl", "xlabs", "diffusers", "peft", "onetrainer")
FLUX = engine(Family.FLUX1)


def render_np(pipe, prompt: str = "a red square", seed: int = 1, steps: int = 2):
    """A float picture straight from the pipeline (no PNG rounding), for exact comparisons."""
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.inference_mode():
        return pipe(
            prompt=prompt,
            num_inference_steps=steps,
            guidance_scale=3.5,
            width=64,
            height=64,
            generator=generator,
            output_type="np",
            max_sequence_length=FLUX.max_sequence(pipe),
        ).images[0]


def weights_of(pipe) -> dict[str, torch.Tensor]:
    """Every weight by its plain name; a layer diffusers fused a LoRA into (peft keeps it as
    ``….base_layer``, beside the ``lora_A/B`` it no longer uses) by the name it had before."""
    out = {}
    for part in ("transformer", "text_encoder", "text_encoder_2"):
        for name, tensor in getattr(pipe, part).state_dict().items():
            if ".lora_A." in name or ".lora_B." in name:
                continue
            out[f"{part}.{name.replace('.base_layer.', '.')}"] = tensor.clone()
    return out


def _pair(gen: torch.Generator, rows: int, inp: int, rank: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    down = torch.randn(rank, inp, generator=gen) / math.sqrt(inp)
    up = torch.randn(rows, rank, generator=gen) * sigma / math.sqrt(rank)
    return down.contiguous(), up.contiguous()


def _bfl_shapes(transformer: nn.Module) -> dict[str, tuple[int, int]]:
    modules = dict(transformer.named_modules())
    out = {}
    for bfl, pieces in flux_keys.bfl_layers(transformer).items():
        rows = sum(b - a for p in pieces for a, b in p.rows)
        out[bfl] = (rows, int(modules[pieces[0].path].weight.shape[1]))
    return out


def _xlabs_shapes(transformer: nn.Module) -> dict[str, tuple[int, int]]:
    inner = int(transformer.transformer_blocks[0].attn.to_q.weight.shape[0])
    out = {}
    for i in range(len(transformer.transformer_blocks)):
        for name, rows in (
            ("qkv_lora1", 3 * inner),
            ("qkv_lora2", 3 * inner),
            ("proj_lora1", inner),
            ("proj_lora2", inner),
        ):
            out[f"double_blocks.{i}.processor.{name}"] = (rows, inner)
    for i in range(len(transformer.single_transformer_blocks)):
        out[f"single_blocks.{i}.processor.qkv_lora"] = (3 * inner, inner)
        out[f"single_blocks.{i}.processor.proj_lora"] = (
            inner,
            int(transformer.single_transformer_blocks[i].proj_out.weight.shape[1]),
        )
    return out


def _diffusers_shapes(transformer: nn.Module, attention_only: bool) -> dict[str, tuple[int, int]]:
    out = {}
    for path, m in transformer.named_modules():
        if not isinstance(m, nn.Linear) or not path.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            continue
        if attention_only and ".attn." not in path:
            continue
        out[path] = tuple(m.weight.shape)
    return out


def flux_lora(
    pipe,
    path: Path,
    layout: str,
    *,
    seed: int = 0,
    rank: int = 4,
    alpha: float = 2.0,
    sigma: float = 1.0,
    te: bool = True,
    skip: tuple[str, ...] = (),
    metadata: bool = True,
) -> Path:
    """A LoRA for the tiny Flux in ``layout`` (one of LAYOUTS); ``skip``: module keys containing
    any of these strings are left out (e.g. "linear1", which diffusers' converter can only split
    at the real model's 3072 width)."""
    gen = torch.Generator().manual_seed(seed)
    t = pipe.transformer
    sd: dict[str, torch.Tensor] = {}
    down_up = {"kohya": (".lora_down.weight", ".lora_up.weight"), "comfy": (".lora_down.weight", ".lora_up.weight")}
    if layout in ("kohya", "comfy", "bfl"):
        prefix = {"kohya": "lora_unet_", "comfy": "diffusion_model.", "bfl": ""}[layout]
        names = {prefix + (k.replace(".", "_") if layout == "kohya" else k): s for k, s in _bfl_shapes(t).items()}
    elif layout == "xlabs":
        names = _xlabs_shapes(t)
    elif layout in ("diffusers", "peft"):
        prefix = "transformer." if layout == "diffusers" else "base_model.model."
        names = {prefix + k: s for k, s in _diffusers_shapes(t, False).items()}
    elif layout == "onetrainer":
        names = {"lora_transformer_" + k.replace(".", "_"): s for k, s in _diffusers_shapes(t, True).items()}
    else:
        raise ValueError(layout)
    suffix = down_up.get(layout, (".lora_A.weight", ".lora_B.weight"))
    if layout == "xlabs":
        suffix = (".down.weight", ".up.weight")
    if layout == "onetrainer":
        suffix = (".lora_down.weight", ".lora_up.weight")
    with_alpha = layout in ("kohya", "comfy", "onetrainer")
    for name, (rows, inp) in sorted(names.items()):
        if any(s in name for s in skip):
            continue
        down, up = _pair(gen, rows, inp, rank, sigma)
        sd[name + suffix[0]], sd[name + suffix[1]] = down, up
        if with_alpha:
            sd[name + ".alpha"] = torch.tensor(float(alpha))
    if te and layout in ("kohya", "diffusers", "onetrainer"):
        for p, m in pipe.text_encoder.named_modules():
            if isinstance(m, nn.Linear) and p.endswith(("q_proj", "k_proj", "v_proj", "out_proj")):
                full = te_module_path(p)
                down, up = _pair(gen, m.weight.shape[0], m.weight.shape[1], rank, sigma)
                if layout == "diffusers":
                    sd[f"text_encoder.{full}.lora_A.weight"], sd[f"text_encoder.{full}.lora_B.weight"] = down, up
                else:
                    name = "lora_te1_" + full.replace(".", "_")
                    sd[name + ".lora_down.weight"], sd[name + ".lora_up.weight"] = down, up
                    sd[name + ".alpha"] = torch.tensor(float(alpha))
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"ss_base_model_version": "flux1", "ss_network_module": "networks.lora_flux"} if metadata else None
    save_file(sd, str(path), metadata=meta)
    if layout == "peft":
        (path.parent / "adapter_config.json").write_text(
            json.dumps({"r": rank, "lora_alpha": alpha, "peft_type": "LORA"})
        )
    return path
