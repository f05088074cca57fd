"""Weight patching: exactness, agreement with diffusers, every file layout, and refusals."""

from __future__ import annotations

import pickle
import random

import adapter_factory as F
import numpy as np
import pytest
import torch

from app.core.adapters import Part
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex, Target, read_adapter
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline


@pytest.fixture
def mixer(sd1_pipe):
    m = AdapterMixer(sd1_pipe, Family.SD1)
    yield m
    m.clear()


@pytest.fixture(scope="module")
def reference_pipe(tiny_sd1):
    """A second copy of the base model for diffusers' own LoRA loading."""
    return load_tiny_pipeline(tiny_sd1)


@pytest.fixture(scope="module")
def base_image(sd1_pipe):
    return F.render_np(sd1_pipe)


@pytest.fixture(scope="module")
def base_weights(sd1_pipe):
    return F.weights_of(sd1_pipe)


def _entry(path, weight=1.0, **kw):
    return AdapterEntry(str(path), weight, **kw)


def _assert_weights_equal(pipe, expected):
    now = F.weights_of(pipe)
    changed = [k for k in expected if not torch.equal(now[k], expected[k])]
    assert not changed, f"{len(changed)} tensors differ from W0, e.g. {changed[:3]}"


def test_weight_zero_gives_exactly_the_base_output(sd1_pipe, mixer, rgb, base_image, base_weights):
    report = mixer.set_mix([_entry(rgb["red"], 0.0), _entry(rgb["blue"], 0.0)])
    assert report.refused == [] and len(report.applied) == 2
    assert np.array_equal(F.render_np(sd1_pipe), base_image)
    _assert_weights_equal(sd1_pipe, base_weights)


@pytest.mark.parametrize("layout", ["kohya", "diffusers"])
def test_weight_one_matches_diffusers_load_lora_weights(
    sd1_pipe, mixer, rgb, base_image, reference_pipe, tmp_path, layout
):
    path = rgb["red"] if layout == "kohya" else F.diffusers_lora(sd1_pipe, tmp_path / "d.safetensors", seed=5)
    mixer.set_mix([_entry(path, 1.0)])
    ours = F.render_np(sd1_pipe)
    reference_pipe.load_lora_weights(str(path), adapter_name=layout)
    try:
        theirs = F.render_np(reference_pipe)
    finally:
        reference_pipe.delete_adapters(layout)
    assert np.abs(ours - base_image).max() > 0.05  # the adapter really changes the picture
    np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_any_sequence_of_moves_and_removals_returns_bit_exact_to_w0(sd1_pipe, mixer, rgb, base_weights):
    rng = random.Random(7)
    names = list(rgb)
    stack: dict[str, AdapterEntry] = {}
    for _ in range(25):
        name = rng.choice(names)
        action = rng.random()
        if action < 0.2:
            stack.pop(name, None)
        elif action < 0.3 and name in stack:
            stack[name].enabled = not stack[name].enabled
        else:
            stack[name] = _entry(
                rgb[name], rng.choice([-2.0, -0.7, 0.0, 0.35, 1.0, 1.9, 3.5]), te_weight=rng.choice([None, 0.0, 0.5])
            )
        mixer.set_mix(list(stack.values()))
    mixer.set_mix([])
    _assert_weights_equal(sd1_pipe, base_weights)
    assert mixer.patched_layers() == set()


def test_same_mix_gives_the_same_bits_whatever_the_history(sd1_pipe, mixer, rgb):
    target = [_entry(rgb["red"], 0.8), _entry(rgb["green"], -0.3), _entry(rgb["blue"], 1.2)]
    mixer.set_mix(target)
    direct = F.weights_of(sd1_pipe)
    mixer.set_mix([_entry(rgb["blue"], -2.0)])
    mixer.set_mix([_entry(rgb["green"], 0.1), _entry(rgb["red"], 0.8), _entry(rgb["blue"], 0.0)])
    mixer.set_mix(list(reversed(target)))
    _assert_weights_equal(sd1_pipe, direct)


def test_a_slider_move_recomputes_only_that_adapters_layers(mixer, rgb):
    mixer.set_mix([_entry(rgb["red"], 1.0), _entry(rgb["blue"], 1.0)])
    red_layers = set(mixer.held[[h.name for h in mixer.held].index("red")].layers)
    report = mixer.set_mix([_entry(rgb["red"], 0.5), _entry(rgb["blue"], 1.0)])
    assert report.loaded == 0  # nothing read again
    assert report.layers_updated == len(red_layers)
    te_only = mixer.set_mix([_entry(rgb["red"], 0.5, te_weight=0.2), _entry(rgb["blue"], 1.0)])
    assert te_only.layers_updated == len([t for t in red_layers if t.part is not Part.UNET]) > 0


def test_text_encoder_strength_is_separate(sd1_pipe, mixer, rgb, base_weights):
    mixer.set_mix([_entry(rgb["red"], 1.0, te_weight=0.0)])
    now = F.weights_of(sd1_pipe)
    te = [k for k in base_weights if k.startswith("text_encoder.")]
    unet = [k for k in base_weights if k.startswith("unet.")]
    assert all(torch.equal(now[k], base_weights[k]) for k in te)
    assert any(not torch.equal(now[k], base_weights[k]) for k in unet)


def test_patched_layer_is_w0_plus_weighted_sum(sd1_pipe, mixer, rgb, base_weights):
    mixer.set_mix([_entry(rgb["red"], 0.7), _entry(rgb["green"], -1.5)])
    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    key = "lora_unet_" + path.replace(".", "_")
    from safetensors.torch import load_file

    expected = base_weights[f"unet.{path}.weight"].clone()
    for name, w in (("red", 0.7), ("green", -1.5)):
        sd = load_file(str(rgb[name]))
        up, down = sd[f"{key}.lora_up.weight"], sd[f"{key}.lora_down.weight"]
        expected += w * float(sd[f"{key}.alpha"]) / down.shape[0] * (up @ down)
    torch.testing.assert_close(sd1_pipe.unet.get_submodule(path).weight, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["loha", "lokr", "dora", "locon_mid", "peft"])
def test_lycoris_and_other_layouts_apply_and_change_the_output(
    sd1_pipe, mixer, base_image, base_weights, tmp_path, kind
):
    path = getattr(F, kind if kind != "peft" else "peft_lora")(
        sd1_pipe, tmp_path / kind / f"{kind}.safetensors" if kind == "peft" else tmp_path / f"{kind}.safetensors"
    )
    report = mixer.set_mix([_entry(path, 1.0)])
    assert report.refused == [] and report.layers_updated > 0
    changed = F.render_np(sd1_pipe)
    assert np.abs(changed - base_image).max() > 0.01
    mixer.set_mix([])
    _assert_weights_equal(sd1_pipe, base_weights)


def test_loha_lokr_dora_math(sd1_pipe, mixer, base_weights, tmp_path):
    """ΔW checked against the published formulas, computed here independently of lycoris."""
    from safetensors.torch import load_file

    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    key = "lora_unet_" + path.replace(".", "_")
    w0 = base_weights[f"unet.{path}.weight"]
    module = sd1_pipe.unet.get_submodule(path)

    loha = load_file(str(F.loha(sd1_pipe, tmp_path / "h.safetensors", alpha=2.0, rank=4)))
    mixer.set_mix([_entry(tmp_path / "h.safetensors", 0.5)])
    d = (loha[f"{key}.hada_w1_a"] @ loha[f"{key}.hada_w1_b"]) * (loha[f"{key}.hada_w2_a"] @ loha[f"{key}.hada_w2_b"])
    torch.testing.assert_close(module.weight, w0 + 0.5 * (2.0 / 4) * d, rtol=0, atol=1e-6)

    lokr = load_file(str(F.lokr(sd1_pipe, tmp_path / "k.safetensors", alpha=1.0, rank=2)))
    mixer.set_mix([_entry(tmp_path / "k.safetensors", 1.0)])
    w2 = lokr[f"{key}.lokr_w2_a"] @ lokr[f"{key}.lokr_w2_b"]
    torch.testing.assert_close(
        module.weight, w0 + (1.0 / 2) * torch.kron(lokr[f"{key}.lokr_w1"], w2), rtol=0, atol=1e-6
    )

    dora = load_file(str(F.dora(sd1_pipe, tmp_path / "o.safetensors")))
    mixer.set_mix([_entry(tmp_path / "o.safetensors", 1.0)])
    # DoRA at full strength: every output row has exactly the stored magnitude.
    torch.testing.assert_close(module.weight.norm(dim=1, keepdim=True), dora[f"{key}.dora_scale"], rtol=1e-5, atol=1e-5)


def test_sgm_and_diffusers_names_patch_the_same_layers(sdxl_pipe, tmp_path):
    pipe = sdxl_pipe
    sgm = F.kohya_lora(pipe, tmp_path / "sgm.safetensors", family="sdxl", seed=3, sgm=True, convs=True)
    plain = F.kohya_lora(pipe, tmp_path / "plain.safetensors", family="sdxl", seed=3, convs=True)
    mixer = AdapterMixer(pipe, Family.SDXL)
    a = mixer.set_mix([_entry(sgm, 1.0)])
    assert a.refused == [] and a.warnings == []
    first = F.weights_of(pipe)
    b = mixer.set_mix([_entry(plain, 1.0)])
    assert b.layers_updated == a.layers_updated
    _assert_weights_equal(pipe, first)
    assert any(t.part is Part.TEXT_ENCODER_2 for t in mixer.patched_layers())
    mixer.clear()


def test_an_sdxl_adapter_on_an_sd1_base_is_refused_and_the_others_keep_working(
    sd1_pipe, mixer, rgb, sdxl_pipe, tmp_path, base_image
):
    xl = F.kohya_lora(sdxl_pipe, tmp_path / "xl-style.safetensors", family="sdxl")
    report = mixer.set_mix([_entry(xl, 1.0), _entry(rgb["red"], 1.0)])
    assert [a["name"] for a in report.applied] == ["red"]
    (refused,) = report.refused
    assert refused["message"] == (f"{xl}: made for SDXL, but the base model is SD 1.x; pick a SDXL base model for it")
    assert np.abs(F.render_np(sd1_pipe) - base_image).max() > 0.01


def test_an_sdxl_adapter_without_metadata_is_refused_by_its_layers(sd1_pipe, sdxl_pipe, tmp_path):
    xl = F.kohya_lora(sdxl_pipe, tmp_path / "bare.safetensors", family="sdxl", metadata=False, te=False)
    refusal = r"bare\.safetensors: ((none|only \d+) of its \d+ layers|layer \w+ is \d+x\d+ but the base model.s is)"
    with pytest.raises(IncompatibleAdapter, match=refusal):
        read_adapter(xl, LayerIndex(sd1_pipe), Family.SD1)


def test_wrong_shapes_are_refused_with_a_sentence(sd1_pipe, tmp_path):
    from safetensors.torch import save_file

    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    path = tmp_path / "sd2ish.safetensors"
    save_file({f"{key}.lora_down.weight": torch.zeros(4, 40), f"{key}.lora_up.weight": torch.zeros(32, 4)}, str(path))
    with pytest.raises(IncompatibleAdapter) as err:
        read_adapter(path, LayerIndex(sd1_pipe), Family.SD1)
    assert str(err.value) == (
        f"{path}: layer {key} is 32x40 but the base model's is 32x32; the adapter was made for another base model"
    )


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("case", ["truncated", "not_lora", "ckpt", "pt"])
def test_broken_and_unsafe_files_get_a_message(sd1_pipe, mixer, rgb, tmp_path, case):
    marker = tmp_path / "unpickled.txt"
    if case == "truncated":
        path = F.truncated_copy(rgb["red"], tmp_path / "cut.safetensors")
        needle = "truncated"
    elif case == "not_lora":
        path = F.not_a_lora(tmp_path / "model.safetensors")
        needle = "not a LoRA adapter"
    else:
        path = tmp_path / f"evil.{case}"
        path.write_bytes(pickle.dumps(_Boom(marker)))
        needle = "pickle files"
    report = mixer.set_mix([_entry(path, 1.0), _entry(rgb["green"], 1.0)])
    (refused,) = report.refused
    assert refused["message"].startswith(f"{path}: ") and needle in refused["message"]
    assert "\n" not in refused["message"]
    assert [a["name"] for a in report.applied] == ["green"]
    assert not marker.exists()  # never unpickled


def test_a_changed_file_is_read_again(sd1_pipe, mixer, tmp_path):
    path = F.kohya_lora(sd1_pipe, tmp_path / "run.safetensors", seed=1)
    mixer.set_mix([_entry(path, 1.0)])
    first = sd1_pipe.unet.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn1.to_q").weight.clone()
    import os
    import time

    F.kohya_lora(sd1_pipe, path, seed=2)  # a training run saved a new checkpoint at the same path
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    report = mixer.set_mix([_entry(path, 1.0)])
    assert report.loaded == 1
    now = sd1_pipe.unet.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn1.to_q").weight
    assert not torch.equal(now, first)


def test_a_missing_file_is_reported(mixer, tmp_path):
    report = mixer.set_mix([_entry(tmp_path / "gone.safetensors", 1.0)])
    assert report.refused == [
        {"path": str(tmp_path / "gone.safetensors"), "message": f"{tmp_path / 'gone.safetensors'}: no such file"}
    ]


def test_target_names(sd1_pipe):
    index = LayerIndex(sd1_pipe)
    q = Target(Part.TEXT_ENCODER, "encoder.layers.0.self_attn.q_proj")
    assert index.resolve("lora_te_text_model_encoder_layers_0_self_attn_q_proj") == q
    assert index.resolve("text_encoder.text_model.encoder.layers.0.self_attn.q_proj") == q
    old = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora"
    assert index.resolve(old) == Target(Part.UNET, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0")
    assert index.resolve("lora_unet_input_blocks_1_1_proj_in") == Target(
        Part.UNET, "down_blocks.0.attentions.0.proj_in"
    )
