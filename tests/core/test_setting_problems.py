"""Training settings that cannot work are found before a run, each with its fix."""

from __future__ import annotations

from app.core.train_config import TrainConfig, load_preset, setting_problems


def table(**changes) -> dict:
    data = load_preset("sd15-character").to_dict()
    for key, value in changes.items():
        section, _, name = key.rpartition("__")
        (data[section] if section else data)[name] = value
    return data


def test_a_preset_config_as_shipped_has_no_problem():
    assert setting_problems(table()) == []
    assert setting_problems(TrainConfig().to_dict()) == []
    assert setting_problems(table(data__resolution=768)) == []  # SD 1.5 at 768 is a choice


def test_resolution_outside_the_buckets_offers_the_range_that_holds_it():
    data = table(data__resolution=1024, data__max_bucket=768, preset="")
    [problem] = setting_problems(data)
    assert problem.key == "data.resolution"
    assert problem.message == (
        "resolution = 1024 lies outside min_bucket (256) … max_bucket (768): no picture could be trained at it"
    )
    assert problem.fix == {"data.min_bucket": 256, "data.max_bucket": 1024}
    assert problem.fix_label == "Set the bucket range to 256–1024"


def test_warmup_as_long_as_the_run_offers_ten_percent():
    [problem] = setting_problems(table(steps=80, optimizer__warmup_steps=100))
    assert problem.key == "optimizer.warmup_steps" and problem.fix == {"optimizer.warmup_steps": 8}
    assert problem.message.startswith("warmup_steps = 100 is not below steps = 80")
    assert setting_problems(table(steps=101, optimizer__warmup_steps=100)) == []


def test_a_preset_tuned_for_another_size_offers_its_size():
    [problem] = setting_problems(table(data__resolution=1024, data__max_bucket=1024))
    assert problem.key == "data.resolution" and "preset sd15-character, tuned for 512 px" in problem.message
    assert problem.fix == {"data.resolution": 512, "data.min_bucket": 256, "data.max_bucket": 768}


def test_unreadable_values_are_left_to_validation():
    assert setting_problems(table(steps="many", data__resolution=None)) == []
