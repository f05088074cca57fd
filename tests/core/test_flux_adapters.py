"""Flux.1 adapter headers: every common layout is named, its parts and family told from the
names alone, and a Flux file on an SD base (or the reverse) is refused in one sentence."""

from __future__ import annotations

import pytest

from app.core.adapters import AdapterLayout, NetworkType, Part, inspect_adapter
from app.core.families import Family
from tests.core.test_adapters import kohya_sd1, write

RANK = 16


def _pair(module: str, down: str, up: str, width: int = 3072, out: int = 9216) -> dict:
    return {f"{module}{down}": ([RANK, width], "F16"), f"{module}{up}": ([out, RANK], "F16")}


# One file per layout, with the key names each tool writes (sd-scripts networks/lora_flux.py,
# diffusers/ai-toolkit, ComfyUI/BFL, XLabs' flux-lora trainer, OneTrainer).
LAYOUTS = {
    "kohya": (
        AdapterLayout.KOHYA,
        {
            **_pair("lora_unet_double_blocks_0_img_attn_qkv", ".lora_down.weight", ".lora_up.weight"),
            **_pair("lora_unet_single_blocks_3_linear1", ".lora_down.weight", ".lora_up.weight", out=21504),
            **_pair(
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
                ".lora_down.weight",
                ".lora_up.weight",
                768,
                768,
            ),
        },
        [Part.TRANSFORMER, Part.TEXT_ENCODER],
    ),
    "diffusers": (
        AdapterLayout.DIFFUSERS,
        _pair("transformer.transformer_blocks.0.attn.to_q", ".lora_A.weight", ".lora_B.weight", out=3072),
        [Part.TRANSFORMER],
    ),
    "bfl": (
        AdapterLayout.COMFY,
        _pair("diffusion_model.double_blocks.0.img_attn.qkv", ".lora_A.weight", ".lora_B.weight"),
        [Part.TRANSFORMER],
    ),
    "xlabs": (
        AdapterLayout.XLABS,
        _pair("double_blocks.0.processor.qkv_lora1", ".down.weight", ".up.weight"),
        [Part.TRANSFORMER],
    ),
    "onetrainer": (
        AdapterLayout.KOHYA,  # OneTrainer's names are kohya-style
        _pair("lora_transformer_transformer_blocks_0_attn_to_q", ".lora_down.weight", ".lora_up.weight", out=3072),
        [Part.TRANSFORMER],
    ),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_flux_layout_is_named_with_its_family_rank_and_parts(name, tmp_path):
    layout, tensors, parts = LAYOUTS[name]
    info = inspect_adapter(write(tmp_path / f"{name}.safetensors", tensors))
    assert info.layout is layout
    assert info.family is Family.FLUX1, info.family_evidence
    assert info.network is NetworkType.LORA and info.rank == RANK
    assert info.parts == parts and info.modules == len(tensors) // 2
    assert "Flux.1's" in info.family_evidence


def test_trigger_words_come_from_the_metadata_as_for_sd(tmp_path):
    layout, tensors, _ = LAYOUTS["kohya"]
    meta = {"ss_base_model_version": "flux1", "modelspec.trigger_phrase": "ohwx dog"}
    info = inspect_adapter(write(tmp_path / "k.safetensors", tensors, meta))
    assert info.family is Family.FLUX1 and info.trigger_words == ["ohwx dog"]
    assert info.family_evidence == "metadata ss_base_model_version = flux1"


def test_a_flux_adapter_on_an_sd_base_and_the_reverse_are_refused_in_one_sentence(tmp_path):
    flux = inspect_adapter(write(tmp_path / "flux.safetensors", LAYOUTS["kohya"][1]))
    sd = inspect_adapter(write(tmp_path / "sd.safetensors", kohya_sd1(), {"ss_base_model_version": "sd_v1"}))
    assert flux.family_mismatch(Family.SD1) == (
        f"{flux.path}: made for Flux.1, but the base model is SD 1.x; pick a Flux.1 base model for it"
    )
    assert sd.family_mismatch(Family.FLUX1) == (
        f"{sd.path}: made for SD 1.x, but the base model is Flux.1; pick a SD 1.x base model for it"
    )
    assert flux.family_mismatch(Family.FLUX1) is None and sd.family_mismatch(None) is None


def test_loraloom_inspect_names_the_flux_layout_network_rank_parts_and_trigger_words(tmp_path, capsys):
    import json

    from app.cli import main

    meta = {"modelspec.architecture": "flux-1-dev/lora", "modelspec.trigger_phrase": "ohwx dog"}
    path = write(tmp_path / "xlabs.safetensors", LAYOUTS["xlabs"][1], meta)
    assert main(["inspect", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["layout"], out["network"], out["family"], out["rank"]) == ("xlabs", "lora", "flux1", RANK)
    assert out["parts"] == ["transformer"] and out["trigger_words"] == ["ohwx dog"]
