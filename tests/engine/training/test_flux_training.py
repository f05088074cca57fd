"""Flux.1 LoRA training on the tiny Flux: the flow-matching objective, the kohya sd-scripts file
diffusers' Flux loader reads, exact resume, released text encoders, fp8 base, targets."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from train_helpers import small_config, trained_to

from app.core.events import ImageReady
from app.core.safetensors_header import read_header
from app.core.train_config import Targets, TrainConfig
from app.core.train_flow import TimestepSampling
from app.engine.families import engine
from app.engine.tiny import load_tiny_pipeline
from app.engine.training import Trainer, TrainError, train

pytestmark = pytest.mark.slow
FLUX = engine("flux1")


def _render(pipe, prompt="sks"):
    return pipe(
        prompt,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=2,
        guidance_scale=3.5,
        width=64,
        height=64,
        max_sequence_length=FLUX.max_sequence(pipe),
        output_type="np",
    ).images


def test_flux_saves_the_kohya_layout_and_diffusers_loads_it_identically(tiny_flux1, red_dataset):
    config = small_config(
        tiny_flux1,
        red_dataset,
        steps=2,
        network={"targets": "all_linear", "train_text_encoder": True},
        optimizer={"learning_rate": 2e-2},
        output={"diffusers_copy": True},
    )
    trainer = Trainer(config)
    result = trainer.run()
    assert result.status == "done"
    header = read_header(result.final)
    names = {k.split(".", 1)[0] for k in header.tensors}
    # sd-scripts' names (BFL's modules), q/k/v fused; CLIP-L as lora_te1_, no T5 layers
    for name in ("double_blocks_0_img_attn_qkv", "double_blocks_1_txt_attn_qkv", "double_blocks_0_img_mlp_0"):
        assert f"lora_unet_{name}" in names
    for name in ("double_blocks_0_img_mod_lin", "single_blocks_1_linear1", "single_blocks_0_modulation_lin"):
        assert f"lora_unet_{name}" in names
    assert not any("transformer_blocks" in n or "to_q" in n for n in names)
    assert any(n.startswith("lora_te1_text_model_encoder_layers_") for n in names)
    assert all(n.startswith(("lora_unet_", "lora_te1_")) for n in names)
    tensors = load_file(str(result.final))
    qkv = "lora_unet_double_blocks_0_img_attn_qkv"
    assert tensors[f"{qkv}.lora_down.weight"].shape == (12, 16)  # rank 4 x q, k, v
    assert tensors[f"{qkv}.lora_up.weight"].shape == (48, 12)
    assert tensors[f"{qkv}.alpha"].item() == 12.0  # alpha / rank stays 4 / 4
    meta = header.metadata
    assert meta["ss_base_model_version"] == "flux1"
    assert meta["modelspec.architecture"] == "flux-1-dev/lora"
    assert meta["ss_network_dim"] == "4" and meta["modelspec.trigger_phrase"] == "sks"

    # diffusers' kohya converter splits a single block's linear1 at the real model's widths
    # (3072 x 3 + 12288), so on the tiny model it reads everything but those layers: compare
    # without them (our single-block deltas are checked against the unfused LoRAs below).
    transformer = trainer.session.net.unet
    for name, param in transformer.named_parameters():
        if name.startswith("single_transformer_blocks.") and "lora_B" in name:
            param.data.zero_()
    double_only = result.run_dir / "double-only.safetensors"
    save_file({k: v for k, v in tensors.items() if "_single_blocks_" not in k}, str(double_only))
    for module in [transformer] + trainer.session.net.text_encoders:
        module.eval()
    ours = _render(trainer.session.pipe)
    fresh = load_tiny_pipeline(tiny_flux1)
    before = _render(fresh)
    fresh.load_lora_weights(str(double_only))
    assert abs(_render(fresh) - ours).max() < 1e-5
    assert abs(ours - before).max() > 1e-3  # the adapter does something
    copy = load_tiny_pipeline(tiny_flux1)
    copy.load_lora_weights(str(result.run_dir / "diffusers"))
    assert abs(_render(copy) - _render(trainer.session.pipe)).max() > 0  # the copy keeps the single blocks


def _delta(tensors, name):
    down, up = tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"]
    return up @ down * (tensors[f"{name}.alpha"] / down.shape[0])


def test_fused_layers_hold_each_modules_own_delta_and_zero_rows_for_untrained_ones(tiny_flux1, red_dataset):
    # attention only: a single block's linear1 fuses q, k, v (trained) with proj_mlp (not trained)
    config = small_config(
        tiny_flux1,
        red_dataset,
        name="att",
        steps=1,
        network={"targets": "attention"},
        optimizer={"learning_rate": 2e-2},
    )
    trainer = Trainer(config)
    result = trainer.run()
    tensors = load_file(str(result.final))
    assert not any("mlp" in k or "mod" in k for k in tensors)
    modules = dict(trainer.session.net.unet.named_modules())

    def own(path):
        layer = modules[path]
        return layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]

    fused = _delta(tensors, "lora_unet_single_blocks_0_linear1")
    assert fused.shape == (16 * 3 + 64, 16) and not fused[48:].any()  # proj_mlp's rows are zero
    parts = [own(f"single_transformer_blocks.0.attn.to_{x}") for x in "qkv"]
    assert torch.allclose(fused[:48], torch.cat(parts), atol=1e-6)
    qkv = _delta(tensors, "lora_unet_double_blocks_1_txt_attn_qkv")
    parts = [own(f"transformer_blocks.1.attn.add_{x}_proj") for x in "qkv"]
    assert torch.allclose(qkv, torch.cat(parts), atol=1e-6) and qkv.abs().sum() > 0


def test_flux_resume_repeats_the_uninterrupted_losses_exactly(tiny_flux1, red_dataset):
    options = dict(steps=4, data={"caption_dropout": 0.3}, flow={"timestep_sampling": "shift"})
    whole = train(small_config(tiny_flux1, red_dataset, name="whole", **options))
    seen = []
    first = train(
        small_config(tiny_flux1, red_dataset, name="part", **options),
        on_event=seen.append,
        should_stop=lambda: trained_to(seen, 2),
    )
    assert first.status == "cancelled" and first.step == 2
    rest = train(resume=first.run_dir)
    assert rest.status == "done" and sorted(rest.losses) == [3, 4]
    assert {**first.losses, **rest.losses} == whole.losses
    a, b = load_file(str(whole.final)), load_file(str(rest.final))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_t5_and_clip_leave_once_cached_and_samples_use_the_cached_prompts(tiny_flux1, red_dataset):
    events = []
    config = small_config(
        tiny_flux1, red_dataset, name="cached", steps=2, sample={"every": 2, "prompts": ["{trigger}, a photo"]}
    )
    trainer = Trainer(config, on_event=events.append)
    result = trainer.run()
    assert result.status == "done"
    pipe = trainer.session.pipe
    assert pipe.text_encoder is None and pipe.text_encoder_2 is None  # not resident during the steps
    assert not any(isinstance(m, torch.nn.Module) and "T5" in type(m).__name__ for m in pipe.components.values())
    samples = [e for e in events if isinstance(e, ImageReady)]
    assert len(samples) == 1 and samples[0].meta["prompt"] == "sks, a photo"


def test_fp8_base_stores_float8_weights_and_trains(tiny_flux1, red_dataset):
    config = small_config(tiny_flux1, red_dataset, name="fp8", steps=2, fp8_base=True, gradient_checkpointing=True)
    trainer = Trainer(config)
    result = trainer.run()
    assert result.status == "done"
    transformer = trainer.session.net.unet
    base = dict(transformer.named_parameters())["transformer_blocks.0.attn.to_q.base_layer.weight"]
    assert base.dtype == torch.float8_e4m3fn  # storage; computed in bf16
    lora = [p for n, p in transformer.named_parameters() if "lora_B" in n]
    assert all(p.dtype == torch.float32 for p in lora) and any(p.abs().sum() > 0 for p in lora)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())


def test_fp8_base_on_an_sd_base_is_refused_with_a_sentence(tiny_sd1, red_dataset):
    with pytest.raises(TrainError, match=r"fp8_base = true is for the large transformer bases .*, and .* is SD 1.x"):
        train(small_config(tiny_sd1, red_dataset, name="fp8sd", steps=1, fp8_base=True))


def test_dora_on_flux_is_refused_with_a_sentence(tiny_flux1, red_dataset):
    with pytest.raises(TrainError, match=r"network dora = true is not offered for Flux.1: .* set dora = false"):
        train(small_config(tiny_flux1, red_dataset, name="dora", steps=1, network={"dora": True}))


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
def test_adamw8bit_trains_flux_when_bitsandbytes_imports(tiny_flux1, red_dataset):
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # installed without a usable build (no CUDA)
        pytest.skip(f"bitsandbytes does not import here: {exc}")
    result = train(small_config(tiny_flux1, red_dataset, name="bnb", steps=2, optimizer={"kind": "adamw8bit"}))
    assert result.status == "done"


def test_flux_target_presets_select_the_expected_layers(tiny_flux1):
    transformer = load_tiny_pipeline(tiny_flux1).transformer
    attention = set(FLUX.lora_target_names(transformer, Targets.ATTENTION))
    mlp = set(FLUX.lora_target_names(transformer, Targets.ATTENTION_FF))
    every = set(FLUX.lora_target_names(transformer, Targets.ALL_LINEAR))
    assert "transformer_blocks.0.attn.add_q_proj" in attention and "single_transformer_blocks.1.attn.to_v" in attention
    assert len(attention) == 2 * 8 + 2 * 3  # double: q k v out for both streams; single: q k v
    assert mlp - attention == {
        *(f"transformer_blocks.{i}.{m}" for i in (0, 1) for m in ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")),
        *(f"single_transformer_blocks.{i}.{m}" for i in (0, 1) for m in ("proj_mlp", "proj_out")),
    }  # fmt: skip
    assert every - mlp == {
        *(f"transformer_blocks.{i}.{m}" for i in (0, 1) for m in ("norm1.linear", "norm1_context.linear")),
        *(f"single_transformer_blocks.{i}.norm.linear" for i in (0, 1)),
    }


def test_timestep_sampling_options_draw_where_they_should(tiny_flux1):
    sched = load_tiny_pipeline(tiny_flux1).scheduler

    def draw(sampling: str, side: int, **flow) -> torch.Tensor:
        config = TrainConfig.from_dict({"flow": {"timestep_sampling": sampling, **flow}})
        latents = torch.zeros(4000, 16, side, side)
        return FLUX.sample_timesteps(sched, config, latents, torch.Generator().manual_seed(0)) / 1000

    uniform = draw("uniform", 8)
    assert uniform.min() >= 0 and uniform.max() <= 1 and abs(uniform.mean() - 0.5) < 0.02
    assert abs(uniform.quantile(0.25) - 0.25) < 0.02  # flat
    logit = draw("logit_normal", 8)
    assert abs(logit.median() - 0.5) < 0.02 and logit.quantile(0.25) > 0.3  # the middle favoured
    assert draw("logit_normal", 8, logit_mean=1.0).median() > 0.7
    # shift: mu goes linearly from base_shift (256 image tokens) to max_shift (4096); 1024 px = 4096 tokens
    small, large = draw("shift", 8).median(), draw("shift", 128).median()
    mu_large = FLUX.resolution_shift(sched.config, 64 * 64)
    assert mu_large == pytest.approx(1.15)
    assert float(large) == pytest.approx(1 / (1 + math.exp(-mu_large)), abs=0.02)  # median of sigmoid(x + mu)
    assert 0.5 < small < large  # more tokens, noisier


def test_flow_matching_input_and_target():
    from diffusers import FlowMatchEulerDiscreteScheduler

    x0, noise = torch.full((2, 16, 4, 4), 0.5), torch.full((2, 16, 4, 4), -1.0)
    noisy, target = FLUX.noisy_and_target(FlowMatchEulerDiscreteScheduler(), x0, noise, torch.tensor([250.0, 1000.0]))
    assert torch.allclose(noisy[0], torch.full((16, 4, 4), 0.75 * 0.5 - 0.25))  # (1 - s) x0 + s noise
    assert torch.allclose(noisy[1], noise[1]) and torch.equal(target, noise - x0)


def test_schnell_adapters_say_schnell(tiny_flux1):
    transformer = load_tiny_pipeline(tiny_flux1).transformer
    assert FLUX.adapter_architecture(transformer, False) == "flux-1-dev/lora"
    transformer.register_to_config(guidance_embeds=False)
    assert FLUX.adapter_architecture(transformer, False) == "flux-1-schnell/lora"


def test_flow_settings_round_trip_and_bad_values_name_the_field():
    config = TrainConfig.from_dict({"flow": {"timestep_sampling": "logit_normal", "logit_std": 0.5}, "fp8_base": True})
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.flow.timestep_sampling is TimestepSampling.LOGIT_NORMAL and again.flow.logit_std == 0.5
    assert again.fp8_base is True
    with pytest.raises(Exception, match=r"\[flow\].*logit_std = 0.0 must be more than 0"):
        TrainConfig.from_dict({"flow": {"logit_std": 0.0}}, where="x.toml")
    with pytest.raises(
        Exception, match=r"timestep_sampling = 'sigmoid' is not one of 'uniform', 'logit_normal', 'shift'"
    ):
        TrainConfig.from_dict({"flow": {"timestep_sampling": "sigmoid"}})


def test_the_disk_space_estimate_counts_fluxs_16_latent_channels():
    from app.engine.training.run import space_needed

    config = TrainConfig.from_dict({"data": {"resolution": 1024}})
    _, sd_cache = space_needed(config, 1000, 10)
    _, flux_cache = space_needed(config, 1000, 10, channels=16)
    assert flux_cache == 4 * sd_cache == 10 * 16 * 128 * 128 * 2 * 4  # mean and std, float32
