"""The training engine on tiny models: files other tools load, exact resume, safe saves, caches."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import fail_writes_half_way, small_config, trained_to

from app.core.events import ImageReady
from app.core.safetensors_header import read_header
from app.engine.tiny import load_tiny_pipeline
from app.engine.training import Trainer, TrainError, train
from app.engine.training.run import read_log

pytestmark = pytest.mark.slow

KOHYA_PARTS = {"lora_down.weight", "lora_up.weight", "alpha"}


def _render(pipe, prompt="sks"):
    return pipe(
        prompt, generator=torch.Generator().manual_seed(0), num_inference_steps=2, width=64, height=64, output_type="np"
    ).images


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_saved_file_is_pure_kohya_and_diffusers_loads_it_identically(family, tiny_sd1, tiny_sdxl, red_dataset):
    base = tiny_sd1 if family == "sd1" else tiny_sdxl
    config = small_config(
        base,
        red_dataset,
        steps=2,
        network={"targets": "locon", "conv_rank": 2, "conv_alpha": 1.5, "train_text_encoder": True},
        optimizer={"learning_rate": 2e-2},
        output={"diffusers_copy": family == "sd1"},
    )
    trainer = Trainer(config)
    result = trainer.run()
    assert result.status == "done" and result.final.name == "red.safetensors"

    header = read_header(result.final)
    te_prefixes = ("lora_te_",) if family == "sd1" else ("lora_te1_", "lora_te2_")
    names = {k.split(".", 1)[0] for k in header.tensors}
    assert all(n.startswith(("lora_unet_",) + te_prefixes) for n in names)
    assert all(k.split(".", 1)[1] in KOHYA_PARTS for k in header.tensors)
    for prefix in ("lora_unet_",) + te_prefixes:
        assert any(n.startswith(prefix) for n in names), f"no {prefix} layers"
    tensors = load_file(str(result.final))
    alphas = {k: v for k, v in tensors.items() if k.endswith(".alpha")}
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in alphas.values())
    assert tensors["lora_unet_down_blocks_1_resnets_0_conv1.alpha"].item() == 1.5  # conv_alpha (3x3)
    assert tensors["lora_unet_down_blocks_1_resnets_0_conv1.lora_down.weight"].shape[0] == 2  # conv_rank
    to_q = [k for k in alphas if k.endswith("attn1_to_q.alpha")][0]
    assert tensors[to_q].item() == 4.0
    proj_in = [k for k in tensors if k.endswith("proj_in.lora_down.weight")][0]
    assert tensors[proj_in].dim() == (4 if family == "sd1" else 2)  # SD1 1x1 conv, SDXL Linear
    meta = header.metadata
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_network_dim"] == "4"
    assert meta["ss_base_model_version"] == ("sd_v1" if family == "sd1" else "sdxl_base_v1-0")
    assert meta["modelspec.trigger_phrase"] == "sks" and meta["ss_steps"] == "2"
    assert "sks" in meta["ss_tag_frequency"] and 'name = "red"' in meta["loraloom.config"]

    fresh = load_tiny_pipeline(base)
    before = _render(fresh)
    fresh.load_lora_weights(str(result.final))
    for module in [trainer.session.pipe.unet] + trainer.session.net.text_encoders:
        module.eval()
    ours = _render(trainer.session.pipe)
    assert abs(_render(fresh) - ours).max() < 1e-5
    assert abs(ours - before).max() > 1e-3  # the adapter does something
    if family == "sd1":
        copy = load_tiny_pipeline(base)
        copy.load_lora_weights(str(result.run_dir / "diffusers"))
        assert abs(_render(copy) - ours).max() < 1e-5


def test_resume_repeats_the_uninterrupted_losses_exactly(tiny_sd1, red_dataset):
    options = dict(
        steps=4,
        gradient_accumulation=2,
        network={"dropout": 0.1},
        data={"caption_dropout": 0.3, "shuffle_tags": True, "flip": True},
    )
    whole = train(small_config(tiny_sd1, red_dataset, name="whole", **options))
    seen = []
    first = train(
        small_config(tiny_sd1, red_dataset, name="part", **options),
        on_event=lambda e: seen.append(e),
        should_stop=lambda: trained_to(seen, 2),
    )
    assert first.status == "cancelled" and first.step == 2
    assert [p.name for p in first.checkpoints] == ["part-step000002.safetensors"]
    rest = train(resume=first.run_dir)
    assert rest.status == "done" and sorted(rest.losses) == [3, 4]
    assert {**first.losses, **rest.losses} == whole.losses  # exactly, float for float
    assert [r["loss"] for r in read_log(first.run_dir / "log.jsonl")] == [whole.losses[s] for s in (1, 2, 3, 4)]
    a, b = load_file(str(whole.final)), load_file(str(rest.final))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_checkpoint_write_keeps_the_previous_one_and_leaves_no_partial_file(
    tiny_sd1, red_dataset, monkeypatch
):
    import app.engine.training.loop as trainer_module
    from app.core import paths

    real_save = trainer_module.lora_files.save_kohya
    writing = {"name": ""}
    saved = {}

    def save_and_remember(path, tensors, metadata):
        writing["name"] = path.name
        out = real_save(path, tensors, metadata)
        saved[path.name] = path.read_bytes()
        return out

    monkeypatch.setattr(trainer_module.lora_files, "save_kohya", save_and_remember)
    fail_writes_half_way(monkeypatch, when=lambda: writing["name"] == "crash-step000002.safetensors")
    config = small_config(tiny_sd1, red_dataset, name="crash", steps=3, output={"save_every": 1, "keep_last": 5})
    with pytest.raises(KeyboardInterrupt):
        train(config)
    folder = paths.runs_dir() / "crash"
    checkpoints = folder / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["crash-step000001.safetensors"]  # no partial, no temp
    assert (checkpoints / "crash-step000001.safetensors").read_bytes() == saved["crash-step000001.safetensors"]
    monkeypatch.undo()
    resumed = train(resume=folder)  # the state saved with the step-1 checkpoint is whole
    assert sorted(resumed.losses) == [2, 3] and resumed.final.is_file()
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "crash-step000001.safetensors",
        "crash-step000002.safetensors",
    ]


def test_old_checkpoints_are_pruned_and_a_second_run_reuses_every_cache_entry(tiny_sd1, red_dataset):
    first = Trainer(small_config(tiny_sd1, red_dataset, name="a", steps=4, output={"save_every": 1, "keep_last": 2}))
    result = first.run()
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == [
        "a-step000002.safetensors",
        "a-step000003.safetensors",
    ]
    # Four identical red pictures: one content key, encoded once.
    assert (
        first.session.latents.misses == 1 and first.session.latents.hits == 3 and first.session.text_cache.misses >= 1
    )
    second = Trainer(small_config(tiny_sd1, red_dataset, name="a", steps=1))
    again = second.run()
    assert again.run_dir.name == "a-2"  # a new folder, the first run untouched
    assert second.session.latents.misses == 0 and second.session.latents.hits == 4
    assert second.session.text_cache.misses == 0


def test_every_optimizer_objective_and_option_trains(tiny_sdxl, red_dataset, tmp_path):
    from train_helpers import write_images

    reg = write_images(tmp_path / "reg", colour=(40, 40, 200), caption="square")
    config = small_config(
        tiny_sdxl,
        red_dataset,
        steps=2,
        prediction="v_prediction",
        noise_offset=0.05,
        min_snr_gamma=5.0,
        gradient_checkpointing=True,
        datasets=[{"path": str(red_dataset)}, {"path": str(reg), "regularization": True}],
        optimizer={"kind": "prodigy", "learning_rate": 1.0, "schedule": "cosine", "warmup_steps": 1},
        network={"dora": True, "train_text_encoder": True},
        data={"no_upscale": True, "reg_weight": 0.5},
        sample={"every": 2, "prompts": ["{trigger}, a square"], "steps": 2},
    )
    events = []
    result = train(config, on_event=events.append)
    assert result.status == "done" and all(torch.isfinite(torch.tensor(v)) for v in result.losses.values())
    samples = [e for e in events if isinstance(e, ImageReady)]
    assert len(samples) == 1 and samples[0].meta["prompt"] == "sks, a square"
    assert any(k.endswith(".dora_scale") for k in read_header(result.final).tensors)
    assert read_header(result.final).metadata["ss_v_parameterization"] == "True"


def test_adamw8bit_without_bitsandbytes_says_what_to_do(tiny_sd1, red_dataset, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a)
    )
    with pytest.raises(TrainError, match="'adamw8bit' needs the bitsandbytes package .* use kind = \"adamw\""):
        train(small_config(tiny_sd1, red_dataset, optimizer={"kind": "adamw8bit"}))


@pytest.fixture
def umask_022():
    import os

    before = os.umask(0o022)
    yield
    os.umask(before)


def test_everything_a_run_writes_honours_the_umask(tiny_sd1, red_dataset, umask_022):
    """config.toml, log.jsonl, samples, checkpoints, state/ and the diffusers copy are ordinary
    files (0644 under umask 022), not the 0600 of the temp files behind the atomic writes."""
    import stat

    config = small_config(
        tiny_sd1,
        red_dataset,
        steps=2,
        output={"diffusers_copy": True},
        sample={"every": 2, "prompts": ["{trigger}, a square"], "steps": 2},
    )
    result = train(config)
    assert result.status == "done"
    found = {
        p.relative_to(result.run_dir).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in result.run_dir.rglob("*")
    }
    assert "config.toml" in found and "log.jsonl" in found
    assert any(name.startswith("samples/") and name.endswith(".png") for name in found)
    assert any(name.startswith("state/") for name in found)
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o755 if (result.run_dir / name).is_dir() else 0o644)
    }
    assert not wrong
