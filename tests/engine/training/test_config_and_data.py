"""TrainConfig, presets, buckets, repeats, caption variation and the batch schedule (no models)."""

from __future__ import annotations

import random

import pytest
from train_helpers import write_images

from app.core.configs import ConfigError
from app.core.train_config import LRSchedule, Optimizer, Targets, TrainConfig, load_preset, preset_names


def test_every_preset_loads_and_only_needs_a_base_and_a_dataset(tmp_path):
    assert set(preset_names()) >= {"sd15-character", "sd15-style", "sdxl-character", "sdxl-style"}
    for name in preset_names():
        config = load_preset(name)
        with pytest.raises(ConfigError, match="base is empty"):
            config.check_ready()
        ready = TrainConfig.from_dict({"preset": name, "base": "owner/model", "datasets": [{"path": "/pics"}]})
        ready.check_ready()
        assert ready.preset == name and ready.steps >= 1000
        assert ready.sample.prompts, f"{name} has no sample prompts"
    sdxl = load_preset("sdxl-style")
    assert sdxl.data.resolution == 1024 and sdxl.network.targets is Targets.LOCON and sdxl.gradient_checkpointing


def test_a_config_overrides_its_preset_key_by_key_and_round_trips(tmp_path):
    config = TrainConfig.from_dict(
        {
            "preset": "sd15-character",
            "base": "m",
            "trigger": "ohwx",
            "datasets": [{"path": "/a", "repeats": 3}, {"path": "/r", "regularization": True}],
            "network": {"rank": 8},
            "optimizer": {"kind": "prodigy", "learning_rate": 1.0},
        }
    )
    assert config.network.rank == 8 and config.network.alpha == 8.0  # alpha still from the preset
    assert config.optimizer.kind is Optimizer.PRODIGY and config.optimizer.schedule is LRSchedule.COSINE
    assert config.sample_prompts()[0].startswith("ohwx, ")
    path = tmp_path / "run.toml"
    config.save_toml(path)
    assert TrainConfig.load_toml(path) == config


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"stpes": 10}, "unknown key 'stpes'"),
        ({"network": {"rnak": 4}}, r"\[network\]: unknown key 'rnak'"),
        ({"steps": "many"}, "steps must be a whole number"),
        ({"network": {"rank": 0}}, r"\[network\]: rank = 0 must be between 1 and 1024"),
        ({"data": {"resolution": 500}}, r"\[data\]: resolution = 500 must be a multiple of 64"),
        ({"optimizer": {"kind": "sgd"}}, r"kind = 'sgd' is not one of 'adamw', 'adamw8bit', 'prodigy'"),
        ({"datasets": [{"path": ""}]}, r"\[\[datasets\]\] #1: path is empty"),
        ({"datasets": {"path": "/a"}}, "datasets must be a list"),
        ({"sample": {"prompts": "one"}}, r"\[sample\]: prompts must be a list of texts"),
        ({"preset": "nope"}, "preset = 'nope' is not one of"),
        ({"version": 2}, "version = 2 is not supported"),
        ({"name": "a/b"}, "name = 'a/b' must be letters"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_field(data, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig.from_dict(data, where="my.toml")


def test_buckets_keep_the_area_and_fit_the_aspect():
    from app.engine.training.buckets import make_buckets, pick_bucket, plan_crop

    buckets = make_buckets(512, 256, 1024, 64)
    assert (512, 512) in buckets
    assert all(w % 64 == 0 and h % 64 == 0 and min(w, h) >= 256 and max(w, h) <= 1024 for w, h in buckets)
    assert all(w * h <= 512 * 512 for w, h in buckets)
    assert pick_bucket(1000, 1000, buckets, resolution=512) == (512, 512)
    wide = pick_bucket(1600, 900, buckets, resolution=512)
    assert wide[0] > wide[1] and abs(wide[0] / wide[1] - 16 / 9) < 0.2
    assert pick_bucket(300, 200, buckets, resolution=512, no_upscale=True) == (256, 192)
    plan = plan_crop(1600, 900, wide)
    assert plan.scaled[0] >= wide[0] and plan.scaled[1] >= wide[1]
    assert plan.left >= 0 and plan.top >= 0


def test_kohya_folders_set_repeats_captions_fall_back_to_the_folder_name(tmp_path):
    from app.engine.training.data import Schedule, collect

    write_images(tmp_path / "ds" / "3_sks woman", sizes=((64, 64), (96, 64)), caption=None)
    write_images(tmp_path / "ds" / "plain", caption="sks, red", sizes=((64, 96),))
    write_images(tmp_path / "reg", caption="woman", sizes=((64, 64),))
    (tmp_path / "ds" / "broken.png").write_bytes(b"not a picture")
    config = TrainConfig.from_dict(
        {
            "base": "m",
            "datasets": [{"path": str(tmp_path / "ds")}, {"path": str(tmp_path / "reg"), "regularization": True}],
            "data": {
                "resolution": 128,
                "min_bucket": 64,
                "max_bucket": 256,
                "bucket_step": 32,
                "min_image_side": 32,
                "batch_size": 2,
            },
        }
    )
    data = collect(config)
    by_name = {(i.path.parent.name, i.path.name): i for i in data.items}
    first = by_name[("3_sks woman", "img0.png")]
    assert first.repeats == 3 and first.caption == "sks woman" and first.bucket == (128, 128)
    assert by_name[("3_sks woman", "img1.png")].bucket == (160, 96)  # 96x64 is 3:2
    assert by_name[("plain", "img0.png")].repeats == 1 and by_name[("plain", "img0.png")].caption == "sks, red"
    assert len(data.reg_items) == 1
    assert any("broken.png" in line for line in data.skipped)
    # keyed by each picture folder's own name, as kohya does (not "1_ds" or "1_3_sks woman")
    assert data.tag_frequency == {"3_sks woman": {"sks woman": 2}, "plain": {"sks": 1, "red": 1}}
    assert data.dataset_dirs == {
        "3_sks woman": {"n_repeats": 3, "img_count": 2},
        "plain": {"n_repeats": 1, "img_count": 1},
    }
    schedule = Schedule(data, batch_size=2, seed=1, reg_weight=0.5)
    # 3+3+1 training samples and as many regularization samples per epoch
    assert schedule.samples_per_epoch == 14
    epoch = [e for b in schedule.epoch_batches(0) for e in b]
    assert sum(e.weight == 0.5 for e in epoch) == 7
    for batch in schedule.epoch_batches(0):
        assert len({data.items[e.item].bucket for e in batch}) == 1  # one bucket per batch
    again = Schedule(data, batch_size=2, seed=1, reg_weight=0.5)
    assert again.batch(schedule.batches_per_epoch + 1) == schedule.batch(schedule.batches_per_epoch + 1)


def test_caption_variation_keeps_the_first_tags_and_drops_whole_captions():
    from app.engine.training.data import vary_caption

    rng = random.Random(0)
    seen = {
        vary_caption("sks, red, square, big, flat", rng, dropout=0.0, shuffle=True, keep=1, separator=", ")
        for _ in range(50)
    }
    assert len(seen) > 5 and all(s.startswith("sks, ") for s in seen)
    assert all(sorted(s.split(", ")) == sorted(["sks", "red", "square", "big", "flat"]) for s in seen)
    dropped = [vary_caption("sks", rng, dropout=0.5, shuffle=False, keep=1, separator=", ") for _ in range(200)]
    assert 60 < dropped.count("") < 140
