"""SD 3.x on its tiny model (StableDiffusion3Pipeline, 3.5 Medium's block kinds): renders, LoRAs of
the diffusers and sd-scripts/ComfyUI (fused q/k/v) layouts mixed by weight patching, exact at weight
0 and equal to diffusers' own loader at weight 1, the family told from names, wrong-family refusals."""

from __future__ import annotations

import flux_adapters as FA
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from app.core import families
from app.core.adapters import Part, inspect_adapter
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine import sd3_keys
from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex, read_adapter
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

RANK = 4


@pytest.fixture(scope="module")
def sd3_dir(tiny_model):
    return tiny_model("sd3")


@pytest.fixture(scope="module")
def sd3_pipe(sd3_dir):
    return load_tiny_pipeline(sd3_dir)


def _diffusers_lora(pipe, seed: int) -> dict[str, torch.Tensor]:
    """A diffusers-layout LoRA (``transformer.<path>.lora_A/B.weight``) on every joint-block linear layer."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, module in pipe.transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith("transformer_blocks."):
            rows, cols = module.weight.shape
            out[f"transformer.{name}.lora_A.weight"] = torch.randn(RANK, cols, generator=gen) * 0.3
            out[f"transformer.{name}.lora_B.weight"] = torch.randn(rows, RANK, generator=gen) * 0.3
    return out


def _kohya_lora(pipe, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An sd-scripts SD 3 file (Stability's fused layers) and the same change split into diffusers'
    layers (q/k/v in diffusers' converter's order: the fused rows chunked in three)."""
    gen = torch.Generator().manual_seed(seed)
    kohya, split = {}, {}
    for sai, pieces in sd3_keys.sai_layers(pipe.transformer).items():
        if not sai.startswith("joint_blocks.") or "adaLN" in sai:
            continue
        module = pipe.transformer.get_submodule(pieces[0].path)
        rows = sum(b - a for p in pieces for a, b in p.rows)
        down = torch.randn(RANK, module.weight.shape[1], generator=gen) * 0.3
        up = torch.randn(rows, RANK, generator=gen) * 0.3
        name = "lora_unet_" + sai.replace(".", "_")
        kohya[f"{name}.lora_down.weight"], kohya[f"{name}.lora_up.weight"] = down, up
        kohya[f"{name}.alpha"] = torch.tensor(float(RANK))
        for piece, part in zip(pieces, up.chunk(len(pieces))):
            split[f"transformer.{piece.path}.lora_A.weight"] = down.clone()
            split[f"transformer.{piece.path}.lora_B.weight"] = part.contiguous()
    return kohya, split


def _max_change(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_the_tiny_model_renders_with_cfg_and_a_negative_prompt(sd3_pipe):
    assert type(sd3_pipe).__name__ == "StableDiffusion3Pipeline"
    img = FA.render_np(sd3_pipe)
    assert img.shape == (64, 64, 3) and np.isfinite(img).all() and float(img.std()) > 0.01
    assert families.by_pipeline_class("StableDiffusion3Pipeline") == (Family.SD3,)


def test_weight_zero_is_exact_and_weight_one_is_diffusers_load_lora_weights(sd3_pipe, sd3_dir, tmp_path):
    path = tmp_path / "d.safetensors"
    save_file(_diffusers_lora(sd3_pipe, seed=1), str(path))
    base, base_img = FA.weights_of(sd3_pipe), FA.render_np(sd3_pipe)
    mixer = AdapterMixer(sd3_pipe, Family.SD3, base=sd3_dir)
    try:
        assert mixer.set_mix([AdapterEntry(str(path), 0.0)]).refused == []
        assert _max_change(FA.weights_of(sd3_pipe), base) == 0.0
        assert np.array_equal(FA.render_np(sd3_pipe), base_img)
        report = mixer.set_mix([AdapterEntry(str(path), 1.0)])
        assert report.refused == [] and report.warnings == []
        ours = FA.weights_of(sd3_pipe)
    finally:
        mixer.clear()
    assert _max_change(FA.weights_of(sd3_pipe), base) == 0.0  # W0 back bit for bit
    reference = load_tiny_pipeline(sd3_dir)
    reference.load_lora_weights(str(path), adapter_name="d")
    reference.fuse_lora(components=["transformer"], lora_scale=1.0)
    theirs = FA.weights_of(reference)
    assert _max_change(theirs, base) > 0.3 and _max_change(ours, theirs) < 1e-5


@pytest.mark.parametrize("prefix", ["kohya", "comfy"])
def test_fused_stability_layers_match_the_split_file_in_diffusers(sd3_pipe, sd3_dir, tmp_path, prefix):
    kohya, split = _kohya_lora(sd3_pipe, seed=2)
    if prefix == "comfy":  # ComfyUI: diffusion_model. + Stability's dotted path, peft-style roles
        kohya = {
            "diffusion_model." + next(s for s in sd3_keys.sai_layers(sd3_pipe.transformer)
                                      if "lora_unet_" + s.replace(".", "_") == k.split(".")[0])
            + "." + k.split(".", 1)[1]: v
            for k, v in kohya.items()
        }  # fmt: skip
    path, split_path = tmp_path / "k.safetensors", tmp_path / "s.safetensors"
    save_file(kohya, str(path))
    save_file(split, str(split_path))
    info = inspect_adapter(path)
    assert info.family is Family.SD3 and info.parts == [Part.TRANSFORMER], info.family_evidence
    mixer = AdapterMixer(sd3_pipe, Family.SD3, base=sd3_dir)
    try:
        report = mixer.set_mix([AdapterEntry(str(path), 1.0)])
        assert report.refused == [] and report.warnings == []
        ours = FA.weights_of(sd3_pipe)
    finally:
        mixer.clear()
    reference = load_tiny_pipeline(sd3_dir)
    reference.load_lora_weights(str(split_path), adapter_name="s")
    reference.fuse_lora(components=["transformer"], lora_scale=1.0)
    assert _max_change(ours, FA.weights_of(reference)) < 1e-5


def test_sd3_and_sd1_adapters_are_refused_on_each_other(sd3_pipe, sd1_pipe, rgb, tmp_path):
    path = tmp_path / "sd3.safetensors"
    save_file(_kohya_lora(sd3_pipe, seed=3)[0], str(path))
    with pytest.raises(IncompatibleAdapter, match="made for SD 3.x, but the base model is SD 1.x"):
        read_adapter(path, LayerIndex(sd1_pipe), Family.SD1)
    with pytest.raises(IncompatibleAdapter, match="made for SD 1.x, but the base model is SD 3.x"):
        read_adapter(rgb["red"], LayerIndex(sd3_pipe), Family.SD3)


def test_family_names_and_hub_guesses():
    assert families.by_adapter_names(["transformer.transformer_blocks.0.attn2.to_q.lora_A.weight"])[0] is Family.SD3
    assert families.by_adapter_names(["transformer.transformer_blocks.23.attn.to_q.lora_A.weight"])[0] is Family.SD3
    flux_like = ["transformer.transformer_blocks.3.attn.to_q.lora_A.weight"]  # ambiguous: Flux's fallback
    assert families.by_adapter_names(flux_like) is None
    assert families.by_base_version("5-large") is Family.SD3
    assert families.by_architecture("stable-diffusion-3-5-medium/lora") is Family.SD3
    assert families.guess_from_name("me/sd3.5-anime") is Family.SD3
    assert families.by_hub_base("stabilityai/stable-diffusion-3.5-large") is Family.SD3
