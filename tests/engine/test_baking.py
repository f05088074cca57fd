"""Baking a mix into one kohya LoRA: exact and reduced, checked against the live mix and diffusers."""

from __future__ import annotations

import adapter_factory as F
import numpy as np
import pytest
import torch
from safetensors import safe_open

from app.core.adapters import AdapterLayout, inspect_adapter
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.adapter_formats import IncompatibleAdapter
from app.engine.baking import BakeError, bake_mix
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline


@pytest.fixture
def mixer(sd1_pipe):
    m = AdapterMixer(sd1_pipe, Family.SD1)
    yield m
    m.clear()


@pytest.fixture(scope="module")
def loha_file(sd1_pipe, tmp_path_factory):
    return F.loha(sd1_pipe, tmp_path_factory.mktemp("loha") / "hada.safetensors", seed=21)


def _mix(rgb, loha_file=None):
    entries = [
        AdapterEntry(str(rgb["red"]), 0.8),
        AdapterEntry(str(rgb["blue"]), -0.3, te_weight=0.6),
        AdapterEntry(str(rgb["green"]), 1.0, enabled=False),
    ]
    if loha_file is not None:
        entries.append(AdapterEntry(str(loha_file), 0.5))
    return entries


def _max_rank(path) -> int:
    with safe_open(str(path), "pt") as f:
        return max(f.get_slice(k).get_shape()[0] for k in f.keys() if k.endswith("lora_down.weight"))


def test_an_exact_bake_renders_the_same_as_the_live_mix(sd1_pipe, mixer, rgb, loha_file, tmp_path):
    entries = _mix(rgb, loha_file)
    mixer.set_mix(entries)
    live_weights = F.weights_of(sd1_pipe)
    live = F.render_np(sd1_pipe)

    result = bake_mix(mixer, entries, tmp_path / "mix.safetensors", base="tiny")
    assert result.exact and result.relative_error < 1e-5
    assert result.rank >= 8 + 4  # blue (8) and red (4) stacked, LoHa on top

    mixer.set_mix([AdapterEntry(str(result.path), 1.0)])
    baked_weights = F.weights_of(sd1_pipe)
    for key, value in live_weights.items():
        torch.testing.assert_close(baked_weights[key], value, rtol=0, atol=2e-5, msg=key)
    np.testing.assert_allclose(F.render_np(sd1_pipe), live, atol=1e-4)


def test_the_baked_file_is_a_kohya_lora_that_diffusers_loads(sd1_pipe, mixer, rgb, tmp_path, tiny_sd1):
    entries = _mix(rgb)
    mixer.set_mix(entries)
    live = F.render_np(sd1_pipe)
    result = bake_mix(mixer, entries, tmp_path / "for-others.safetensors")

    info = inspect_adapter(result.path)
    assert info.layout is AdapterLayout.KOHYA and info.family is Family.SD1
    assert info.trigger_words == ["red style", "blue style"]  # the disabled green adapter adds none
    with safe_open(str(result.path), "pt") as f:
        keys = list(f.keys())
        alpha = f.get_tensor(next(k for k in keys if k.endswith(".alpha")))
        assert alpha.dtype == torch.float32
        assert all(k.startswith(("lora_unet_", "lora_te_")) for k in keys)
        assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)

    reference = load_tiny_pipeline(tiny_sd1)
    reference.load_lora_weights(str(result.path))
    np.testing.assert_allclose(F.render_np(reference), live, atol=2e-4)


def test_a_reduced_bake_reports_its_relative_error(sd1_pipe, mixer, rgb, tmp_path):
    entries = _mix(rgb)
    result = bake_mix(mixer, entries, tmp_path / "r2.safetensors", rank=2)
    assert not result.exact and result.rank == 2 == _max_rank(result.path)
    assert 0.01 < result.relative_error < 1.0

    # Measure the error independently: patched weights of the bake vs of the live mix, over all layers.
    base = F.weights_of(sd1_pipe)
    mixer.set_mix(entries)
    live = F.weights_of(sd1_pipe)
    mixer.set_mix([AdapterEntry(str(result.path), 1.0)])
    baked = F.weights_of(sd1_pipe)
    err = sum(float((baked[k] - live[k]).pow(2).sum()) for k in live)
    total = sum(float((live[k] - base[k]).pow(2).sum()) for k in live)
    assert result.relative_error == pytest.approx((err / total) ** 0.5, rel=1e-3)

    exact_rank_result = bake_mix(mixer, entries, tmp_path / "r64.safetensors", rank=64)
    assert exact_rank_result.relative_error < 1e-5  # a rank above every layer's keeps the mix exact


def test_baking_refuses_what_it_cannot_bake(mixer, rgb, sdxl_pipe, tmp_path):
    xl = F.kohya_lora(sdxl_pipe, tmp_path / "xl.safetensors", family="sdxl")
    with pytest.raises(IncompatibleAdapter, match="made for SDXL"):
        bake_mix(mixer, [AdapterEntry(str(rgb["red"]), 1.0), AdapterEntry(str(xl), 1.0)], tmp_path / "x.safetensors")
    with pytest.raises(BakeError, match="nothing to bake"):
        bake_mix(mixer, [AdapterEntry(str(rgb["red"]), 0.0)], tmp_path / "x.safetensors")
    with pytest.raises(BakeError, match="must be a .safetensors file"):
        bake_mix(mixer, [AdapterEntry(str(rgb["red"]), 1.0)], tmp_path / "x.ckpt")
    assert not (tmp_path / "x.safetensors").exists()


def test_a_bake_keeps_bias_and_norm_changes(sd1_pipe, mixer, rgb, tiny_sd1, tmp_path):
    """A LyCORIS full file changes biases (diff_b), a norm LoCon the GroupNorms (w_norm, b_norm):
    the baked file changes every weight and bias as the live mix does."""
    import writers as W

    ref = load_tiny_pipeline(tiny_sd1)
    files = []
    for name, kwargs in {"full": dict(sigma=0.02), "locon": dict(train_norm=True)}.items():
        written = W.lycoris_file(ref, tmp_path / f"{name}.safetensors", name, **kwargs)
        written.remove()
        files.append(written.path)
    entries = [AdapterEntry(str(files[0]), 0.7), AdapterEntry(str(files[1]), -0.5), AdapterEntry(str(rgb["red"]), 1.0)]
    base = F.weights_of(sd1_pipe)
    mixer.set_mix(entries)
    live = F.weights_of(sd1_pipe)
    changed = [k for k in live if not torch.equal(live[k], base[k])]
    assert any(k.endswith("bias") for k in changed) and any(".norm1." in k for k in changed)

    result = bake_mix(mixer, entries, tmp_path / "mix.safetensors")
    with safe_open(str(result.path), "pt") as f:
        assert any(k.endswith(".diff_b") for k in f.keys()) and any(k.endswith("norm1.diff") for k in f.keys())
    mixer.set_mix([AdapterEntry(str(result.path), 1.0)])
    baked = F.weights_of(sd1_pipe)
    for key in live:
        torch.testing.assert_close(baked[key], live[key], rtol=0, atol=2e-5, msg=key)


def test_a_baked_file_carries_its_sources_tags_triggers_rank_and_hashes(mixer, rgb, tmp_path):
    import hashlib
    import json

    from safetensors.torch import load_file

    from app.engine import lora_files

    tags = {"red": {"5_red": {"red": 10}}, "blue": {"5_red": {"red": 3}, "2_blue": {"blue": 4}}}
    files = {}
    for name, frequency in tags.items():
        with safe_open(str(rgb[name]), "pt") as f:
            meta = dict(f.metadata()) | {"ss_tag_frequency": json.dumps(frequency)}
        files[name] = lora_files.save_kohya(tmp_path / f"{name}.safetensors", load_file(str(rgb[name])), meta)
    entries = [AdapterEntry(str(files["red"]), 0.8), AdapterEntry(str(files["blue"]), -0.3, te_weight=0.6)]
    result = bake_mix(mixer, entries, tmp_path / "mix.safetensors")

    with safe_open(str(result.path), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["ss_tag_frequency"]) == {
        "5_red": {"red": 10},
        "5_red (2)": {"red": 3},
        "2_blue": {"blue": 4},
    }
    assert meta["modelspec.trigger_phrase"] == "red style, blue style"
    assert meta["ss_network_dim"] == str(_max_rank(result.path)) == str(result.rank)
    sources = json.loads(meta["loraloom.sources"])
    assert [(s["file"], s["weight"], s["te_weight"]) for s in sources] == [
        ("red.safetensors", 0.8, 0.8),
        ("blue.safetensors", -0.3, 0.6),
    ]
    for source, name in zip(sources, ("red", "blue")):
        assert source["sha256"] == hashlib.sha256(files[name].read_bytes()).hexdigest()
        with safe_open(str(files[name]), "pt") as f:
            assert source["sshs_model_hash"] == f.metadata()["sshs_model_hash"]
