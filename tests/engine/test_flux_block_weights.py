"""Block weights (``lbw=``, the extension's FLUX vector) through real renders of the tiny Flux
(2 double, 2 single blocks): a vector that zeroes D00 renders exactly as the same LoRA with its
D00 layers left out of the file, in the kohya layout (fused q/k/v) and the diffusers one."""

from __future__ import annotations

import flux_adapters as FA
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from app.core.configs import GenerateRequest
from app.core.families import spec
from app.engine.rendering import Renderer

BLOCKS = spec("flux1").blocks
# The file's layers of the first double block, by layout (kohya fuses q/k/v: img_attn_qkv).
D00_KEYS = {"kohya": "lora_unet_double_blocks_0_", "diffusers": "transformer.transformer_blocks.0."}


def _vector(**values: float) -> str:
    return ",".join(str(values.get(b, 1)) for b in BLOCKS)


def _request(base, path=None, lbw: str = "") -> GenerateRequest:
    adapters = [{"path": str(path), "weight": 1.0, "lbw": lbw}] if path else []
    return GenerateRequest.from_dict(
        dict(base=str(base), prompt="a red square", seed=3, steps=2, width=64, height=64, adapters=adapters)
    )


def _picture(renderer: Renderer, request: GenerateRequest, out) -> np.ndarray:
    return np.asarray(Image.open(renderer.render(request, out_path=out).path).convert("RGB"))


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["kohya", "diffusers"])
def test_a_vector_zeroing_d00_renders_as_the_lora_without_its_d00_layers(tiny_flux1, tmp_path, layout):
    renderer = Renderer()
    renderer.ensure_model(_request(tiny_flux1).model_spec())
    pipe = renderer.loaded.pipe
    full = FA.flux_lora(pipe, tmp_path / "full.safetensors", layout, seed=4, sigma=2.0)
    tensors = load_file(str(full))
    d00 = [k for k in tensors if k.startswith(D00_KEYS[layout])]
    assert d00 and (layout != "kohya" or any("_img_attn_qkv." in k for k in d00))
    without = tmp_path / "without-d00.safetensors"
    save_file(
        {k: v for k, v in tensors.items() if k not in d00}, str(without), metadata={"ss_base_model_version": "flux1"}
    )

    zeroed = _picture(renderer, _request(tiny_flux1, full, _vector(D00=0)), tmp_path / "zeroed.png")
    weights_zeroed = FA.weights_of(pipe)
    dropped = _picture(renderer, _request(tiny_flux1, without), tmp_path / "dropped.png")
    weights_dropped = FA.weights_of(pipe)
    whole = _picture(renderer, _request(tiny_flux1, full), tmp_path / "whole.png")
    assert renderer.loaded.family.value == "flux1"
    assert all(weights_zeroed[k].equal(weights_dropped[k]) for k in weights_zeroed)  # the same weights, bit for bit
    assert np.array_equal(zeroed, dropped)
    assert not np.array_equal(whole, zeroed)  # D00 mattered: the vector did something


@pytest.mark.slow
def test_single_block_and_text_factors_scale_only_their_layers(tiny_flux1, tmp_path):
    """S01 at 0.5 and CLIP at 0 move only the second single block's and CLIP's layers."""
    renderer = Renderer()
    renderer.ensure_model(_request(tiny_flux1).model_spec())
    pipe = renderer.loaded.pipe
    base = FA.weights_of(pipe)
    path = FA.flux_lora(pipe, tmp_path / "k.safetensors", "kohya", seed=5)
    renderer.set_adapters(_request(tiny_flux1, path).adapter_entries())
    full = FA.weights_of(pipe)
    renderer.set_adapters(_request(tiny_flux1, path, _vector(S01=0.5, CLIP=0)).adapter_entries())
    shaped = FA.weights_of(pipe)
    renderer.set_adapters([])
    moved = {
        n.split(".")[0] + ("S01" if ".single_transformer_blocks.1." in n else "")
        for n in base
        if not full[n].equal(base[n])
    }
    assert {"transformerS01", "text_encoder"} <= moved
    for name, w0 in base.items():
        if name.startswith("transformer.single_transformer_blocks.1."):
            if not full[name].equal(w0):
                assert (shaped[name] - w0).allclose((full[name] - w0) * 0.5, atol=1e-6), name
        elif name.startswith("text_encoder."):
            assert shaped[name].equal(w0), name
        else:
            assert shaped[name].equal(full[name]), name
