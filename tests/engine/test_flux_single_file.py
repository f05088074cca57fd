"""Full-size Flux.1 from the bundled configs, on the meta device (no 24 GB written): the real
sizes, BFL names read by diffusers' own converter into exactly these shapes, and Flux single
files told apart (dev/schnell, transformer alone or all-in-one, fp8); a transformer file alone asks
for its companion files in a sentence (loading them: test_flux_files.py)."""

from __future__ import annotations

import functools

import pytest
import torch
from flux_bfl import bfl_shapes
from safetensors.torch import save_file

from app.cli import main
from app.engine.single_file import CheckpointProblem, Variant, component_config, config_folder, detect_checkpoint
from app.engine.skeleton import component_shapes as _component_shapes
from app.engine.skeleton import write_skeleton

FLUX = (Variant.FLUX1_DEV, Variant.FLUX1_SCHNELL)


@functools.cache
def component_shapes(variant: Variant, component: str) -> dict:
    """Built once per module: a 12 B transformer takes ~20 s to lay out on the meta device here."""
    return _component_shapes(variant, component)


def _params(variant: Variant, component: str) -> int:
    return sum(torch.Size(s).numel() for s in component_shapes(variant, component).values())


def test_the_bundled_configs_build_flux_at_its_real_size():
    # FLUX.1-dev's published sizes: a 11.9 B transformer, T5-XXL's encoder (t5xxl_fp16 is 9.79 GB),
    # CLIP ViT-L's text model, the 16-channel VAE (ae.safetensors is 335 MB in fp32).
    assert _params(Variant.FLUX1_DEV, "transformer") == 11_901_408_320
    guidance_embedder = (256 * 3072 + 3072) + (3072 * 3072 + 3072)  # [schnell] has none
    assert _params(Variant.FLUX1_SCHNELL, "transformer") == 11_901_408_320 - guidance_embedder
    assert _params(Variant.FLUX1_DEV, "text_encoder_2") == 4_893_906_944
    assert _params(Variant.FLUX1_DEV, "text_encoder") == 123_060_480
    assert _params(Variant.FLUX1_DEV, "vae") == 83_819_683


@pytest.mark.parametrize("variant", FLUX)
def test_bfl_names_convert_into_the_bundled_transformer(variant):
    """diffusers' single-file converter reads BFL names into exactly the model the config builds."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    bfl = bfl_shapes(component_config(variant, "transformer"))
    converted = convert_flux_transformer_checkpoint_to_diffusers(
        {k: torch.empty(s, device="meta") for k, s in bfl.items()}
    )
    assert {k: tuple(t.shape) for k, t in converted.items()} == component_shapes(variant, "transformer")


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_flux_files_are_told_apart_from_their_names(prefix):
    dev = {prefix + k: list(s) for k, s in bfl_shapes(component_config(Variant.FLUX1_DEV, "transformer")).items()}
    schnell = {
        prefix + k: list(s) for k, s in bfl_shapes(component_config(Variant.FLUX1_SCHNELL, "transformer")).items()
    }
    info = detect_checkpoint(dev)
    assert (info.variant, info.denoiser_only, info.fp8) == (Variant.FLUX1_DEV, True, False)
    assert detect_checkpoint(schnell).variant is Variant.FLUX1_SCHNELL
    fp8 = detect_checkpoint(dev, dtypes={k: "F8_E4M3" for k in dev})
    assert fp8.fp8 and fp8.family.value == "flux1"
    if prefix:  # ComfyUI's all-in-one checkpoints carry the text encoders and the VAE beside it
        whole = dict(dev, **{"text_encoders.clip_l.transformer.x.weight": [1], "vae.decoder.conv_in.weight": [1]})
        assert detect_checkpoint(whole).denoiser_only is False


def test_parts_kept_alone_are_no_base_model_and_say_what_they_are():
    with pytest.raises(CheckpointProblem, match="a T5 text encoder alone"):
        detect_checkpoint({"encoder.block.0.layer.0.SelfAttention.q.weight": [4096, 4096]})
    with pytest.raises(CheckpointProblem, match=r"a VAE alone \(like ae.safetensors\)"):
        detect_checkpoint({"decoder.conv_in.weight": [512, 16, 3, 3], "encoder.conv_in.weight": [128, 3, 3, 3]})


def test_a_flux_transformer_file_alone_asks_for_its_companions_in_one_sentence(tmp_path, capsys):
    tiny = dict(
        component_config(Variant.FLUX1_DEV, "transformer"),
        num_layers=1,
        num_single_layers=1,
        num_attention_heads=2,
        attention_head_dim=8,
        joint_attention_dim=32,
        pooled_projection_dim=32,
    )
    path = tmp_path / "flux1-dev-fp8.safetensors"
    save_file({k: torch.zeros(s, dtype=torch.float8_e4m3fn) for k, s in bfl_shapes(tiny).items()}, str(path))
    args = ["generate", "--base", str(path), "--prompt", "x", "--device", "cpu", "--out", str(tmp_path / "o.png")]
    assert main(args) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"loraloom: error: {path}: a Flux.1 [dev] transformer file (fp8) alone needs the CLIP-L text encoder file "
        "(clip_l.safetensors), the T5-XXL text encoder file (t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors) "
        "and the VAE file (ae.safetensors): pick them with the model picker, or give --clip-l, --t5 and --vae"
    )


def test_the_flux_config_folder_has_clip_bpe_only_for_clip(loraloom_home):
    folder = config_folder(Variant.FLUX1_SCHNELL)
    assert (folder / "tokenizer" / "vocab.json").is_file() and (folder / "tokenizer" / "merges.txt").is_file()
    assert not (folder / "tokenizer_2" / "vocab.json").exists()  # T5's tokenizer is no BPE
    assert component_config(Variant.FLUX1_SCHNELL, "transformer")["guidance_embeds"] is False


def test_single_file_flux_skeletons_are_the_transformer_file_in_bfl_names(tmp_path, monkeypatch):
    """``skeleton --family flux1-dev --single-file`` writes ComfyUI's transformer-only file; its
    names and shapes (on the meta device, not written here: 24 GB) are the ones diffusers' converter
    reads into the bundled transformer."""
    from app.engine import skeleton

    written = {}

    def fake_write(target, entries, make, metadata=None):  # the header only: no 24 GB
        written.update({name: tuple(shape) for name, shape, _ in entries})
        return 0

    monkeypatch.setattr(skeleton, "write_safetensors_streamed", fake_write)
    monkeypatch.setattr(skeleton, "component_shapes", component_shapes)  # this module's cached layout
    target = write_skeleton(tmp_path / "s", Variant.FLUX1_SCHNELL, single_file=True, dtype="bf16")
    assert target.name == "flux1-schnell.safetensors"
    config = component_config(Variant.FLUX1_SCHNELL, "transformer")
    assert written == dict(bfl_shapes(config))


def test_a_variant_without_bundled_configs_gets_a_sentence_not_a_missing_file(tmp_path, monkeypatch):
    """A family whose real configs are not bundled yet says so, before any file is written."""
    from app.engine import skeleton
    from app.engine.single_file import Variant

    missing = [v for v in Variant if not (v.config_source / "model_index.json").is_file()]
    if not missing:
        pytest.skip("every variant's configs are bundled")
    with pytest.raises(skeleton.SkeletonError, match=r"configs are not bundled yet"):
        skeleton.write_skeleton(tmp_path / "out", missing[0])
    assert not (tmp_path / "out").exists()
