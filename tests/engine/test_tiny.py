"""Tiny offline SD models: random ones from write_tiny_model and the pre-trained fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from app.engine import tiny  # noqa: E402
from app.engine.tiny import pretrained_tiny_path, quiet_libraries, write_tiny_model  # noqa: E402


def _load(path: Path, cls_name: str):
    import diffusers

    quiet_libraries()
    pipe = getattr(diffusers, cls_name).from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _render(pipe, prompt, seeds, steps=4, guidance=5.0):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe(
        [prompt] * len(seeds), num_inference_steps=steps, guidance_scale=guidance, height=64, width=64, generator=gens
    ).images


def _mean_rgb(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.float32).reshape(-1, 3).mean(0) / 255 for im in images])


# ---------------------------------------------------------------------------- random models
def test_sd1_loads_offline_and_renders(tiny_sd1):
    index = json.loads((tiny_sd1 / "model_index.json").read_text())
    assert index["safety_checker"] == [None, None]
    assert index["requires_safety_checker"] is False
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_sd1 / sub).is_dir()
    pipe = _load(tiny_sd1, "StableDiffusionPipeline")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.vae_scale_factor == 8
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64
    # the real SD1 layout: conv proj_in/out, to_q/to_k/to_v/to_out.0 in the attentions
    assert isinstance(pipe.unet.down_blocks[0].attentions[0].proj_in, torch.nn.Conv2d)
    keys = set(pipe.unet.state_dict())
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight" in keys
    assert "up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.weight" in keys
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size == 32
    sched = pipe.scheduler.config
    assert (type(pipe.scheduler).__name__, sched.steps_offset, sched.prediction_type) == (
        "EulerDiscreteScheduler",
        1,
        "epsilon",
    )
    image = _render(pipe, "a red cat", [0])[0]
    assert image.size == (64, 64) and image.mode == "RGB"


def test_sdxl_loads_offline_and_renders(tiny_sdxl):
    pipe = _load(tiny_sdxl, "StableDiffusionXLPipeline")
    assert type(pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    cfg = pipe.unet.config
    assert cfg.addition_embed_type == "text_time"
    assert cfg.cross_attention_dim == (pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size)
    assert isinstance(pipe.unet.down_blocks[1].attentions[0].proj_in, torch.nn.Linear)
    assert pipe.tokenizer_2.pad_token == "!"
    image = _render(pipe, "a blue dog", [0])[0]
    assert image.size == (64, 64)


def test_tokenizer_round_trip_and_padding(tiny_sd1):
    from transformers import CLIPTokenizer

    folder = tiny_sd1 / "tokenizer"
    assert (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    tok = CLIPTokenizer.from_pretrained(folder)
    ids = tok("a red cat").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "red</w>", "cat</w>", "<|endoftext|>"]
    assert tok.decode(ids, skip_special_tokens=True) == "a red cat"
    # unknown words fall back to byte pieces and still round-trip
    odd = tok("Zebra xylophone 42!").input_ids
    assert tok.decode(odd, skip_special_tokens=True) == "zebra xylophone 4 2 !"
    padded = tok("a red cat", padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    assert tok.model_max_length == 77 and len(padded) == 77
    assert padded[:5] == ids and set(padded[5:]) == {tok.eos_token_id}
    assert len(tok("word " * 200, truncation=True, max_length=77).input_ids) == 77


def test_same_seed_same_weights(tiny_sd1, tmp_path):
    again = write_tiny_model(tmp_path / "again", family="sd1", seed=0)
    other = write_tiny_model(tmp_path / "other", family="sd1", seed=1)
    for rel in (
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
    ):
        assert (again / rel).read_bytes() == (tiny_sd1 / rel).read_bytes(), rel
    assert (other / "unet/diffusion_pytorch_model.safetensors").read_bytes() != (
        tiny_sd1 / "unet/diffusion_pytorch_model.safetensors"
    ).read_bytes()


def test_refuses_unknown_family_and_nonempty_folder(tmp_path):
    with pytest.raises(ValueError, match="sd9"):
        write_tiny_model(tmp_path / "x", family="sd9")
    with pytest.raises(ValueError):
        pretrained_tiny_path("flux")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="busy"):
        write_tiny_model(busy)
    assert (busy / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_tiny_model(empty) / "model_index.json").is_file()
    write_tiny_model(busy, overwrite=True)
    assert not (busy / "notes.txt").exists() and (busy / "model_index.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"]  # no temp left


def test_missing_pretrained_fixture_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tiny, "_FIXTURES", tmp_path)
    with pytest.raises(FileNotFoundError, match="pretrain_tiny.py"):
        pretrained_tiny_path("sd1")


# ---------------------------------------------------------------------------- pre-trained
@pytest.fixture(scope="module")
def pretrained_sd1():
    return _load(pretrained_tiny_path("sd1"), "StableDiffusionPipeline")


def test_pretrained_vae_round_trips_flat_red(pretrained_sd1):
    vae = pretrained_sd1.vae
    x = torch.tensor([0.9, -0.8, -0.8]).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        rec = vae.decode(z).sample.clamp(-1, 1)
    assert z.shape == (1, 4, 8, 8)
    assert 0.3 < float((z * vae.config.scaling_factor).abs().mean()) < 3  # scaled ~ unit size
    assert float((rec - x).abs().mean() / 2) < 0.03  # measured 0.004-0.008


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_pretrained_prompt_colour_reaches_the_picture(family, pretrained_sd1):
    pipe = pretrained_sd1 if family == "sd1" else _load(pretrained_tiny_path("sdxl"), "StableDiffusionXLPipeline")
    seeds = [0, 1, 2, 3]
    red = _mean_rgb(_render(pipe, "red", seeds, steps=10))
    blue = _mean_rgb(_render(pipe, "blue", seeds, steps=10))
    # per seed; measured margins (seeds 0-7): red R-B >= 0.44, blue B-R >= 0.61
    assert (red[:, 0] - red[:, 2] > 0.2).all(), red
    assert (blue[:, 2] - blue[:, 0] > 0.3).all(), blue
    assert (red[:, 0] - blue[:, 0] > 0.2).all() and (blue[:, 2] - red[:, 2] > 0.3).all()


# ---------------------------------------------------------------------------- tiny Flux.1
def test_flux1_loads_offline_and_renders(tiny_flux1):
    """The tiny Flux folder has every component of FLUX.1-dev's repo, loads with no network
    and renders 64x64; both tokenizers were built offline."""
    index = json.loads((tiny_flux1 / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    assert (
        index["tokenizer_2"][1] in ("T5TokenizerFast", "T5Tokenizer") and index["text_encoder_2"][1] == "T5EncoderModel"
    )
    assert json.loads((tiny_flux1 / tiny.INFO_FILE).read_text())["family"] == "flux1"
    pipe = _load(tiny_flux1, "FluxPipeline")
    tr = pipe.transformer
    assert (len(tr.transformer_blocks), len(tr.single_transformer_blocks)) == (2, 2)
    assert tr.config.guidance_embeds and pipe.vae.config.latent_channels == 16
    keys = set(tr.state_dict())
    # the module names LoRA files address (diffusers layout of the real model)
    for key in (
        "transformer_blocks.0.attn.to_q.weight",
        "transformer_blocks.0.attn.add_q_proj.weight",
        "transformer_blocks.0.ff.net.0.proj.weight",
        "transformer_blocks.0.norm1.linear.weight",
        "single_transformer_blocks.1.proj_mlp.weight",
        "single_transformer_blocks.1.attn.to_k.weight",
    ):
        assert key in keys, key
    ids = pipe.tokenizer_2("a red photo ohwx", padding="max_length", max_length=8).input_ids
    assert ids[-1] == pipe.tokenizer_2.pad_token_id and pipe.tokenizer_2.eos_token_id in ids
    gen = torch.Generator().manual_seed(0)
    image = pipe(
        "a red cat",
        height=64,
        width=64,
        num_inference_steps=2,
        guidance_scale=3.5,
        max_sequence_length=32,
        generator=gen,
    ).images[0]
    again = pipe(
        "a red cat",
        height=64,
        width=64,
        num_inference_steps=2,
        guidance_scale=3.5,
        max_sequence_length=32,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (64, 64) and np.array_equal(np.asarray(image), np.asarray(again))
