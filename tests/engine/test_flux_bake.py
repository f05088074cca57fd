"""Baking a Flux mix writes the kohya sd-scripts Flux layout (fused q/k/v), which LoRA Loom and
diffusers read back as the mix."""

from __future__ import annotations

import flux_adapters as FA
import pytest
import torch
from safetensors import safe_open

from app.core.adapters import AdapterLayout, Part, inspect_adapter
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.baking import bake_mix
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

NOT_IN_DIFFUSERS = ("linear1", "_in_", "_in.", "img_in", "txt_in", "final_layer")


@pytest.fixture(scope="module")
def flux_pipe(tiny_flux1):
    return load_tiny_pipeline(tiny_flux1)


@pytest.fixture
def mixer(flux_pipe, tiny_flux1):
    m = AdapterMixer(flux_pipe, Family.FLUX1, base=tiny_flux1)
    yield m
    m.clear()


def _max_change(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _mix(flux_pipe, folder, skip=()):
    kohya = FA.flux_lora(flux_pipe, folder / "k.safetensors", "kohya", seed=1, skip=skip)
    # XLabs' single-block q/k/v and diffusers' single-block layers are baked into linear1
    xlabs = FA.flux_lora(flux_pipe, folder / "x.safetensors", "xlabs", seed=2, skip=skip + ("single",) if skip else ())
    plain = FA.flux_lora(flux_pipe, folder / "d.safetensors", "diffusers", seed=3, skip=("single",) if skip else ())
    return [AdapterEntry(str(kohya), 0.7), AdapterEntry(str(xlabs), -0.5), AdapterEntry(str(plain), 1.2, te_weight=0.4)]


def test_an_exact_flux_bake_is_the_mix_in_the_kohya_flux_layout(flux_pipe, mixer, tmp_path):
    base = FA.weights_of(flux_pipe)
    entries = _mix(flux_pipe, tmp_path)
    mixer.set_mix(entries)
    live = FA.weights_of(flux_pipe)
    out = tmp_path / "baked.safetensors"
    result = bake_mix(mixer, entries, out)
    assert result.exact and result.relative_error < 1e-5
    with safe_open(str(out), "pt") as f:
        keys = list(f.keys())
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in keys
    assert "lora_unet_single_blocks_1_linear1.lora_up.weight" in keys
    assert "lora_unet_final_layer_adaLN_modulation_1.alpha" in keys
    assert all(k.startswith(("lora_unet_", "lora_te1_")) for k in keys)
    assert not any("transformer_blocks" in k for k in keys)
    info = inspect_adapter(out)
    assert info.layout is AdapterLayout.KOHYA and info.family is Family.FLUX1
    assert info.parts == [Part.TRANSFORMER, Part.TEXT_ENCODER]
    assert info.metadata["modelspec.architecture"] == "flux-1-dev/lora"

    mixer.set_mix([AdapterEntry(str(out), 1.0)])
    assert _max_change(live, base) > 0.3
    assert _max_change(FA.weights_of(flux_pipe), live) < 1e-5


def test_a_baked_flux_file_loads_in_diffusers_as_the_mix(flux_pipe, mixer, tiny_flux1, tmp_path):
    entries = _mix(flux_pipe, tmp_path, skip=NOT_IN_DIFFUSERS)
    mixer.set_mix(entries)
    live = FA.weights_of(flux_pipe)
    out = tmp_path / "baked.safetensors"
    bake_mix(mixer, entries, out)
    reference = load_tiny_pipeline(tiny_flux1)
    reference.load_lora_weights(str(out), adapter_name="baked")
    reference.fuse_lora(components=["transformer", "text_encoder"], lora_scale=1.0)
    assert _max_change(FA.weights_of(reference), live) < 1e-5


def test_a_reduced_flux_bake_keeps_the_rank_asked_for_fused_layers_too(flux_pipe, mixer, tmp_path):
    entries = _mix(flux_pipe, tmp_path)
    out = tmp_path / "r2.safetensors"
    result = bake_mix(mixer, entries, out, rank=2)
    assert not result.exact and result.rank == 2 and 0.0 < result.relative_error < 1.0
    with safe_open(str(out), "pt") as f:
        ranks = {k: f.get_slice(k).get_shape()[0] for k in f.keys() if k.endswith(".lora_down.weight")}
    assert max(ranks.values()) == 2
    assert ranks["lora_unet_single_blocks_0_linear1.lora_down.weight"] == 2
    report = mixer.set_mix([AdapterEntry(str(out), 1.0)])
    assert report.refused == []
    assert torch.is_tensor(mixer.index.modules[sorted(mixer.patched_layers())[0]].weight)


def test_a_kohya_flux_file_converts_to_the_diffusers_layout_with_each_fused_layer_split(flux_pipe, mixer, tmp_path):
    from app.engine.adapter_convert import convert

    src = FA.flux_lora(flux_pipe, tmp_path / "k.safetensors", "kohya", seed=8)
    mixer.set_mix([AdapterEntry(str(src), 1.0)])
    from_kohya = FA.weights_of(flux_pipe)
    out = convert(src, tmp_path / "d.safetensors", "diffusers", mixer.index, Family.FLUX1)
    with safe_open(str(out), "pt") as f:
        assert "transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight" in f.keys()
    mixer.set_mix([AdapterEntry(str(out), 1.0)])
    assert _max_change(FA.weights_of(flux_pipe), from_kohya) < 1e-5


def test_converting_a_flux_adapter_to_the_kohya_layout_is_refused_with_a_sentence(flux_pipe, mixer, tmp_path):
    from app.engine.adapter_convert import convert
    from app.engine.adapter_formats import IncompatibleAdapter

    src = FA.flux_lora(flux_pipe, tmp_path / "x.safetensors", "xlabs", seed=9)
    with pytest.raises(IncompatibleAdapter) as err:
        convert(src, tmp_path / "k.safetensors", "kohya", mixer.index, Family.FLUX1)
    assert str(err.value) == (
        f"{src}: a transformer (Flux) adapter cannot be rewritten in the kohya layout, which fuses its "
        "q/k/v layers; use --to diffusers, or bake it (the baked file is in the kohya Flux layout)"
    )
    assert not (tmp_path / "k.safetensors").exists()
