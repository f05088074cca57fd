"""A whole Flux.1 transformer's weights, both ways between diffusers' names and Black Forest Labs'
(``double_blocks.N.img_attn.qkv``…, the names ``flux1-dev.safetensors`` as ComfyUI and Forge keep
it carries).

diffusers' own single-file converter (``convert_flux_transformer_checkpoint_to_diffusers``) reads
BFL names but hard-codes the real model's width (3072) when it splits a single block's fused
``linear1``; here the widths come from the transformer's config, so the tiny test model and the
real one are read alike. Row order, the final layer's (shift, scale) swap and the q/k norm names
follow that converter; ``tests/engine/test_flux_files.py`` checks both directions against it at
the real row counts. Tensors are sliced (views) or concatenated, never copied otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from app.engine import flux_keys

_NORMS_DOUBLE = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
}
_NORMS_SINGLE = {"attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}
_FINAL_BFL, _FINAL = "final_layer.adaLN_modulation.1", "norm_out.linear"
BFL_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def bfl_plan(config: Mapping) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]]:
    """Every BFL tensor name of this config's transformer -> (the diffusers tensors it is made
    of, in row order; their row counts, 0 for "all"; whether its two halves are swapped)."""
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    height = dict.fromkeys(("attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj", "attn.add_k_proj"), inner)
    height.update({"attn.add_v_proj": inner, "proj_mlp": 4 * inner})
    layers: dict[str, tuple[str, ...]] = {bfl: (path,) for bfl, path in flux_keys._GLOBAL.items()}
    if not config.get("guidance_embeds", True):
        layers = {k: v for k, v in layers.items() if not k.startswith("guidance_in.")}
    for i in range(int(config["num_layers"])):
        for bfl, paths in flux_keys._DOUBLE.items():
            layers[f"double_blocks.{i}.{bfl}"] = tuple(f"transformer_blocks.{i}.{p}" for p in paths)
    for i in range(int(config["num_single_layers"])):
        for bfl, paths in flux_keys._SINGLE.items():
            layers[f"single_blocks.{i}.{bfl}"] = tuple(f"single_transformer_blocks.{i}.{p}" for p in paths)
    plan: dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]] = {}
    for bfl, paths in layers.items():
        rows = tuple(height.get(p.split(".", 2)[-1], 0) if len(paths) > 1 else 0 for p in paths)
        for kind in ("weight", "bias"):
            plan[f"{bfl}.{kind}"] = (tuple(f"{p}.{kind}" for p in paths), rows, False)
    for kind in ("weight", "bias"):
        plan[f"{_FINAL_BFL}.{kind}"] = ((f"{_FINAL}.{kind}",), (0,), True)
    for i in range(int(config["num_layers"])):
        for d, b in _NORMS_DOUBLE.items():
            plan[f"double_blocks.{i}.{b}"] = ((f"transformer_blocks.{i}.{d}",), (0,), False)
    for i in range(int(config["num_single_layers"])):
        for d, b in _NORMS_SINGLE.items():
            plan[f"single_blocks.{i}.{b}"] = ((f"single_transformer_blocks.{i}.{d}",), (0,), False)
    return plan


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def bfl_tensor(parts: list[torch.Tensor], swap: bool) -> torch.Tensor:
    """One BFL tensor from its diffusers parts (:func:`bfl_plan`)."""
    t = parts[0] if len(parts) == 1 else torch.cat(parts)
    return _swap_halves(t) if swap else t


def to_bfl(state: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """diffusers ``FluxTransformer2DModel`` state dict -> BFL names (fused q/k/v, fused linear1)."""
    return {
        bfl: bfl_tensor([state[n] for n in names], swap)
        for bfl, (names, _, swap) in bfl_plan(config).items()
        if all(n in state for n in names)
    }


def strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL names as a transformer file or an all-in-one checkpoint carries them -> bare BFL names
    (only the transformer's tensors)."""
    prefix = next((p for p in BFL_PREFIXES if any(k.startswith(p) for k in state)), "")
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def from_bfl(state: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """BFL names (bare) -> diffusers' names, splitting the fused layers at the config's widths
    (views). Names it does not know are left out: :func:`unread` lists them."""
    out: dict[str, torch.Tensor] = {}
    for bfl, (names, rows, swap) in bfl_plan(config).items():
        tensor = state.get(bfl)
        if tensor is None:
            continue
        if swap:
            tensor = _swap_halves(tensor)
        pieces = [tensor] if len(names) == 1 else torch.split(tensor, list(rows))
        if len(pieces) != len(names):
            raise RuntimeError(f"{bfl} has {tensor.shape[0]} rows, the config {sum(rows)}")
        out.update(zip(names, pieces, strict=True))
    return out


def unread(state: Mapping[str, torch.Tensor], config: Mapping) -> list[str]:
    """BFL names in ``state`` that :func:`from_bfl` does not read for this config."""
    return sorted(set(state) - set(bfl_plan(config)))


def missing(state: Mapping[str, torch.Tensor], config: Mapping) -> list[str]:
    """BFL weight names this config's transformer needs that ``state`` (bare BFL names) lacks."""
    return [n for n in bfl_plan(config) if n not in state]
