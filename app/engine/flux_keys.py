"""Flux.1's layer names, both ways, between diffusers' ``FluxTransformer2DModel`` and the files
other tools write.

diffusers splits what Black Forest Labs' own model (BFL, and ComfyUI/Forge/sd-scripts after it)
keeps fused: a double block's ``img_attn.qkv`` is ``attn.to_q/to_k/to_v`` here, a single
block's ``linear1`` is ``attn.to_q/to_k/to_v`` + ``proj_mlp``, and ``final_layer.adaLN_modulation.1``
is ``norm_out.linear`` with its two halves (shift, scale) swapped. A fused file layer is
therefore one ΔW whose row ranges are the ΔW of several diffusers layers: exact, since
``(B·A)[rows] = B[rows]·A``. A :class:`Piece` says which rows of the file's ΔW make one layer.

Names read (each a module key, without the ``.lora_down.weight``-style suffix):

* kohya sd-scripts: ``lora_unet_`` + the BFL path with ``_`` (``lora_unet_double_blocks_0_img_attn_qkv``)
* BFL / ComfyUI-native: ``diffusion_model.`` + the BFL path, or the bare BFL path
* XLabs: ``double_blocks.N.processor.qkv_lora1`` (image q/k/v), ``…qkv_lora2`` (text), ``proj_lora1/2``,
  ``single_blocks.N.processor.qkv_lora`` (q/k/v only), ``proj_lora``; with or without ``diffusion_model.``
* diffusers names (``transformer.…``, peft's ``base_model.model.…``, bare), OneTrainer
  (``lora_transformer_`` + the diffusers path with ``_``) and SimpleTuner's LyCORIS (``lycoris_`` …)
  are plain per-layer names: :mod:`app.engine.layer_index` registers them for every denoiser part.

The order of the diffusers layers inside each fused BFL layer follows diffusers' own converters
(``diffusers.loaders.lora_conversion_utils._convert_kohya_flux_lora_to_diffusers`` and the
single-file ``convert_flux_transformer_checkpoint_to_diffusers``), which hard-code the real
model's widths (3072); here the widths are read from the loaded model, so the tiny test model
and any width are mapped the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from app.engine.layer_delta import Piece, Rows

# BFL double-block layer -> the diffusers layers it is made of, in row order.
_DOUBLE = {
    "img_mod.lin": ("norm1.linear",),
    "txt_mod.lin": ("norm1_context.linear",),
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_attn.proj": ("attn.to_out.0",),
    "txt_attn.proj": ("attn.to_add_out",),
    "img_mlp.0": ("ff.net.0.proj",),
    "img_mlp.2": ("ff.net.2",),
    "txt_mlp.0": ("ff_context.net.0.proj",),
    "txt_mlp.2": ("ff_context.net.2",),
}
_SINGLE = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    "linear2": ("proj_out",),
    "modulation.lin": ("norm.linear",),
}
_GLOBAL = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
_FINAL_MOD = ("final_layer.adaLN_modulation.1", "norm_out.linear")  # (shift, scale) vs (scale, shift)
# XLabs' attention-processor LoRAs: processor name -> the BFL layer whose rows it changes.
# Its single-block qkv_lora covers q/k/v only (not linear1's MLP rows).
_XLABS_DOUBLE = {
    "qkv_lora1": "img_attn.qkv",
    "qkv_lora2": "txt_attn.qkv",
    "proj_lora1": "img_attn.proj",
    "proj_lora2": "txt_attn.proj",
}
_XLABS_SINGLE = {"qkv_lora": ("attn.to_q", "attn.to_k", "attn.to_v"), "proj_lora": ("proj_out",)}


def _stacked(paths: tuple[str, ...], rows_of: Callable[[str], int]) -> tuple[Piece, ...]:
    out, start = [], 0
    for path in paths:
        n = rows_of(path)
        out.append(Piece(path, ((start, start + n),)))
        start += n
    return tuple(out)


def bfl_layers(transformer: nn.Module) -> dict[str, tuple[Piece, ...]]:
    """Every BFL layer path of this transformer -> the diffusers layers its ΔW rows make."""
    modules = dict(transformer.named_modules())

    def rows_of(path: str) -> int:
        return int(modules[path].weight.shape[0])

    out: dict[str, tuple[Piece, ...]] = {}
    for bfl, path in _GLOBAL.items():
        if path in modules:
            out[bfl] = _stacked((path,), rows_of)
    bfl_mod, path = _FINAL_MOD
    if path in modules:
        half = rows_of(path) // 2
        out[bfl_mod] = (Piece(path, ((half, 2 * half), (0, half))),)
    # A layer the model lacks is left out (Chroma, Flux-derived, has no modulation layers).
    for i in range(len(getattr(transformer, "transformer_blocks", ()))):
        for bfl, paths in _DOUBLE.items():
            full = tuple(f"transformer_blocks.{i}.{p}" for p in paths)
            if all(p in modules for p in full):
                out[f"double_blocks.{i}.{bfl}"] = _stacked(full, rows_of)
    for i in range(len(getattr(transformer, "single_transformer_blocks", ()))):
        for bfl, paths in _SINGLE.items():
            full = tuple(f"single_transformer_blocks.{i}.{p}" for p in paths)
            if all(p in modules for p in full):
                out[f"single_blocks.{i}.{bfl}"] = _stacked(full, rows_of)
    return out


def file_names(transformer: nn.Module) -> dict[str, tuple[Piece, ...]]:
    """Every module key kohya, BFL/ComfyUI and XLabs files use for this transformer -> its pieces."""
    layers = bfl_layers(transformer)
    out: dict[str, tuple[Piece, ...]] = {}
    for bfl, pieces in layers.items():
        out["lora_unet_" + bfl.replace(".", "_")] = pieces  # kohya sd-scripts
        out["diffusion_model." + bfl] = pieces  # ComfyUI / Forge
        out[bfl] = pieces  # BFL's own (control LoRAs)
    modules = dict(transformer.named_modules())
    for i in range(len(getattr(transformer, "transformer_blocks", ()))):
        for name, bfl in _XLABS_DOUBLE.items():
            _add_xlabs(out, f"double_blocks.{i}.processor.{name}", layers[f"double_blocks.{i}.{bfl}"])
    for i in range(len(getattr(transformer, "single_transformer_blocks", ()))):
        for name, paths in _XLABS_SINGLE.items():
            full = tuple(f"single_transformer_blocks.{i}.{p}" for p in paths)
            pieces = _stacked(full, lambda p: int(modules[p].weight.shape[0]))
            _add_xlabs(out, f"single_blocks.{i}.processor.{name}", pieces)
    return out


def _add_xlabs(out: dict[str, tuple[Piece, ...]], name: str, pieces: tuple[Piece, ...]) -> None:
    out[name] = pieces
    out["diffusion_model." + name] = pieces


# ---------------------------------------------------------------- writing the kohya Flux layout


@dataclass(frozen=True)
class KohyaPlace:
    """Where a diffusers layer goes in a kohya Flux file: module ``name``, ``rows`` of its ΔW
    (of ``total_rows``, the fused layer's height)."""

    name: str
    rows: Rows
    total_rows: int


def kohya_places(transformer: nn.Module) -> dict[str, KohyaPlace]:
    """Diffusers layer path -> its place in the kohya sd-scripts Flux layout (what ComfyUI,
    Forge and diffusers' ``load_lora_weights`` read)."""
    out: dict[str, KohyaPlace] = {}
    for bfl, pieces in bfl_layers(transformer).items():
        total = sum(b - a for piece in pieces for a, b in piece.rows)
        for piece in pieces:
            out[piece.path] = KohyaPlace("lora_unet_" + bfl.replace(".", "_"), piece.rows, total)
    return out


def t5_names(t5: nn.Module) -> dict[str, tuple[Piece, ...]]:
    """T5-XXL's Linear layers by the names Flux LoRA files give them: sd-scripts' ``lora_te3_`` +
    the path with ``_`` (``lora_te3_encoder_block_0_layer_0_SelfAttention_q``) and ComfyUI's
    ``text_encoders.t5xxl.transformer.`` + the path (diffusers' ``text_encoder_2.`` is generic)."""
    out: dict[str, tuple[Piece, ...]] = {}
    for path, module in t5.named_modules():
        if isinstance(module, nn.Linear):
            piece = (Piece(path, ((0, int(module.weight.shape[0])),)),)
            out["lora_te3_" + path.replace(".", "_")] = piece
            out["text_encoders.t5xxl.transformer." + path] = piece
    return out
