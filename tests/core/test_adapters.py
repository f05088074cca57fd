"""Adapter inspection from the safetensors header, for every layout we read."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from app.core.adapters import AdapterError, AdapterLayout, NetworkType, Part, inspect_adapter
from app.core.families import Family


def write(path, tensors: dict[str, tuple[list[int], str]], metadata: dict | None = None, alpha_values=None):
    """Tensors as name -> (shape, dtype); data zeros except alpha scalars."""
    header, offset, blobs = {}, 0, []
    sizes = {"F32": 4, "F16": 2}
    for name, (shape, dtype) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        blob = b"\0" * n
        if alpha_values and name in alpha_values:
            blob = struct.pack("<f", alpha_values[name])
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return path


def kohya_sd1(rank=4):
    mod = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    return {
        f"{mod}.lora_down.weight": ([rank, 768], "F32"),
        f"{mod}.lora_up.weight": ([320, rank], "F32"),
        f"{mod}.alpha": ([], "F32"),
        f"{te}.lora_down.weight": ([rank, 768], "F32"),
        f"{te}.lora_up.weight": ([768, rank], "F32"),
        f"{te}.alpha": ([], "F32"),
    }


def test_kohya_sd1_with_alpha_from_the_tensor(tmp_path):
    f = write(
        tmp_path / "red.safetensors", kohya_sd1(), alpha_values={k: 2.0 for k in kohya_sd1() if k.endswith(".alpha")}
    )
    info = inspect_adapter(f)
    assert (info.layout, info.network, info.family) == (AdapterLayout.KOHYA, NetworkType.LORA, Family.SD1)
    assert info.rank == 4 and info.alpha == 2.0
    assert info.parts == [Part.UNET, Part.TEXT_ENCODER] and info.modules == 2
    assert info.title == "red"


def test_metadata_trigger_words_sidecars_and_preview(tmp_path):
    tags = json.dumps({"10_sks": {"sks": 20, "red": 15, "solo": 3, "blue": 1}})
    f = write(
        tmp_path / "char.safetensors",
        kohya_sd1(8),
        {
            "ss_base_model_version": "sd_v1",
            "ss_network_alpha": "4.0",
            "ss_tag_frequency": tags,
            "ss_output_name": "mychar",
        },
    )
    info = inspect_adapter(f)
    assert info.trigger_words == ["sks", "red", "solo"] and info.alpha == 4.0 and info.title == "mychar"
    assert info.preview is None
    (tmp_path / "char.json").write_text(json.dumps({"activation text": "mychar, red hair"}))
    (tmp_path / "char.preview.png").write_bytes(b"\x89PNG")
    info = inspect_adapter(f)
    assert info.trigger_words == ["mychar", "red hair"]
    assert info.preview == tmp_path / "char.preview.png"
    assert inspect_adapter(f, card_data={"instance_prompt": "photo of sks dog"}).trigger_words[-1] == "photo of sks dog"


def test_modelspec_trigger_and_embedded_cover(tmp_path):
    cover = base64.b64encode(b"\x89PNG fake").decode()
    f = write(
        tmp_path / "s.safetensors",
        kohya_sd1(),
        {
            "modelspec.trigger_phrase": "zzstyle",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
            "modelspec.thumbnail": f"data:image/png;base64,{cover}",
            "modelspec.title": "Z Style",
        },
    )
    info = inspect_adapter(f)
    assert info.trigger_words == ["zzstyle"] and info.family is Family.SDXL and info.title == "Z Style"
    assert info.preview_bytes == b"\x89PNG fake"


def test_sdxl_from_te2_and_sgm_names(tmp_path):
    f = write(
        tmp_path / "xl.safetensors",
        {
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": ([16, 2048], "F16"),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": ([640, 16], "F16"),
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ([16, 1280], "F16"),
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": ([1280, 16], "F16"),
        },
    )
    info = inspect_adapter(f)
    assert info.family is Family.SDXL and info.rank == 16
    assert info.parts == [Part.UNET, Part.TEXT_ENCODER_2]


@pytest.mark.parametrize("width, family", [(768, Family.SD1), (1024, Family.SD2), (2048, Family.SDXL)])
def test_family_from_cross_attention_width_in_diffusers_layout(tmp_path, width, family):
    mod = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v"
    f = write(
        tmp_path / "d.safetensors",
        {f"{mod}.lora_A.weight": ([4, width], "F32"), f"{mod}.lora_B.weight": ([640, 4], "F32")},
    )
    info = inspect_adapter(f)
    assert info.layout is AdapterLayout.DIFFUSERS and info.family is family and info.alpha is None


def test_peft_layout(tmp_path):
    mod = "base_model.model.mid_block.attentions.0.transformer_blocks.0.attn1.to_q"
    f = write(
        tmp_path / "p.safetensors", {f"{mod}.lora_A.weight": ([4, 32], "F32"), f"{mod}.lora_B.weight": ([32, 4], "F32")}
    )
    info = inspect_adapter(f)
    assert info.layout is AdapterLayout.PEFT and info.family is None and info.rank == 4


@pytest.mark.parametrize(
    "suffixes, network",
    [
        ({"hada_w1_a": [32, 4], "hada_w1_b": [4, 320], "hada_w2_a": [32, 4], "hada_w2_b": [4, 320]}, NetworkType.LOHA),
        ({"lokr_w1": [4, 4], "lokr_w2": [80, 80]}, NetworkType.LOKR),
        ({"lora_down.weight": [4, 320], "lora_up.weight": [320, 4], "dora_scale": [320, 1]}, NetworkType.DORA),
        ({"lora_down.weight": [4, 320, 3, 3], "lora_up.weight": [320, 4, 1, 1]}, NetworkType.LOCON),
        (
            {"lora_down.weight": [4, 320, 1, 1], "lora_mid.weight": [4, 4, 3, 3], "lora_up.weight": [320, 4, 1, 1]},
            NetworkType.LOCON,
        ),
    ],
)
def test_network_types(tmp_path, suffixes, network):
    mod = "lora_unet_down_blocks_0_resnets_0_conv1"
    f = write(tmp_path / "n.safetensors", {f"{mod}.{s}": (shape, "F32") for s, shape in suffixes.items()})
    info = inspect_adapter(f)
    assert info.network is network
    if network in (NetworkType.LOHA, NetworkType.LOKR):
        assert info.layout is AdapterLayout.LYCORIS


def test_refusals_name_the_file(tmp_path):
    not_lora = write(tmp_path / "vae.safetensors", {"decoder.conv_in.weight": ([4, 4], "F32")})
    with pytest.raises(AdapterError, match="not a LoRA adapter") as info:
        inspect_adapter(not_lora)
    assert str(not_lora) in str(info.value)

    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"\x80\x04not unpickled")
    with pytest.raises(AdapterError, match="pickle files"):
        inspect_adapter(pickle)

    full = write(tmp_path / "cut.safetensors", kohya_sd1())
    full.write_bytes(full.read_bytes()[:-40])
    with pytest.raises(AdapterError, match="truncated"):
        inspect_adapter(full)

    hostile = tmp_path / "hostile.safetensors"
    hostile.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(AdapterError, match="absurd"):
        inspect_adapter(hostile)
