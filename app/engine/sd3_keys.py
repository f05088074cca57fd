"""SD 3's layer names, both ways, between diffusers' ``SD3Transformer2DModel`` and the files other
tools write in Stability's own MMDiT naming (``joint_blocks.N.x_block…``).

Stability's code (and sd-scripts' ``networks/lora_sd3.py``, ComfyUI after it) keeps q/k/v fused:
a block's ``x_block.attn.qkv`` is diffusers' ``attn.to_q/to_k/to_v``, ``context_block.attn.qkv``
is ``attn.add_q_proj/add_k_proj/add_v_proj``, 3.5 Medium's ``x_block.attn2.qkv`` is
``attn2.to_q/to_k/to_v``. The last block's text stream is "pre-only" (no output projection, no
MLP) and its modulation, like ``final_layer.adaLN_modulation.1``, has its two halves (shift,
scale) swapped in diffusers. A fused file layer is one ΔW whose row ranges are the ΔW of several
diffusers layers (``(B·A)[rows] = B[rows]·A``); a :class:`~app.engine.layer_delta.Piece` says
which rows make one layer.

Names read (module keys, without the ``.lora_down.weight``-style suffix):

* kohya sd-scripts: ``lora_unet_`` + Stability's path with ``_`` (``lora_unet_joint_blocks_0_x_block_attn_qkv``)
* ComfyUI / SAI: ``diffusion_model.`` + Stability's path, or the bare path
* diffusers, peft, OneTrainer and LyCORIS names of diffusers' layers are plain per-layer names
  (:mod:`app.engine.layer_index` registers them).

The mapping follows diffusers' single-file converter
(``diffusers.loaders.single_file_utils.convert_sd3_transformer_checkpoint_to_diffusers``), with the
widths read from the loaded model instead of the real one's.
"""

from __future__ import annotations

from torch import nn

from app.engine.flux_keys import KohyaPlace, _stacked
from app.engine.layer_delta import Piece

# Stability's block layer -> the diffusers layers it is made of, in row order.
_IMAGE = {
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "x_block.attn.proj": ("attn.to_out.0",),
    "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
    "x_block.attn2.proj": ("attn2.to_out.0",),
    "x_block.mlp.fc1": ("ff.net.0.proj",),
    "x_block.mlp.fc2": ("ff.net.2",),
    "x_block.adaLN_modulation.1": ("norm1.linear",),
}
_TEXT = {
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "context_block.attn.proj": ("attn.to_add_out",),
    "context_block.mlp.fc1": ("ff_context.net.0.proj",),
    "context_block.mlp.fc2": ("ff_context.net.2",),
}
_TEXT_MOD = ("context_block.adaLN_modulation.1", "norm1_context.linear")
_GLOBAL = {
    "context_embedder": "context_embedder",
    "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
    "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
    "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
    "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
_FINAL_MOD = ("final_layer.adaLN_modulation.1", "norm_out.linear")  # (shift, scale) vs (scale, shift)


def _swapped(path: str, rows: int) -> tuple[Piece, ...]:
    half = rows // 2
    return (Piece(path, ((half, 2 * half), (0, half))),)


def sai_layers(transformer: nn.Module) -> dict[str, tuple[Piece, ...]]:
    """Every Stability layer path of this transformer's linear layers -> the diffusers layers its
    ΔW rows make."""
    modules = {p: m for p, m in transformer.named_modules() if isinstance(m, nn.Linear)}

    def rows_of(path: str) -> int:
        return int(modules[path].weight.shape[0])

    def add(name: str, paths: tuple[str, ...]) -> None:
        if all(p in modules for p in paths):
            out[name] = _stacked(paths, rows_of)

    out: dict[str, tuple[Piece, ...]] = {}
    for sai, path in _GLOBAL.items():
        add(sai, (path,))
    if _FINAL_MOD[1] in modules:
        out[_FINAL_MOD[0]] = _swapped(_FINAL_MOD[1], rows_of(_FINAL_MOD[1]))
    blocks = getattr(transformer, "transformer_blocks", ())
    for i, block in enumerate(blocks):
        for sai, paths in (_IMAGE | _TEXT).items():
            add(f"joint_blocks.{i}.{sai}", tuple(f"transformer_blocks.{i}.{p}" for p in paths))
        mod = f"transformer_blocks.{i}.{_TEXT_MOD[1]}"
        if mod in modules:
            pre_only = getattr(block, "context_pre_only", False)  # diffusers swaps its halves
            name = f"joint_blocks.{i}.{_TEXT_MOD[0]}"
            out[name] = _swapped(mod, rows_of(mod)) if pre_only else _stacked((mod,), rows_of)
    return out


def file_names(transformer: nn.Module) -> dict[str, tuple[Piece, ...]]:
    """Every module key kohya, ComfyUI and Stability-named files use for this transformer -> its pieces."""
    out: dict[str, tuple[Piece, ...]] = {}
    for sai, pieces in sai_layers(transformer).items():
        out["lora_unet_" + sai.replace(".", "_")] = pieces  # kohya sd-scripts
        out["diffusion_model." + sai] = pieces  # ComfyUI
        out[sai] = pieces  # Stability's own names
    return out


def kohya_places(transformer: nn.Module) -> dict[str, KohyaPlace]:
    """Diffusers layer path -> its place in sd-scripts' SD 3 layout (``lora_unet_joint_blocks_…``,
    q/k/v fused as Stability's model has them)."""
    out: dict[str, KohyaPlace] = {}
    for sai, pieces in sai_layers(transformer).items():
        total = sum(b - a for piece in pieces for a, b in piece.rows)
        for piece in pieces:
            out[piece.path] = KohyaPlace("lora_unet_" + sai.replace(".", "_"), piece.rows, total)
    return out
