"""Flux.1 transformer tensor names and shapes in Black Forest Labs' layout (``flux/model.py``:
``double_blocks.N.img_attn.qkv``…), the names the files ComfyUI and Forge keep carry, for a
FluxTransformer2DModel config. Checked against diffusers' own BFL -> diffusers converter."""

from __future__ import annotations


def bfl_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    heads, head_dim = config["num_attention_heads"], config["attention_head_dim"]
    inner, mlp = heads * head_dim, 4 * heads * head_dim
    out = config.get("out_channels") or config["in_channels"]
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, n_out: int, n_in: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (n_out, n_in), (n_out,)

    linear("img_in", inner, config["in_channels"])
    linear("txt_in", inner, config["joint_attention_dim"])
    embedders = [("time_in", 256), ("vector_in", config["pooled_projection_dim"])]
    if config.get("guidance_embeds", True):
        embedders.append(("guidance_in", 256))
    for name, width in embedders:
        linear(f"{name}.in_layer", inner, width)
        linear(f"{name}.out_layer", inner, inner)
    for i in range(config["num_layers"]):
        for stream in ("img", "txt"):
            b = f"double_blocks.{i}.{stream}"
            linear(f"{b}_mod.lin", 6 * inner, inner)
            linear(f"{b}_attn.qkv", 3 * inner, inner)
            linear(f"{b}_attn.proj", inner, inner)
            shapes[f"{b}_attn.norm.query_norm.scale"] = shapes[f"{b}_attn.norm.key_norm.scale"] = (head_dim,)
            linear(f"{b}_mlp.0", mlp, inner)
            linear(f"{b}_mlp.2", inner, mlp)
    for i in range(config["num_single_layers"]):
        b = f"single_blocks.{i}"
        linear(f"{b}.linear1", 3 * inner + mlp, inner)
        linear(f"{b}.linear2", inner, inner + mlp)
        linear(f"{b}.modulation.lin", 3 * inner, inner)
        shapes[f"{b}.norm.query_norm.scale"] = shapes[f"{b}.norm.key_norm.scale"] = (head_dim,)
    linear("final_layer.linear", config["patch_size"] ** 2 * out, inner)
    linear("final_layer.adaLN_modulation.1", 2 * inner, inner)
    return shapes
