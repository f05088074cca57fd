"""Block-weight specs expand as the LoRA Block Weight extension expands them; lbw= travels in PNGs and --lora."""

from __future__ import annotations

import pytest

from app.core import block_weights as bw
from app.core.configs import AdapterEntry, ConfigError, GenerateRequest, parse_lora_arg
from app.core.families import Family, spec
from app.core.pngmeta import format_parameters, parse_parameters

# hako-mikan/sd-webui-lora-block-weight, scripts/lora_block_weight.py: BLOCKID26, BLOCKID17,
# BLOCKID12 and BLOCKID20 ("M00" there is our "MID"), written out here from that file.
EXT_BLOCKID26 = [
    "BASE",
    "IN00",
    "IN01",
    "IN02",
    "IN03",
    "IN04",
    "IN05",
    "IN06",
    "IN07",
    "IN08",
    "IN09",
    "IN10",
    "IN11",
    "M00",
    "OUT00",
    "OUT01",
    "OUT02",
    "OUT03",
    "OUT04",
    "OUT05",
    "OUT06",
    "OUT07",
    "OUT08",
    "OUT09",
    "OUT10",
    "OUT11",
]
EXT_BLOCKID17 = [
    "BASE",
    "IN01",
    "IN02",
    "IN04",
    "IN05",
    "IN07",
    "IN08",
    "M00",
    "OUT03",
    "OUT04",
    "OUT05",
    "OUT06",
    "OUT07",
    "OUT08",
    "OUT09",
    "OUT10",
    "OUT11",
]
EXT_BLOCKID12 = ["BASE", "IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05"]
EXT_BLOCKID20 = [
    "BASE",
    "IN00",
    "IN01",
    "IN02",
    "IN03",
    "IN04",
    "IN05",
    "IN06",
    "IN07",
    "IN08",
    "M00",
    "OUT00",
    "OUT01",
    "OUT02",
    "OUT03",
    "OUT04",
    "OUT05",
    "OUT06",
    "OUT07",
    "OUT08",
]

# The same file's DEF_WEIGHT_PRESET (and the README's "Fun Usage" table): name -> 17 values.
EXT_PRESETS = {
    "NONE": [0] * 17,
    "ALL": [1] * 17,
    "INS": [1, 1, 1, 1] + [0] * 13,
    "IND": [1, 0, 0, 0, 1, 1, 1] + [0] * 10,
    "INALL": [1] * 7 + [0] * 10,
    "MIDD": [1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    "OUTD": [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0],
    "OUTS": [1] + [0] * 11 + [1] * 5,
    "OUTALL": [1] + [0] * 7 + [1] * 9,
    "ALL0.5": [0.5] * 17,
    "FLUXALL": [1] * 61,
}

# The expected 26-slot vectors written by hand from the tables above (the extension's to26:
# each value goes to its block's slot, every other slot is 0).
MIDD_26 = {"BASE": 1, "IN05": 1, "IN07": 1, "IN08": 1, "M00": 1, "OUT03": 1, "OUT04": 1, "OUT05": 1, "OUT06": 1}
OUTS_26 = {"BASE": 1, "OUT07": 1, "OUT08": 1, "OUT09": 1, "OUT10": 1, "OUT11": 1}


def _ours(name: str) -> str:
    return "MID" if name == "M00" else name


def _expected(slots: dict[str, float], family: Family) -> tuple[float, ...]:
    return tuple(float(slots.get("M00" if b == "MID" else b, 0)) for b in spec(family).blocks)


def test_family_block_lists_are_the_extensions():
    assert spec(Family.SD1).blocks == tuple(_ours(b) for b in EXT_BLOCKID26)
    assert spec(Family.SD2).blocks == tuple(_ours(b) for b in EXT_BLOCKID26)
    assert spec(Family.SDXL).blocks == tuple(_ours(b) for b in EXT_BLOCKID20)
    assert tuple(_ours(b) for b in EXT_BLOCKID17) == bw.FORM17
    assert tuple(_ours(b) for b in EXT_BLOCKID12) == bw.FORM12
    assert bw.accepted_lengths(Family.SD1) == bw.accepted_lengths(Family.SDXL) == (12, 17, 20, 26)
    # BLOCKIDFLUX: CLIP, T5, IN, D00…D18, S00…S37, OUT (61); no SD form fits Flux, nor Flux's SD.
    ext_flux = ["CLIP", "T5", "IN"] + [f"D{i:02}" for i in range(19)] + [f"S{i:02}" for i in range(38)] + ["OUT"]
    assert spec(Family.FLUX1).blocks == tuple(ext_flux) and bw.accepted_lengths(Family.FLUX1) == (61,)


def test_builtin_presets_are_the_extensions():
    assert {k: [float(x) for x in v.split(",")] for k, v in bw.PRESETS.items()} == EXT_PRESETS


@pytest.mark.parametrize("family", [Family.SD1, Family.SDXL])
def test_presets_expand_to_the_extensions_slots(family):
    assert bw.vector("MIDD", family) == _expected(MIDD_26, family)
    assert bw.vector("OUTS", family) == _expected(OUTS_26, family)


def test_every_short_form_expands_like_the_extensions_to26():
    for names in (EXT_BLOCKID17, EXT_BLOCKID12, EXT_BLOCKID20, EXT_BLOCKID26):
        values = [round(0.1 * (i + 1), 1) for i in range(len(names))]
        slots = dict(zip(names, values))
        text = ",".join(str(v) for v in values)
        for family in (Family.SD1, Family.SDXL):
            assert bw.vector(text, family) == _expected(slots, family), (len(names), family)


def test_a_one_hot_17_vector_sets_only_that_block():
    text = ",".join("1" if b == "IN05" else "0" for b in EXT_BLOCKID17)
    v = bw.vector(text, Family.SD1)
    assert [b for b, x in zip(spec(Family.SD1).blocks, v) if x] == ["IN05"]


@pytest.mark.parametrize(
    "name, block",
    [
        ("lora_unet_down_blocks_1_attentions_0_proj_in", "IN04"),  # kohya, diffusers names
        ("lora_unet_input_blocks_4_1_proj_in", "IN04"),  # kohya, original (SGM) names
        ("lora_unet_down_blocks_0_downsamplers_0_conv", "IN03"),
        ("unet.up_blocks.1.attentions.2.to_q", "OUT05"),  # peft / diffusers
        ("lora_unet_up_blocks_0_upsamplers_0_conv", "OUT02"),
        ("diffusion_model.middle_block.1.proj_in", "MID"),  # ComfyUI
        ("lora_unet_mid_block_attentions_0_proj_out", "MID"),
        ("lora_unet_conv_in", "IN00"),
        ("lora_te1_text_model_encoder_layers_0_mlp_fc1", "BASE"),
        ("text_encoders.clip_g.transformer.text_model.encoder.layers.0.mlp.fc1", "BASE"),
        ("lora_unet_time_embedding_linear_1", None),  # outside every block: the full weight
    ],
)
def test_a_layer_name_tells_its_block(name, block):
    assert bw.block_of(name, Family.SDXL) == block


@pytest.mark.parametrize(
    "name, block",
    [
        ("lora_unet_double_blocks_3_img_attn_proj", "D03"),  # kohya / BFL names
        ("lora_unet_single_blocks_12_linear1", "S12"),
        ("lora_unet_img_in", "IN"),
        ("lora_unet_final_layer_linear", "OUT"),
        ("transformer.transformer_blocks.4.attn.to_q", "D04"),  # diffusers names
        ("transformer.single_transformer_blocks.7.proj_out", "S07"),
        ("transformer.x_embedder", "IN"),
        ("transformer.proj_out", "OUT"),
        ("lora_te1_text_model_encoder_layers_0_mlp_fc1", "CLIP"),
        ("lora_te3_encoder_block_0_layer_0_SelfAttention_q", "T5"),
    ],
)
def test_a_flux_layer_name_tells_its_block(name, block):
    assert bw.block_of(name, Family.FLUX1) == block


def test_flux_takes_its_61_values_and_no_sd_form():
    assert bw.vector("FLUXALL", Family.FLUX1) == (1.0,) * 61
    with pytest.raises(bw.BlockWeightError, match="17 values; give 61 values"):
        bw.vector("MIDD", Family.FLUX1)
    with pytest.raises(bw.BlockWeightError, match="61 values; give 12, 17, 20 or 26"):
        bw.vector("FLUXALL", Family.SD1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("NOPE", "block weights 'NOPE': no preset has this name"),
        ("1,0,1", "block weights '1,0,1': 3 values; give 12, 17, 20 or 26 values, or a preset name"),
        ("1,R,1", "random values (R, U, X) are not supported"),
        ("1,x" + ",1" * 15, "'x' is not a number"),
        ("1,99" + ",1" * 15, "99 must be between -10 and 10"),
    ],
)
def test_bad_specs_get_one_sentence(text, message):
    with pytest.raises(bw.BlockWeightError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bw.vector(text, Family.SD1)


def test_user_presets_are_toml_in_the_config_folder_and_win_over_builtins(loraloom_home):
    bw.save_user_preset("MINE", [1, 0, 0.5] + [0] * 14)
    bw.save_user_preset("MIDD", [0] * 17)  # the user's own MIDD replaces the built-in one
    assert bw.user_presets_path().is_relative_to(loraloom_home)
    assert bw.load_user_presets() == {"MINE": "1,0,0.5" + ",0" * 14, "MIDD": ",".join(["0"] * 17)}
    assert bw.vector("MINE", Family.SD1)[:4] == (1.0, 0.0, 0.0, 0.5)  # BASE, IN00 (not in the 17), IN01, IN02
    assert bw.vector("MIDD", Family.SD1) == (0.0,) * 26
    assert AdapterEntry.from_dict({"path": "a.safetensors", "lbw": "MINE"}).lbw == "MINE"


def test_a_broken_preset_file_is_named(loraloom_home):
    bw.user_presets_path().parent.mkdir(parents=True, exist_ok=True)
    bw.user_presets_path().write_text('[presets]\nBAD = "1,2"\n', encoding="utf-8")
    with pytest.raises(bw.BlockWeightError, match=r"block_presets.toml: preset BAD '1,2': 2 values"):
        bw.vector("BAD", Family.SD1)
    with pytest.raises(bw.BlockWeightError, match="preset name 'a b'"):
        bw.save_user_preset("a b", [1] * 17)


def test_adapter_entries_check_lbw_start_and_stop():
    entry = AdapterEntry.from_dict({"path": "a.safetensors", "lbw": " MIDD ", "start": 0.2, "stop": 0.8})
    assert (entry.lbw, entry.start, entry.stop) == ("MIDD", 0.2, 0.8)
    assert AdapterEntry.from_dict(entry.to_dict()) == entry
    assert "lbw" not in AdapterEntry("a").to_dict()  # old settings files stay as they were
    with pytest.raises(ConfigError, match="adapter: block weights 'XYZ': no preset"):
        AdapterEntry.from_dict({"path": "a", "lbw": "XYZ"})
    with pytest.raises(ConfigError, match="start = 0.8 must come before stop = 0.5"):
        AdapterEntry.from_dict({"path": "a", "start": 0.8, "stop": 0.5})
    with pytest.raises(ConfigError, match="adapter.stop must be a fraction of the steps between 0 and 1"):
        AdapterEntry.from_dict({"path": "a", "stop": 4})


def test_lora_arg_takes_the_extensions_named_items(tmp_path):
    entry = parse_lora_arg("A.safetensors:0.8:lbw=MIDD")
    assert (entry.path, entry.weight, entry.lbw) == ("A.safetensors", 0.8, "MIDD")
    entry = parse_lora_arg("C:/x/A.safetensors:0.8:0.5:lbw=1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0:start=0.25")
    assert (entry.path, entry.weight, entry.te_weight, entry.start) == ("C:/x/A.safetensors", 0.8, 0.5, 0.25)
    assert entry.lbw.startswith("1,0,0,0")
    with pytest.raises(ConfigError, match="--lora A.safetensors:lbw=NOPE: block weights 'NOPE'"):
        parse_lora_arg("A.safetensors:lbw=NOPE")


def test_lbw_round_trips_through_png_parameters():
    adapters = [
        {"name": "style", "weight": 0.8, "lbw": "MIDD", "start": 0.25},
        {"name": "face", "weight": 0.6, "te_weight": 0.3, "lbw": "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0", "stop": 0.5},
        {"name": "plain", "weight": 1.0},
    ]
    text = format_parameters({"prompt": "a cat", "adapters": adapters, "steps": 20, "seed": 1})
    first = text.splitlines()[0]
    assert first == (
        "a cat <lora:style:0.8:lbw=MIDD:start=0.25> "
        "<lora:face:te=0.3:unet=0.6:lbw=1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0:stop=0.5> <lora:plain:1>"
    )
    back = parse_parameters(text)["adapters"]
    assert [{k: v for k, v in a.items() if v is not None} for a in back] == adapters


def test_a1111_block_weight_tags_are_read_as_the_extension_reads_them():
    text = (
        "a cat <lora:a:1:MIDD> <lora:b:0.7:lbw=OUTS:start=5:stop=15> <lora:c:0.5:w=INS:step=2-10>\nSteps: 20, Seed: 3"
    )
    a, b, c = parse_parameters(text)["adapters"]
    assert (a["weight"], a["lbw"]) == (1.0, "MIDD")  # the README's positional form
    assert (b["lbw"], b["start"], b["stop"]) == ("OUTS", 0.25, 0.75)  # whole numbers are steps
    assert (c["lbw"], c["start"], c["stop"]) == ("INS", 0.1, 0.5)
    request = GenerateRequest.from_dict({"base": "x", "adapters": [{"path": "b.safetensors", **b}]})
    assert request.adapter_entries()[0].lbw == "OUTS"
