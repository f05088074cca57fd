"""Issue 13's known defects: each case once gave a silently wrong picture, a crash or a wrong refusal.

The truth is the writing library's own forward (tests/support/writers.py), never our own math.
"""

from __future__ import annotations

import adapter_factory as F
import pytest
import torch
import writers as W
from safetensors.torch import save_file

from app.core.adapters import inspect_adapter
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex, read_adapter
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

TOL = 1e-5


@pytest.fixture(scope="module")
def ref_sd1(tiny_sd1):
    """The writers' pipeline: their layers live in it, their forward is the truth."""
    return load_tiny_pipeline(tiny_sd1)


@pytest.fixture
def mixer(sd1_pipe):
    m = AdapterMixer(sd1_pipe, Family.SD1)
    yield m
    m.clear()


@pytest.fixture(scope="module")
def inputs(sd1_pipe):
    return W.fixed_inputs(sd1_pipe)


def _compare(written: W.Written, ref, pipe, mixer, inputs, weights=(1.0, 0.6, -1.0)) -> None:
    base = W.outputs(pipe, inputs)
    try:
        for w in weights:
            written.set_weight(w)
            theirs = W.outputs(ref, inputs)
            report = mixer.set_mix([AdapterEntry(str(written.path), w)])
            assert report.refused == [], report.refused
            ours = W.outputs(pipe, inputs)
            effect = W.max_diff(theirs, base)
            assert max(effect.values()) > 100 * TOL, f"the adapter barely acts: {effect}"
            diff = W.max_diff(ours, theirs)
            assert max(diff.values()) <= TOL, f"weight {w}: {diff} (effect {effect})"
    finally:
        written.remove()


def test_1_diffusers_alpha_kept_in_the_header_metadata_is_applied(ref_sd1, sd1_pipe, mixer, inputs, tmp_path):
    written = W.peft_file(ref_sd1, tmp_path / "meta" / "pytorch_lora_weights.safetensors", rank=4, alpha=12.0)
    _compare(written, ref_sd1, sd1_pipe, mixer, inputs)


def test_1_alpha_pattern_in_the_header_metadata_is_applied(ref_sd1, sd1_pipe, mixer, inputs, tmp_path):
    written = W.peft_file(
        ref_sd1,
        tmp_path / "pat" / "pytorch_lora_weights.safetensors",
        rank=4,
        alpha=8.0,
        te=False,
        alpha_pattern={"to_k": 2.0},
        use_rslora=True,
    )
    _compare(written, ref_sd1, sd1_pipe, mixer, inputs, weights=(1.0,))


def test_2_lokr_tucker_on_convs_uses_the_real_rank(ref_sd1, sd1_pipe, mixer, inputs, tmp_path):
    written = W.lycoris_file(
        ref_sd1, tmp_path / "lokr-tucker.safetensors", "lokr", rank=2, alpha=1.0, use_tucker=True, factor=4, te=False
    )
    from safetensors import safe_open

    with safe_open(str(written.path), "pt") as fh:
        assert any(k.endswith(".lokr_t2") for k in fh.keys())  # the case is really there
    _compare(written, ref_sd1, sd1_pipe, mixer, inputs)


def test_3_peft_dora_on_conv_layers_applies(ref_sd1, sd1_pipe, mixer, inputs, tmp_path):
    written = W.peft_file(
        ref_sd1, tmp_path / "dora" / "pytorch_lora_weights.safetensors", te=False, convs=True, use_dora=True
    )
    # DoRA at a weight other than 1 means something different in every tool (README); 1 is the truth.
    _compare(written, ref_sd1, sd1_pipe, mixer, inputs, weights=(1.0,))


def test_4_sd1_file_with_original_unet_names_and_no_metadata_applies(sd1_pipe, mixer, tmp_path):
    ldm = F.kohya_lora(sd1_pipe, tmp_path / "ldm.safetensors", seed=4, sgm=True, metadata=False, convs=True)
    plain = F.kohya_lora(sd1_pipe, tmp_path / "plain.safetensors", seed=4, metadata=False, convs=True)
    first = mixer.set_mix([AdapterEntry(str(ldm), 1.0)])
    assert first.refused == [] and first.warnings == []
    patched = F.weights_of(sd1_pipe)
    second = mixer.set_mix([AdapterEntry(str(plain), 1.0)])
    assert second.layers_updated == first.layers_updated
    now = F.weights_of(sd1_pipe)
    assert all(torch.equal(now[k], patched[k]) for k in now)


@pytest.mark.parametrize(
    ("width", "block", "family"),
    [
        (768, "input_blocks_1_1_transformer_blocks_0", Family.SD1),
        (1024, "input_blocks_1_1_transformer_blocks_0", Family.SD2),
        (2048, "input_blocks_4_1_transformer_blocks_1", Family.SDXL),
        (64, "input_blocks_4_1_transformer_blocks_1", Family.SDXL),
        (64, "input_blocks_1_1_transformer_blocks_0", None),
    ],
)
def test_4_family_comes_from_widths_and_block_structure(tmp_path, width, block, family):
    key = f"lora_unet_{block}_attn2_to_k"
    path = tmp_path / "bare.safetensors"
    save_file(
        {
            f"{key}.lora_down.weight": torch.zeros(4, width),
            f"{key}.lora_up.weight": torch.zeros(320, 4),
            f"{key}.alpha": torch.tensor(4.0),
        },
        str(path),
    )
    assert inspect_adapter(path).family is family


def test_7_unknown_weight_kinds_are_refused_with_the_real_reason(sd1_pipe, tmp_path):
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    path = tmp_path / "future.safetensors"
    save_file({f"{key}.lora_zeta": torch.ones(32), f"{key}.lora_gamma": torch.ones(4, 32)}, str(path))
    with pytest.raises(IncompatibleAdapter) as err:
        read_adapter(path, LayerIndex(sd1_pipe), Family.SD1)
    assert str(err.value) == (
        f"{path}: none of its 2 tensors is a weight kind LoRA Loom can apply "
        "(it has .lora_gamma, .lora_zeta); it is another adapter type or not an adapter"
    )


def _relabelled(pipe, path, key_of, *, te: bool = True, seed: int = 6):
    """One set of seeded LoRA factors saved under the names ``key_of(part, module path)`` gives."""
    import math

    from app.engine.layer_index import _to_sgm, sgm_prefixes

    gen = torch.Generator().manual_seed(seed)
    sgm = sgm_prefixes(pipe.unet)
    layers = [("unet", p, m) for p, m in F.unet_layers(pipe, convs=True, proj=True).items()]
    if te:
        layers += [("te", p, m) for p, m in F.te_layers(pipe.text_encoder).items()]
    sd = {}
    for part, p, m in layers:
        down, up = F._factors(gen, m.weight.detach(), 4, 1.0)
        name, down_role, up_role = key_of(part, p, _to_sgm(p, sgm))
        sd[f"{name}.{down_role}"], sd[f"{name}.{up_role}"] = down.contiguous(), up.contiguous() * math.sqrt(0.5)
    save_file(sd, str(path))
    return path


_KOHYA = ("lora_down.weight", "lora_up.weight")
_PEFT = ("lora_A.weight", "lora_B.weight")
LAYOUTS = {
    "kohya": lambda part, p, sgm: (
        (f"lora_unet_{p}" if part == "unet" else f"lora_te_{F.te_module_path(p)}").replace(".", "_"),
        *_KOHYA,
    ),
    "simpletuner-lycoris": lambda part, p, sgm: (f"lycoris_{p}".replace(".", "_"), *_KOHYA),
    "comfy": lambda part, p, sgm: (
        (f"diffusion_model.{sgm}" if part == "unet" else f"text_encoders.clip_l.transformer.{F.te_module_path(p)}"),
        *_KOHYA,
    ),
    "bare-diffusers": lambda part, p, sgm: (p, *_PEFT),
    "peft-default": lambda part, p, sgm: (
        (f"base_model.model.{p}" if part == "unet" else f"text_encoder.{F.te_module_path(p)}"),
        "lora_A.default.weight",
        "lora_B.default.weight",
    ),
}


@pytest.mark.parametrize("layout", ["simpletuner-lycoris", "comfy", "bare-diffusers", "peft-default"])
def test_6_layouts_comfyui_reads_are_read(sd1_pipe, mixer, tmp_path, layout):
    te = layout not in ("simpletuner-lycoris", "bare-diffusers")  # those write the UNet alone
    reference = _relabelled(sd1_pipe, tmp_path / "kohya.safetensors", LAYOUTS["kohya"], te=te)
    path = _relabelled(sd1_pipe, tmp_path / f"{layout}.safetensors", LAYOUTS[layout], te=te)
    first = mixer.set_mix([AdapterEntry(str(reference), 0.8)])
    expected = F.weights_of(sd1_pipe)
    second = mixer.set_mix([AdapterEntry(str(path), 0.8)])
    assert second.refused == [] and second.warnings == []
    assert second.layers_updated == first.layers_updated
    now = F.weights_of(sd1_pipe)
    assert all(torch.equal(now[k], expected[k]) for k in now)
