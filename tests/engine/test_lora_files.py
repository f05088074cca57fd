"""kohya naming both ways, true float32 alpha, metadata, atomic writes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import fail_writes_half_way

from app.core.families import Family
from app.core.safetensors_header import read_header
from app.engine import lora_files as lf

UNET_PATHS = [
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.attentions.0.proj_in",
    "mid_block.resnets.0.conv1",
    "up_blocks.1.upsamplers.0.conv",
]
TE_PATHS = ["encoder.layers.0.self_attn.q_proj", "encoder.layers.1.mlp.fc1"]  # transformers 5 CLIPTextModel


def test_kohya_names_and_the_reverse_lookup():
    assert (
        lf.kohya_key("lora_unet", UNET_PATHS[0])
        == "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    )
    assert (
        lf.kohya_key("lora_te1_", lf.te_module_path(TE_PATHS[0]))
        == "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    )
    index = lf.kohya_index(lf.UNET, UNET_PATHS)
    assert all(index[lf.kohya_key(lf.UNET, p)] == p for p in UNET_PATHS)
    assert (
        lf.module_path_for("lora_unet_mid_block_resnets_0_conv1.lora_down.weight", UNET_PATHS)
        == "mid_block.resnets.0.conv1"
    )
    assert lf.module_path_for("lora_te_text_model_encoder_layers_1_mlp_fc1.alpha", TE_PATHS) == TE_PATHS[1]
    assert lf.module_path_for("lora_unet_nowhere_to_q", UNET_PATHS) is None
    assert lf.te_prefixes(Family.SDXL) == ("lora_te1", "lora_te2") and lf.te_prefixes("sd1") == ("lora_te",)


def test_peft_state_becomes_kohya_with_true_float32_alpha_and_back():
    peft_state = {
        f"{UNET_PATHS[0]}.lora_A.weight": torch.randn(4, 32),
        f"{UNET_PATHS[0]}.lora_B.weight": torch.randn(32, 4),
        f"{UNET_PATHS[1]}.lora_A.weight": torch.randn(4, 32, 1, 1),
        f"{UNET_PATHS[1]}.lora_B.weight": torch.randn(32, 4, 1, 1),
    }
    alphas = {UNET_PATHS[0]: 2.5, UNET_PATHS[1]: 4.0}
    kohya = lf.peft_to_kohya(peft_state, lf.UNET, alphas)
    name = lf.kohya_key(lf.UNET, UNET_PATHS[0])
    assert set(kohya) == {
        f"{lf.kohya_key(lf.UNET, p)}.{part}"
        for p in UNET_PATHS[:2]
        for part in ("lora_down.weight", "lora_up.weight", "alpha")
    }
    assert kohya[f"{name}.alpha"].dtype == torch.float32 and kohya[f"{name}.alpha"].item() == 2.5
    assert kohya[f"{name}.alpha"].dim() == 0
    assert kohya[f"{lf.kohya_key(lf.UNET, UNET_PATHS[1])}.lora_down.weight"].shape == (4, 32, 1, 1)
    back, back_alphas = lf.kohya_to_peft(kohya, lf.UNET, UNET_PATHS)
    assert back_alphas == alphas
    assert all(torch.equal(back[k], v) for k, v in peft_state.items())
    with pytest.raises(ValueError, match="no alpha"):
        lf.peft_to_kohya(peft_state, lf.UNET, {})


def test_save_writes_metadata_and_refuses_foreign_keys(tmp_path):
    info = lf.AdapterInfo(
        family=Family.SDXL,
        name="mychar",
        rank=16,
        alpha=8.0,
        resolution=(1024, 1024),
        steps=500,
        epoch=3,
        learning_rate=1e-4,
        optimizer="adamw",
        trigger="ohwx",
        tag_frequency={"1_pics": {"ohwx": 20}},
    )
    tensors = {"lora_unet_x.lora_down.weight": torch.zeros(2, 3), "lora_unet_x.alpha": torch.tensor(8.0)}
    path = lf.save_kohya(tmp_path / "a.safetensors", tensors, lf.build_metadata(info))
    meta = read_header(path).metadata
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["ss_network_dim"] == "16" and meta["ss_network_alpha"] == "8.0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["modelspec.trigger_phrase"] == "ohwx" and meta["ss_resolution"] == "(1024, 1024)"
    assert '"ohwx": 20' in meta["ss_tag_frequency"]
    assert load_file(str(path))["lora_unet_x.alpha"].item() == 8.0
    with pytest.raises(ValueError, match="not a kohya LoRA key"):
        lf.save_kohya(tmp_path / "b.safetensors", {"unet.x.lora_A.weight": torch.zeros(1)}, {})
    assert not (tmp_path / "b.safetensors").exists()


def test_a_failure_mid_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "a.safetensors"
    lf.save_kohya(path, {"lora_unet_x.alpha": torch.tensor(1.0)}, {"v": "1"})
    before = path.read_bytes()
    fail_writes_half_way(monkeypatch)  # Ctrl+C in the middle of the write
    with pytest.raises(KeyboardInterrupt):
        lf.save_kohya(path, {"lora_unet_x.alpha": torch.tensor(2.0)}, {"v": "2"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]
