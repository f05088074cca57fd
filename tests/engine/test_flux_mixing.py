"""Flux LoRAs of every common layout mixed into the tiny Flux by weight patching: exact at weight
0, equal to diffusers' own loader at weight 1, restorable bit for bit, fp8 storage, refusals."""

from __future__ import annotations

import random

import flux_adapters as FA
import numpy as np
import pytest
import torch
from diffusers.loaders.lora_conversion_utils import swap_scale_shift
from safetensors.torch import load_file, save_file
from torch import nn

from app.core.adapters import AdapterLayout, Part, inspect_adapter
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine import flux_keys
from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex, read_adapter
from app.engine.layer_index import Target
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

# Layers diffusers' kohya converter leaves out (their keys lack its "transformer." prefix) or
# splits at the real model's width only (linear1: 3072 + 12288): compared below without diffusers.
NOT_IN_DIFFUSERS = ("linear1", "_in_", "_in.", "img_in", "txt_in", "final_layer")


@pytest.fixture(scope="module")
def flux_pipe(tiny_flux1):
    return load_tiny_pipeline(tiny_flux1)


@pytest.fixture
def mixer(flux_pipe, tiny_flux1):
    m = AdapterMixer(flux_pipe, Family.FLUX1, base=tiny_flux1)
    yield m
    m.clear()


@pytest.fixture(scope="module")
def base_weights(flux_pipe):
    return FA.weights_of(flux_pipe)


@pytest.fixture(scope="module")
def base_image(flux_pipe):
    return FA.render_np(flux_pipe)


def _entry(path, weight=1.0, **kw):
    return AdapterEntry(str(path), weight, **kw)


def _max_change(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _assert_weights_equal(pipe, expected):
    now = FA.weights_of(pipe)
    changed = [k for k in expected if not torch.equal(now[k], expected[k])]
    assert not changed, f"{len(changed)} tensors differ from W0, e.g. {changed[:3]}"


def test_every_transformer_layer_has_exactly_one_place_in_the_bfl_layout(flux_pipe):
    linear = {p: m for p, m in flux_pipe.transformer.named_modules() if isinstance(m, nn.Linear)}
    seen: dict[str, int] = {}
    for bfl, pieces in flux_keys.bfl_layers(flux_pipe.transformer).items():
        covered = sorted(r for piece in pieces for r in piece.rows)
        assert covered[0][0] == 0 and all(a[1] == b[0] for a, b in zip(covered, covered[1:])), bfl
        for piece in pieces:
            seen[piece.path] = seen.get(piece.path, 0) + 1
            assert sum(b - a for a, b in piece.rows) == linear[piece.path].weight.shape[0]
    assert seen == dict.fromkeys(linear, 1)


def test_weight_zero_gives_exactly_the_base(flux_pipe, mixer, tmp_path, base_weights, base_image):
    paths = [FA.flux_lora(flux_pipe, tmp_path / f"{lay}.safetensors", lay, seed=i) for i, lay in enumerate(FA.LAYOUTS)]
    report = mixer.set_mix([_entry(p, 0.0) for p in paths])
    assert report.refused == [] and len(report.applied) == len(FA.LAYOUTS)
    _assert_weights_equal(flux_pipe, base_weights)
    assert np.array_equal(FA.render_np(flux_pipe), base_image)


@pytest.mark.parametrize("layout", ["kohya", "comfy", "xlabs", "diffusers", "onetrainer"])
def test_weight_one_matches_diffusers_load_lora_weights_and_fuse(
    flux_pipe, mixer, tiny_flux1, tmp_path, base_weights, layout
):
    path = FA.flux_lora(flux_pipe, tmp_path / f"{layout}.safetensors", layout, seed=3, skip=NOT_IN_DIFFUSERS)
    report = mixer.set_mix([_entry(path, 1.0)])
    assert report.refused == [] and report.warnings == []
    ours = FA.weights_of(flux_pipe)
    reference = load_tiny_pipeline(tiny_flux1)
    reference.load_lora_weights(str(path), adapter_name=layout)
    reference.fuse_lora(components=["transformer", "text_encoder"], lora_scale=1.0)
    theirs = FA.weights_of(reference)
    assert _max_change(ours, base_weights) > 0.3  # the adapter really changes the weights
    assert _max_change(theirs, base_weights) > 0.3  # and diffusers did load it
    assert _max_change(ours, theirs) < 1e-5
    if layout == "kohya":  # and the picture follows
        np.testing.assert_allclose(FA.render_np(flux_pipe), FA.render_np(reference), atol=1e-4)


def test_bfl_names_and_the_layers_diffusers_cannot_split_follow_the_flux_model(flux_pipe, mixer, tmp_path):
    """kohya/BFL files fuse q/k/v (+ the MLP in single blocks): each diffusers layer gets its row
    range of ΔW = up·down; the final modulation's halves are swapped as diffusers swaps them."""
    kohya = FA.flux_lora(flux_pipe, tmp_path / "k.safetensors", "kohya", seed=4, alpha=4.0, te=False)
    sd = load_file(str(kohya))
    bfl = {}
    for key, value in sd.items():
        if key.endswith(".alpha"):
            continue  # alpha = rank: the same scale 1 as a file without alpha
        module, _, role = key.partition(".")
        name = module[len("lora_unet_") :]
        name = next(b for b in flux_keys.bfl_layers(flux_pipe.transformer) if b.replace(".", "_") == name)
        bfl[f"{name}.{'lora_A' if 'down' in role else 'lora_B'}.weight"] = value
    bfl_path = tmp_path / "bfl.safetensors"
    save_file(bfl, str(bfl_path))
    assert inspect_adapter(bfl_path).layout is AdapterLayout.BFL

    mixer.set_mix([_entry(kohya, 1.0)])
    from_kohya = FA.weights_of(flux_pipe)
    mixer.set_mix([_entry(bfl_path, 1.0)])
    assert _max_change(FA.weights_of(flux_pipe), from_kohya) == 0.0
    t = flux_pipe.transformer

    def delta(bfl_name: str) -> torch.Tensor:
        return sd[f"lora_unet_{bfl_name}.lora_up.weight"] @ sd[f"lora_unet_{bfl_name}.lora_down.weight"]

    def change(path: str) -> torch.Tensor:
        target = Target(Part.TRANSFORMER, path)
        return t.get_submodule(path).weight.detach() - mixer.base_weight(target)

    d = delta("single_blocks_0_linear1")
    inner = t.single_transformer_blocks[0].attn.to_q.weight.shape[0]
    for i, name in enumerate(("attn.to_q", "attn.to_k", "attn.to_v")):
        torch.testing.assert_close(change(f"single_transformer_blocks.0.{name}"), d[i * inner : (i + 1) * inner])
    torch.testing.assert_close(change("single_transformer_blocks.0.proj_mlp"), d[3 * inner :])
    torch.testing.assert_close(change("norm_out.linear"), swap_scale_shift(delta("final_layer_adaLN_modulation_1")))
    assert float(d.abs().max()) > 0.1


def test_peft_files_use_their_adapter_config_alpha(flux_pipe, mixer, tmp_path, base_weights):
    plain = FA.flux_lora(flux_pipe, tmp_path / "d" / "a.safetensors", "diffusers", seed=5, te=False)
    sd = {k.replace("transformer.", "base_model.model.", 1): v for k, v in load_file(str(plain)).items()}
    peft = tmp_path / "p" / "adapter_model.safetensors"
    peft.parent.mkdir()
    save_file(sd, str(peft))
    (peft.parent / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 8, "peft_type": "LORA"}')
    assert inspect_adapter(peft).parts == [Part.TRANSFORMER]
    mixer.set_mix([_entry(plain, 2.0)])
    doubled = FA.weights_of(flux_pipe)
    mixer.set_mix([_entry(peft, 1.0)])  # alpha 8 / r 4: scale 2
    assert _max_change(doubled, base_weights) > 0.3
    assert _max_change(FA.weights_of(flux_pipe), doubled) < 1e-5


def test_random_slider_moves_restore_w0_bit_exact_without_a_copy(flux_pipe, mixer, tmp_path, base_weights):
    paths = [
        FA.flux_lora(flux_pipe, tmp_path / f"{lay}.safetensors", lay, seed=20 + i) for i, lay in enumerate(FA.LAYOUTS)
    ]
    rng = random.Random(15)
    for _ in range(25):
        chosen = rng.sample(paths, rng.randint(0, len(paths)))
        report = mixer.set_mix([_entry(p, rng.choice([0.0, -1.0, 0.3, 0.7, 1.5])) for p in chosen])
        assert report.refused == []
        assert mixer.kept_bytes() == 0  # W0 is read back from the model folder's files, never copied
    assert mixer.patched_layers()
    mixer.set_mix([_entry(p, 0.0) for p in paths])
    _assert_weights_equal(flux_pipe, base_weights)
    mixer.clear()
    _assert_weights_equal(flux_pipe, base_weights)


def test_fp8_storage_is_patched_in_float32_and_restored_to_the_same_bytes(tiny_flux1, tmp_path):
    """An fp8 transformer (storage float8_e4m3fn, compute float32 as diffusers' layerwise casting
    does), its W0 read back from an fp8 transformer file as ComfyUI users keep it."""
    pipe = load_tiny_pipeline(tiny_flux1)
    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    fp8_file = tmp_path / "flux1-tiny-fp8.safetensors"
    save_file({k: v.contiguous() for k, v in before.items()}, str(fp8_file))
    base_image = FA.render_np(pipe)
    path = FA.flux_lora(pipe, tmp_path / "k.safetensors", "kohya", seed=6, te=False)
    mixer = AdapterMixer(pipe, Family.FLUX1, base=fp8_file)
    mixer.set_mix([_entry(path, 0.8)])
    assert mixer.kept_bytes() == 0  # W0 is read back from the fp8 file, not copied
    target = Target(Part.TRANSFORMER, "transformer_blocks.0.attn.to_k")
    w0 = before["transformer_blocks.0.attn.to_k.weight"]
    change = mixer.held[0].layers[target].delta(w0.float(), 0.8)
    live = pipe.transformer.get_submodule(target.path).weight
    assert live.dtype == torch.float8_e4m3fn and float(change.abs().max()) > 0.1
    assert torch.equal(live.view(torch.uint8), (w0.float() + change).to(torch.float8_e4m3fn).view(torch.uint8))
    assert not np.array_equal(FA.render_np(pipe), base_image)
    mixer.clear()
    after = pipe.transformer.state_dict()
    assert all(torch.equal(after[k].view(torch.uint8), before[k].view(torch.uint8)) for k in before)
    assert np.array_equal(FA.render_np(pipe), base_image)


@pytest.mark.parametrize("metadata", [True, False])
def test_a_flux_lora_on_sd1_is_refused_with_a_sentence(flux_pipe, sd1_pipe, tmp_path, metadata):
    path = FA.flux_lora(flux_pipe, tmp_path / "flux.safetensors", "kohya", metadata=metadata)
    with pytest.raises(IncompatibleAdapter) as err:
        read_adapter(path, LayerIndex(sd1_pipe), Family.SD1)
    assert str(err.value) == (f"{path}: made for Flux.1, but the base model is SD 1.x; pick a Flux.1 base model for it")


def test_an_sd_lora_on_flux_is_refused_with_a_sentence(flux_pipe, rgb):
    with pytest.raises(IncompatibleAdapter) as err:
        read_adapter(rgb["red"], LayerIndex(flux_pipe), Family.FLUX1)
    assert str(err.value) == (
        f"{rgb['red']}: made for SD 1.x, but the base model is Flux.1; pick a SD 1.x base model for it"
    )


def test_dora_on_a_fused_flux_layer_is_skipped_and_named(flux_pipe, mixer, tmp_path):
    """DoRA's norm spans the fused q/k/v rows: no row range of it is a layer's change, so that
    layer is skipped with a warning (the file's other layers still apply)."""
    path = FA.flux_lora(flux_pipe, tmp_path / "k.safetensors", "kohya", seed=12, te=False)
    sd = load_file(str(path))
    sd["lora_unet_double_blocks_0_img_attn_qkv.dora_scale"] = torch.ones(48, 1)
    save_file(sd, str(path), metadata={"ss_base_model_version": "flux1"})
    report = mixer.set_mix([_entry(path, 1.0)])
    assert report.refused == []
    assert (
        f"{path.name}: 1 layers of an unsupported adapter type were skipped (e.g. lora_unet_double_blocks_0_img_attn_qkv)"
        in report.warnings
    )
    assert Target(Part.TRANSFORMER, "transformer_blocks.0.attn.to_q") not in mixer.patched_layers()
    assert Target(Part.TRANSFORMER, "transformer_blocks.0.attn.add_q_proj") in mixer.patched_layers()


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("kohya", AdapterLayout.KOHYA),
        ("comfy", AdapterLayout.COMFY),
        ("bfl", AdapterLayout.BFL),
        ("xlabs", AdapterLayout.XLABS),
        ("diffusers", AdapterLayout.DIFFUSERS),
        ("peft", AdapterLayout.PEFT),
        ("onetrainer", AdapterLayout.KOHYA),
    ],
)
def test_the_header_tells_each_flux_layout_and_the_family_from_the_names_alone(flux_pipe, tmp_path, layout, expected):
    path = FA.flux_lora(flux_pipe, tmp_path / layout / "a.safetensors", layout, metadata=False)
    info = inspect_adapter(path)
    assert info.layout is expected and info.family is Family.FLUX1
    assert info.parts[0] is Part.TRANSFORMER and Part.UNET not in info.parts
    assert "Flux.1's" in info.family_evidence
