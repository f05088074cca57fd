"""[network] init, the [ema] weight average and resuming several times on tiny models."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import small_config, trained_to

from app.core.safetensors_header import read_header
from app.core.train_config import NetworkOptions, load_run_config
from app.engine.tiny import load_tiny_pipeline
from app.engine.training import Trainer, train
from app.engine.training.network import attach
from app.engine.training.run import read_log

pytestmark = pytest.mark.slow


def _render(pipe):
    return pipe(
        "sks", generator=torch.Generator().manual_seed(0), num_inference_steps=2, width=64, height=64, output_type="np"
    ).images


def test_gaussian_and_kaiming_start_as_peft_defines_them(tiny_sd1):
    pipe = load_tiny_pipeline(tiny_sd1)
    gaussian = attach("sd1", pipe.unet, [], NetworkOptions(rank=4, init="gaussian"), seed=1)
    a = [p for n, p in pipe.unet.named_parameters() if "lora_A" in n]
    b = [p for n, p in pipe.unet.named_parameters() if "lora_B" in n]
    assert all(not p.any() for p in b)  # B = 0: step 0 is the base model
    values = torch.cat([p.detach().flatten() for p in a])
    assert abs(values.std().item() - 1 / 4) < 0.02  # N(0, 1/rank), the diffusers scripts' init
    assert gaussian.initial is None

    pipe = load_tiny_pipeline(tiny_sd1)
    attach("sd1", pipe.unet, [], NetworkOptions(rank=4, init="kaiming"), seed=1)
    for name, p in pipe.unet.named_parameters():
        if "lora_A" in name and p.dim() == 2:  # kaiming-uniform with a = sqrt(5): |A| <= 1/sqrt(fan_in)
            assert p.abs().max().item() <= 1 / p.shape[1] ** 0.5 + 1e-6


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_and_olora_files_apply_on_the_untouched_base_as_trained(init, tiny_sd1, red_dataset):
    config = small_config(
        tiny_sd1,
        red_dataset,
        steps=3,
        network={"init": init, "train_text_encoder": True, "targets": "locon"},
        optimizer={"learning_rate": 2e-2},
        output={"diffusers_copy": True},
    )
    trainer = Trainer(config)
    result = trainer.run()
    session = trainer.session
    for module in [session.pipe.unet] + session.net.text_encoders:
        module.eval()
    trained = _render(session.pipe)

    fresh = load_tiny_pipeline(tiny_sd1)
    base = _render(fresh)
    to_q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    residual = dict(session.pipe.unet.named_modules())[to_q].base_layer.weight
    untouched = dict(fresh.unet.named_modules())[to_q].weight
    assert (residual - untouched).abs().max() > 1e-3  # training ran on W0 - B0 A0, not on W0

    fresh.load_lora_weights(str(result.final))
    assert abs(_render(fresh) - trained).max() < 1e-4  # file + untouched base == the trained model
    copy = load_tiny_pipeline(tiny_sd1)
    copy.load_lora_weights(str(result.run_dir / "diffusers"))  # and so is the diffusers/peft copy
    assert abs(_render(copy) - trained).max() < 1e-4
    assert abs(trained - base).max() > 1e-3
    tensors = load_file(str(result.final))
    q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    assert tensors[f"{q}.lora_down.weight"].shape[0] == 8 and tensors[f"{q}.alpha"].item() == 8.0  # 2 x rank 4
    assert read_header(result.final).metadata["ss_network_dim"] == "8"


def test_pissa_with_dora_is_refused_by_name():
    from app.core.configs import ConfigError
    from app.core.train_config import TrainConfig

    with pytest.raises(ConfigError, match=r"my.toml \[network\]: init = 'pissa' cannot be combined with dora"):
        TrainConfig.from_dict({"network": {"init": "pissa", "dora": True}}, where="my.toml")


def test_the_ema_file_is_the_moving_average_of_the_saved_weights(tiny_sd1, red_dataset):
    decay = 0.5
    config = small_config(
        tiny_sd1,
        red_dataset,
        steps=4,
        output={"save_every": 1, "keep_last": 0},
        optimizer={"learning_rate": 2e-2},
        ema={"enabled": True, "decay": decay},
    )
    result = train(config)
    run = result.run_dir
    weights = [load_file(str(run / "checkpoints" / f"red-step{step:06d}.safetensors")) for step in (1, 2, 3)]
    weights.append(load_file(str(result.final)))
    # diffusers' EMAModel schedule: the first update copies, update n + 1 keeps min(decay, (1 + n) / (10 + n)).
    expected = dict(weights[0])
    for n, w in enumerate(weights[1:], start=1):
        keep = min(decay, (1 + n) / (10 + n))
        expected = {k: keep * expected[k] + (1 - keep) * w[k] for k in w}
    ema_path = run / "red-ema.safetensors"
    ema = load_file(str(ema_path))
    assert ema.keys() == weights[-1].keys()  # the same kohya layout, alphas included
    worst = max((ema[k] - expected[k]).abs().max().item() for k in ema)
    assert worst < 1e-6, worst
    assert any(not torch.allclose(ema[k], weights[-1][k]) for k in ema)  # an average, not the last weights
    header = read_header(ema_path)
    assert header.metadata["ss_output_name"] == "red-ema" and header.metadata["ss_steps"] == "4"
    assert header.metadata["modelspec.trigger_phrase"] == "sks"


def test_three_resumes_at_random_steps_repeat_the_uninterrupted_run(tiny_sd1, red_dataset):
    options = dict(
        gradient_accumulation=1,
        network={"dropout": 0.1},
        data={"caption_dropout": 0.3, "shuffle_tags": True, "flip": True, "batch_size": 3},
        output={"save_every": 0},
        ema={"enabled": True, "decay": 0.9},
        optimizer={"learning_rate": 1e-3, "schedule": "constant"},
    )
    whole = train(small_config(tiny_sd1, red_dataset, name="whole", steps=9, **options))
    rng = random.Random(18)
    stops = [rng.randint(1, 3), 0, 0]
    stops[1] = rng.randint(stops[0] + 1, 5)
    stops[2] = rng.randint(7, 8)  # after steps was raised from 6 to 9

    def stop_at(step):
        seen = []
        return seen.append, lambda: trained_to(seen, step)

    on_event, should_stop = stop_at(stops[0])
    first = train(
        small_config(tiny_sd1, red_dataset, name="part", steps=6, **options),
        on_event=on_event,
        should_stop=should_stop,
    )
    run = first.run_dir
    assert first.status == "cancelled" and first.step == stops[0]
    on_event, should_stop = stop_at(stops[1])
    second = train(resume=run, on_event=on_event, should_stop=should_stop)
    assert second.status == "cancelled" and second.step == stops[1]
    longer = load_run_config(run / "config.toml")
    longer.steps = 9
    on_event, should_stop = stop_at(stops[2])
    third = train(longer, resume=run, on_event=on_event, should_stop=should_stop)
    assert third.status == "cancelled" and third.step == stops[2]
    last = train(resume=run)
    assert last.status == "done" and last.step == 9

    losses = {**first.losses, **second.losses, **third.losses, **last.losses}
    assert losses == whole.losses  # float for float
    logged, expected = read_log(run / "log.jsonl"), read_log(whole.run_dir / "log.jsonl")
    assert [(r["step"], r["loss"], r["epoch"]) for r in logged] == [
        (r["step"], r["loss"], r["epoch"]) for r in expected
    ]
    assert [r["epoch"] for r in expected] == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # 8 pictures in batches of 3
    for a_path, b_path in (
        (whole.final, last.final),
        (whole.run_dir / "whole-ema.safetensors", run / "part-ema.safetensors"),
    ):
        a, b = load_file(str(a_path)), load_file(str(b_path))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_samples_come_from_the_average_only_when_asked_and_leave_the_weights_as_trained(tiny_sd1, red_dataset):
    import numpy as np
    from PIL import Image

    def sample(name, **ema):
        config = small_config(
            tiny_sd1,
            red_dataset,
            name=name,
            steps=4,
            optimizer={"learning_rate": 5e-2},
            ema=ema,
            sample={"every": 2, "prompts": ["sks"], "steps": 2},
        )
        result = train(config)
        return np.asarray(Image.open(result.run_dir / "samples" / "step000002-0.png")), load_file(str(result.final))

    plain, plain_file = sample("plain")
    current, current_file = sample("current", enabled=True, decay=0.9)
    averaged, averaged_file = sample("averaged", enabled=True, decay=0.9, samples=True)
    assert np.array_equal(plain, current)  # the average does not touch what trains or renders
    assert not np.array_equal(averaged, current)  # samples = true renders the average
    for other in (current_file, averaged_file):  # and training goes on from the trained weights
        assert all(torch.equal(plain_file[k], other[k]) for k in plain_file)


def test_a_run_saved_before_init_existed_still_resumes(tiny_sd1, red_dataset):
    import json

    seen = []
    first = train(
        small_config(tiny_sd1, red_dataset, name="old", steps=4),
        on_event=seen.append,
        should_stop=lambda: trained_to(seen, 2),
    )
    info_path = first.run_dir / "state" / "trainer.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    del info["network"]["init"], info["stopped"]  # what a run of the previous version saved
    info_path.write_text(json.dumps(info), encoding="utf-8")
    config_text = (first.run_dir / "config.toml").read_text(encoding="utf-8")
    (first.run_dir / "config.toml").write_text(
        "\n".join(line for line in config_text.splitlines() if not line.startswith("init =")), encoding="utf-8"
    )
    rest = train(resume=first.run_dir)
    assert rest.status == "done" and sorted(rest.losses) == [3, 4]
