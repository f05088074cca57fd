"""Flux.1 from the files ComfyUI and Forge users keep: the tiny Flux written as a BFL-named
transformer file + clip_l + t5xxl + ae (and as one all-in-one checkpoint) renders the same picture
as its diffusers folder; an fp8 file keeps fp8 storage; the T5 tokenizer comes once from the (fake)
Hub; every wrong or missing file is one sentence naming it."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from fake_hub import FakeFile, FakeRepo
from flux_bfl import bfl_shapes
from flux_comfy_files import configs_only, write_all_in_one, write_files
from PIL import Image

from app.cli import main
from app.core.configs import GenerateRequest, ModelSpec
from app.core.model_choice import ModelChoice, display_name, parse, usual_companions
from app.engine import flux_state
from app.engine.models import ModelError, check_source, load_model
from app.engine.rendering import Renderer
from app.engine.single_file import Variant, component_config


@pytest.fixture(scope="module")
def flux_files(tiny_flux1, tmp_path_factory):
    root = tmp_path_factory.mktemp("flux-files")
    return {
        "files": write_files(tiny_flux1, root / "files"),
        "fp8": write_files(tiny_flux1, root / "fp8", prefix="model.diffusion_model.", fp8=True),
        "aio": write_all_in_one(tiny_flux1, root / "aio" / "flux1-dev-all-in-one.safetensors"),
        "config": configs_only(tiny_flux1, root / "config"),
        "config_no_t5_tokenizer": configs_only(tiny_flux1, root / "config-bare", t5_tokenizer=False),
    }


def _choice(files: dict, config, **kw) -> str:
    parts = {k: str(files[k]) for k in ("clip_l", "t5", "vae")}
    return ModelChoice(str(files["main"]), config=str(config), **{**parts, **kw}).text()


@functools.cache
def _render_pipe(base: str) -> torch.Tensor:
    pipe = load_model(ModelSpec(base=base, device="cpu", dtype="fp32")).pipe
    out = pipe(
        "a red square", num_inference_steps=2, height=64, width=64, max_sequence_length=32, output_type="pt",
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    return out.images


def test_bfl_names_both_ways_match_diffusers_converter_at_the_real_rows():
    """diffusers' converter hard-codes the real width; at its row counts (one column each, so it
    is cheap) ours reads and writes exactly what it does."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    config = dict(component_config(Variant.FLUX1_DEV, "transformer"), num_layers=1, num_single_layers=1)
    gen = torch.Generator().manual_seed(0)
    bfl = {k: torch.randn((s[0], 1) if len(s) > 1 else s, generator=gen) for k, s in bfl_shapes(config).items()}
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    ours = flux_state.from_bfl(bfl, config)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    back = flux_state.to_bfl(theirs, config)
    assert back.keys() == bfl.keys() and all(torch.equal(back[k], bfl[k]) for k in bfl)
    assert flux_state.unread(bfl, config) == [] and flux_state.missing(bfl, config) == []


def test_separate_files_render_the_folders_picture(tiny_flux1, flux_files, tmp_path):
    renderer = Renderer()
    base = _choice(flux_files["files"], flux_files["config"])
    values = dict(prompt="a red square", seed=5, steps=2, width=64, height=64, guidance=3.5)
    folder = renderer.render(GenerateRequest.from_dict(dict(values, base=str(tiny_flux1))), out_path=tmp_path / "a.png")
    files = renderer.render(GenerateRequest.from_dict(dict(values, base=base)), out_path=tmp_path / "b.png")
    assert renderer.loaded.family.value == "flux1" and renderer.loaded.source == base
    a, b = (np.asarray(Image.open(r.path).convert("RGB"), dtype=np.int16) for r in (folder, files))
    assert a.std() > 0 and np.array_equal(a, b)
    # the patcher reads W0 back from the files of the choice (CLIP and T5 included)
    assert len(renderer.mixer._base.files) == 4


def test_an_all_in_one_checkpoint_renders_the_folders_picture(tiny_flux1, flux_files):
    base = ModelChoice(str(flux_files["aio"]), config=str(flux_files["config"])).text()
    diff = (_render_pipe(str(tiny_flux1)) - _render_pipe(base)).abs().max().item()
    assert diff < 1e-5  # the same weights; float sums differ in the last bit with memory alignment


def test_an_fp8_transformer_file_keeps_fp8_storage(tiny_flux1, flux_files):
    files = dict(flux_files["files"], main=flux_files["fp8"]["main"])
    loaded = load_model(ModelSpec(base=_choice(files, flux_files["config"]), device="cpu", dtype="fp32"))
    qkv = loaded.pipe.transformer.transformer_blocks[0].attn.to_q.weight
    assert qkv.dtype == torch.float8_e4m3fn
    assert loaded.pipe.transformer.transformer_blocks[0].attn.norm_q.weight.dtype == torch.float32
    reference = _render_pipe(str(tiny_flux1))
    diff = (reference - _render_pipe(_choice(files, flux_files["config"]))).abs().max().item()
    assert 0 < diff < 0.1  # fp8 rounding of the transformer only


def test_the_t5_tokenizer_comes_once_from_the_hub(tiny_flux1, flux_files, fake_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", fake_hub.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    tokenizer = {
        f"tokenizer_2/{p.name}": FakeFile(p.read_bytes(), lfs=False) for p in (tiny_flux1 / "tokenizer_2").iterdir()
    }
    monkeypatch.setitem(
        fake_hub.repos, "black-forest-labs/FLUX.1-schnell", FakeRepo("black-forest-labs/FLUX.1-schnell", tokenizer)
    )
    base = _choice(flux_files["files"], flux_files["config_no_t5_tokenizer"])
    pipe = load_model(ModelSpec(base=base, device="cpu", dtype="fp32")).pipe
    assert pipe.tokenizer_2("a red square").input_ids == _t5_ids(tiny_flux1, "a red square")
    got = [r for r in fake_hub.requests if "tokenizer_2/" in r.get("path", "")]
    assert got, "the tokenizer was fetched from the fake Hub"
    # offline now: the cached copy is used, with no request
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    fake_hub.reset()
    load_model(ModelSpec(base=base, device="cpu", dtype="fp32"))
    assert not [r for r in fake_hub.requests if "tokenizer_2/" in r.get("path", "")]


def _t5_ids(folder, text):
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(folder / "tokenizer_2"))(text).input_ids


def test_offline_without_the_t5_tokenizer_is_one_sentence(flux_files, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as err:
        load_model(ModelSpec(base=_choice(flux_files["files"], flux_files["config_no_t5_tokenizer"]), device="cpu"))
    assert str(err.value) == (
        "the T5 tokenizer (tokenizer_2/ of black-forest-labs/FLUX.1-schnell, about 2.4 MB) is not downloaded and "
        "the Hub cannot be reached: connect once, or give a local tokenizer folder as t5_tokenizer="
    )
    # a local tokenizer folder is enough
    folder = flux_files["config"] / "tokenizer_2"
    base = _choice(flux_files["files"], flux_files["config_no_t5_tokenizer"], t5_tokenizer=str(folder))
    assert load_model(ModelSpec(base=base, device="cpu", dtype="fp32")).pipe.tokenizer_2 is not None


def test_the_cli_takes_the_companions_as_options(flux_files, tmp_path, capsys):
    f = flux_files["files"]
    out = tmp_path / "o.png"
    args = ["generate", "--base", str(f["main"]), "--prompt", "x", "--device", "cpu", "--steps", "1"]
    args += ["--size", "64x64", "--out", str(out), "--clip-l", str(f["clip_l"]), "--t5", str(f["t5"])]
    # the VAE left out: one sentence naming what is missing and what lies beside the file
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"loraloom: error: {f['main']}: a Flux.1 [dev] transformer file alone needs the VAE file (ae.safetensors): pick "
        f"them with the model picker, or give --clip-l, --t5 and --vae; beside it: clip_l={f['clip_l']}, "
        f"t5={f['t5']}, vae={f['vae']}"
    )


def test_wrong_and_missing_companions_are_sentences_naming_the_file(flux_files, tmp_path):
    f = flux_files["files"]
    swapped = ModelChoice(str(f["main"]), clip_l=str(f["clip_l"]), t5=str(f["t5"]), vae=str(f["clip_l"]))
    with pytest.raises(ModelError) as err:
        load_model(ModelSpec(base=swapped.text(), device="cpu"))
    assert str(err.value) == (
        f"{f['clip_l']}: this is a CLIP text encoder alone (like clip_l.safetensors), not the VAE file (ae.safetensors)"
    )
    gone = ModelChoice(str(f["main"]), clip_l=str(tmp_path / "clip_l.safetensors"), t5=str(f["t5"]), vae=str(f["vae"]))
    with pytest.raises(ModelError) as err:
        check_source(gone.text())
    assert (
        str(err.value)
        == f"{tmp_path / 'clip_l.safetensors'}: no such file (the CLIP-L text encoder file (clip_l.safetensors))"
    )
    with pytest.raises(ModelError, match=r"'clip=x' in the model .* is no companion file"):
        check_source(f"{f['main']}|clip=x")
    t5_for_clip = ModelChoice(str(f["main"]), clip_l=str(f["t5"]), t5=str(f["t5"]), vae=str(f["vae"]))
    with pytest.raises(ModelError, match=r"this is a T5 text encoder alone .*, not the CLIP-L text encoder file"):
        load_model(ModelSpec(base=t5_for_clip.text(), device="cpu"))


def test_a_model_choice_is_one_string_both_ways(flux_files):
    f = flux_files["files"]
    text = _choice(f, flux_files["config"])
    assert parse(text).text() == text and parse(text).main == str(f["main"])
    assert display_name(text) == "flux1-dev.safetensors + clip_l.safetensors + t5xxl_fp16.safetensors + ae.safetensors"
    assert usual_companions(f["main"]) == {k: str(f[k]) for k in ("clip_l", "t5", "vae")}


def test_comfyui_folders_are_searched_for_companions(tmp_path):
    models = tmp_path / "ComfyUI" / "models"
    for rel in (
        "unet/flux1-dev.safetensors",
        "clip/clip_l.safetensors",
        "clip/t5xxl_fp8_e4m3fn.safetensors",
        "vae/ae.safetensors",
    ):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(b"")
    found = usual_companions(models / "unet" / "flux1-dev.safetensors")
    assert found == {
        "clip_l": str(models / "clip" / "clip_l.safetensors"),
        "t5": str(models / "clip" / "t5xxl_fp8_e4m3fn.safetensors"),
        "vae": str(models / "vae" / "ae.safetensors"),
    }


def test_companions_with_an_sd_checkpoint_are_refused(tmp_path, tiny_flux1, flux_files):
    from safetensors.torch import save_file

    sd = tmp_path / "sd15.safetensors"
    save_file(
        {
            "cond_stage_model.transformer.text_model.x.weight": torch.zeros(1),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1, 4, 1, 1),
        },
        str(sd),
    )
    with pytest.raises(ModelError) as err:
        check_source(ModelChoice(str(sd), vae=str(flux_files["files"]["vae"])).text())
    assert str(err.value) == (
        f"{sd}: companion files (clip_l=, t5=, vae=) go with Flux.1 transformer files only; leave them out"
    )


def test_the_skeleton_writer_makes_a_transformer_file_that_loads_as_written(tiny_flux1, flux_files, tmp_path):
    """The BFL transformer file ``skeleton --single-file`` writes, at the tiny Flux's widths: read back
    by the loader, every diffusers tensor is the skeleton's value for that name."""
    from app.engine.skeleton import random_tensor, write_bfl_transformer

    config = json.loads((tiny_flux1 / "transformer" / "config.json").read_text())
    shapes = {k: tuple(v.shape) for k, v in _render_loaded(str(tiny_flux1)).transformer.state_dict().items()}
    target = tmp_path / "flux1-dev.safetensors"
    write_bfl_transformer(target, config, shapes, torch.float32, 7, {"loraloom_skeleton": "flux1-dev"})
    files = dict(flux_files["files"], main=target)
    state = _render_loaded(_choice(files, flux_files["config"])).transformer.state_dict()
    assert state.keys() == shapes.keys()
    assert all(torch.equal(state[k], random_tensor(k, shapes[k], torch.float32, 7)) for k in shapes)


def _render_loaded(base: str):
    return load_model(ModelSpec(base=base, device="cpu", dtype="fp32")).pipe
