"""T5-XXL LoRA layers in Flux files (sd-scripts' ``lora_te3_``, ComfyUI's ``text_encoders.t5xxl.``,
diffusers' ``text_encoder_2.``) are patched into the T5 encoder. diffusers' Flux loader drops T5
layers, so the truth is the T5 forward with the same LoRA applied by peft."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import save_file

from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

_LAYERS = ("encoder.block.0.layer.0.SelfAttention.q", "encoder.block.1.layer.1.DenseReluDense.wo")


@pytest.fixture(scope="module")
def flux_pipe(tiny_flux1):
    return load_tiny_pipeline(tiny_flux1)


@pytest.mark.parametrize("layout", ["kohya", "comfy", "diffusers"])
def test_t5_lora_layers_match_peft(flux_pipe, tiny_flux1, tmp_path, layout):
    pipe = flux_pipe
    t5 = pipe.text_encoder_2
    gen = torch.Generator().manual_seed(1)
    rank, alpha, tensors, factors = 2, 4.0, {}, {}
    for path in _LAYERS:
        layer = t5.get_submodule(path)
        down = torch.randn(rank, layer.in_features, generator=gen) * 0.5
        up = torch.randn(layer.out_features, rank, generator=gen) * 0.5
        factors[path] = (down, up)
        if layout == "kohya":
            key = "lora_te3_" + path.replace(".", "_")
            tensors.update(
                {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(alpha)}
            )
        elif layout == "comfy":
            key = "text_encoders.t5xxl.transformer." + path
            tensors.update(
                {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(alpha)}
            )
        else:
            key = "text_encoder_2." + path
            tensors.update({f"{key}.lora_A.weight": down, f"{key}.lora_B.weight": up * alpha / rank})
    # a transformer layer too (zero up: no effect), as Flux LoRA files have: it tells their family
    inner = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    zero = {
        "kohya": "lora_unet_double_blocks_0_img_attn_proj",
        "comfy": "diffusion_model.double_blocks.0.img_attn.proj",
    }
    if layout in zero:
        tensors[f"{zero[layout]}.lora_down.weight"] = torch.ones(rank, inner)
        tensors[f"{zero[layout]}.lora_up.weight"] = torch.zeros(inner, rank)
    else:
        tensors["transformer.transformer_blocks.0.attn.to_out.0.lora_A.weight"] = torch.ones(rank, inner)
        tensors["transformer.transformer_blocks.0.attn.to_out.0.lora_B.weight"] = torch.zeros(inner, rank)
    file = tmp_path / f"t5-{layout}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(file))

    reference = copy.deepcopy(t5)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(_LAYERS)), reference)
    for path, (down, up) in factors.items():
        mod = reference.get_submodule(path)
        mod.lora_A["default"].weight.data.copy_(down)
        mod.lora_B["default"].weight.data.copy_(up)
    ids = pipe.tokenizer_2("a red square", return_tensors="pt").input_ids
    with torch.no_grad():
        before = t5(ids)[0]
        expected = reference(ids)[0]
    mixer = AdapterMixer(pipe, Family.FLUX1, base=tiny_flux1)
    report = mixer.set_mix([AdapterEntry(str(file), 1.0)])
    with torch.no_grad():
        got = t5(ids)[0]
    assert (expected - before).abs().max() > 1e-3  # the LoRA changes the T5 features
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not getattr(report, "skipped", None)
    mixer.clear()
    with torch.no_grad():
        assert torch.equal(t5(ids)[0], before)
