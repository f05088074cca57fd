"""The Train tab's form over TrainConfig: every setting, round trips, checks before Start."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from train_ui_helpers import write_pictures

from app.core.train_config import TrainConfig
from app.ui.train.form_fields import ERROR_STYLE
from app.ui.train.settings_help import HELP
from app.ui.train.train_form import config_keys


def every_field_changed(tmp_path: Path, dataset: Path) -> TrainConfig:
    """A config in which every setting differs from TrainConfig()'s default."""
    data = {
        "preset": "sd15-style",
        "name": "round trip",
        "base": str(tmp_path / "model"),
        "trigger": "zxq",
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
        "seed": 3_000_000_000,
        "steps": 777,
        "gradient_accumulation": 3,
        "gradient_checkpointing": True,
        "mixed_precision": "bf16",
        "device": "cpu",
        "noise_offset": 0.05,
        "min_snr_gamma": 0.0,
        "prediction": "v_prediction",
        "fp8_base": True,
        "datasets": [
            {"path": str(dataset), "repeats": 3, "caption": "a red square", "regularization": False},
            {"path": str(tmp_path / "reg"), "repeats": 0, "caption": "", "regularization": True},
        ],
        "data": {
            "resolution": 768,
            "bucketing": False,
            "min_bucket": 320,
            "max_bucket": 1280,
            "bucket_step": 32,
            "no_upscale": True,
            "min_image_side": 200,
            "batch_size": 5,
            "caption_dropout": 0.125,
            "shuffle_tags": True,
            "keep_tags": 2,
            "separator": "; ",
            "flip": True,
            "reg_weight": 0.5,
        },
        "network": {
            "rank": 24,
            "alpha": 12.5,
            "dropout": 0.1,
            "dora": True,
            "targets": "locon",
            "conv_rank": 6,
            "conv_alpha": 3.0,
            "train_text_encoder": True,
            "text_encoder_lr": 2.5e-05,
            "init": "kaiming",
        },
        "loss": {
            "loss_type": "smooth_l1",
            "huber_schedule": "exponential",
            "huber_c": 0.25,
            "debiased_estimation": True,
            "multires_noise_iterations": 6,
            "multires_noise_discount": 0.4,
            "min_timestep": 100,
            "max_timestep": 900,
        },
        "ema": {"enabled": True, "decay": 0.99, "on_cpu": False, "samples": True},
        "optimizer": {
            "kind": "prodigy",
            "learning_rate": 1.0,
            "weight_decay": 0.02,
            "schedule": "linear",
            "warmup_steps": 17,
            "max_grad_norm": 0.0,
        },
        "output": {"save_every": 123, "keep_last": 0, "diffusers_copy": True},
        "sample": {
            "every": 50,
            "prompts": ["{trigger}, a red square", "a blue sky"],
            "negative": "blurry",
            "seed": 2**40,
            "steps": 9,
            "guidance": 4.5,
            "width": 520,
            "height": 640,
            "scheduler": "DPM++ 2M Karras",
        },
        "flow": {"timestep_sampling": "logit_normal", "logit_mean": 0.5, "logit_std": 1.5, "guidance_scale": 3.0},
    }
    config = TrainConfig.from_dict(data)
    defaults, values = TrainConfig().to_dict(), config.to_dict()
    same = [k for k in values if k != "version" and not isinstance(values[k], dict) and values[k] == defaults[k]]
    same += [
        f"{s}.{k}"
        for s in ("data", "network", "optimizer", "output", "sample", "loss", "ema", "flow")
        for k in values[s]
        if values[s][k] == defaults[s][k]
    ]
    assert same == [], f"the round-trip config leaves defaults in {same}"
    return config


def test_every_setting_has_an_editor_and_a_one_sentence_tooltip(make_tab):
    form = make_tab().form
    for key, _default in config_keys():
        assert key in form.fields, f"{key} has no editor in the form"
        tip = form.fields[key].editor.toolTip()
        assert tip == HELP[key].tip and tip.endswith(".") and len(tip) < 200, key
    for key in ("base", "datasets", "datasets.path", "datasets.repeats", "datasets.caption", "datasets.regularization"):
        assert HELP[key].tip.endswith(".")
    assert form.model_picker.toolTip() == HELP["base"].tip
    assert form.preset.toolTip() and form.datasets.toolTip() == HELP["datasets"].tip
    # Essentials on show; the rest folded away in Advanced groups.
    assert form.fields["network.rank"].editor.isVisible()
    assert not form.fields["network.alpha"].editor.isVisible()
    form.groups["Network"].toggle.click()
    assert form.fields["network.alpha"].editor.isVisible()


def test_the_form_and_its_toml_keep_every_field(make_tab, tmp_path, red_pictures):
    tab = make_tab()
    config = every_field_changed(tmp_path, red_pictures)
    tab.form.set_config(config)
    assert tab.form.config().to_dict() == config.to_dict()
    saved = tmp_path / "saved.toml"
    assert tab.save_config_to(str(saved))
    assert TrainConfig.load_toml(saved).to_dict() == config.to_dict()
    tab.form.set_config(TrainConfig())
    assert tab.form.config().to_dict() != config.to_dict()
    assert tab.load_config_from(str(saved))
    assert tab.form.config().to_dict() == config.to_dict()
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\n[network]\nrnak = 4\n', encoding="utf-8")
    assert not tab.load_config_from(str(broken))
    assert "unknown key 'rnak'" in tab.form.error_label.text()


def _ready_form(tab, tmp_path, dataset):
    form = tab.form
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    form.model_picker.setText(str(model))
    form.datasets.use_folder(str(dataset), replace=True)
    return form


def test_start_refuses_bad_settings_and_highlights_the_field(make_tab, tmp_path, red_pictures, qtbot):
    tab = make_tab()
    form = tab.form
    form.model_picker.setText("")
    assert not tab.start()
    assert form.highlighted == "base" and "Base model" in tab.status_label.text()
    assert form.model_picker.combo.styleSheet() == ERROR_STYLE
    assert tab.ops.entries == []

    form.model_picker.setText(str(tmp_path / "missing-model"))
    assert form.ready_config() is None and "does not exist" in form.error_label.text()

    _ready_form(tab, tmp_path, red_pictures)
    form.fields["data.max_bucket"].set(512)
    form.fields["data.resolution"].set(1024)
    assert not tab.start()
    assert form.highlighted == "data.resolution"
    assert "Resolution" in form.error_label.text() and "max_bucket" in form.error_label.text()
    assert form.fields["data.resolution"].editor.styleSheet() == ERROR_STYLE
    form.fields["data.resolution"].set(512)
    form.fields["data.max_bucket"].set(768)

    # A setting inside a closed Advanced group: the group opens and the field gets the focus.
    assert not form.groups["Network"].is_open()
    form.fields["network.dropout"].editor.setText("1.5")
    assert form.ready_config() is None
    assert form.highlighted == "network.dropout" and form.groups["Network"].is_open()
    assert "Dropout" in form.error_label.text()
    form.fields["network.dropout"].set(0.0)

    name_edit = form.fields["name"].editor
    name_edit.clear()
    qtbot.keyClicks(name_edit, "my/run")
    assert form.ready_config() is None and form.highlighted == "name"
    assert "Output name" in form.error_label.text()
    form.fields["name"].set("my run")

    form.datasets.set_specs([])
    assert form.ready_config() is None and form.highlighted == "datasets"
    assert "add the folder of your training pictures" in form.error_label.text()
    form.datasets.use_folder(str(red_pictures))
    config = form.ready_config()
    assert config is not None and not form.error_label.isVisible() and form.highlighted == ""
    assert config.name == "my run" and config.datasets[0].path == str(red_pictures)


def test_settings_that_cannot_work_are_caught_with_a_fix_offered(make_tab, tmp_path, red_pictures):
    tab = make_tab()
    form = _ready_form(tab, tmp_path, red_pictures)
    form.preset.setCurrentIndex(form.preset.findData(""))  # (none): no preset size to compare with
    form.fields["data.max_bucket"].set(768)
    form.fields["data.resolution"].set(1024)
    assert not tab.start() and tab.ops.entries == []
    assert tab.status_label.text() == (
        "Resolution: resolution = 1024 lies outside min_bucket (256) … "
        "max_bucket (768): no picture could be trained at it"
    )
    assert form.highlighted == "data.resolution" and tab.fix_button.isVisible()
    assert tab.fix_button.text() == "Set the bucket range to 256–1024"
    tab.fix_button.click()
    assert form.fields["data.max_bucket"].get() == 1024 and not tab.fix_button.isVisible()

    form.fields["steps"].set(50)
    form.fields["optimizer.warmup_steps"].set(100)
    assert not tab.start()
    assert form.highlighted == "optimizer.warmup_steps" and tab.fix_button.text() == "Warm up for 5 steps (10%)"
    assert "warmup_steps = 100 is not below steps = 50" in tab.status_label.text()
    tab.fix_button.click()
    assert form.fields["optimizer.warmup_steps"].get() == 5

    form.apply_preset("sd15-character")  # tuned for 512 px; the form keeps what a preset cannot know
    form.fields["data.max_bucket"].set(1024)
    form.fields["data.resolution"].set(1024)
    assert form.ready_config() is None and "tuned for 512 px" in form.error_label.text()
    assert tab.start() is False and tab.fix_button.text() == "Use the preset's 512 px"
    tab.fix_button.click()
    assert form.fields["data.resolution"].get() == 512
    assert form.ready_config() is not None


def test_dataset_summary_counts_pictures_captions_and_problems(make_tab, tmp_path, qtbot):
    folder = write_pictures(tmp_path / "mixed", count=3, size=(300, 300))
    Image.new("RGB", (300, 300), (0, 0, 0)).save(folder / "uncaptioned.png")
    Image.new("RGB", (40, 40), (0, 0, 0)).save(folder / "tiny.png")
    (folder / "broken.png").write_bytes(b"")
    tab = make_tab()
    form = _ready_form(tab, tmp_path, folder)
    form.fields["data.min_image_side"].set(256)
    qtbot.waitUntil(lambda: "pictures" in form.datasets.summary.text() and not form.datasets.scanning(), timeout=10_000)
    text = form.datasets.summary.text()
    assert "6 pictures, 4 usable, 3 captioned" in text, text
    assert "too small (1)" in text and "empty file (1)" in text, text

    empty = tmp_path / "nothing-usable"
    Image.new("RGB", (40, 40), (0, 0, 0)).save(write_pictures(empty, count=0) / "small.png")
    form.datasets.use_folder(str(empty), replace=True)
    qtbot.waitUntil(
        lambda: not form.datasets.scanning() and "1 pictures" in form.datasets.summary.text(), timeout=10_000
    )
    assert form.ready_config() is None and form.highlighted == "datasets"
    assert f"{empty} has no usable pictures" in form.error_label.text()


def test_epochs_are_turned_into_steps(make_tab, tmp_path, red_pictures, qtbot):
    tab = make_tab()
    form = _ready_form(tab, tmp_path, red_pictures)
    form.fields["data.min_image_side"].set(32)
    form.fields["data.batch_size"].set(2)
    form.fields["gradient_accumulation"].set(1)
    qtbot.waitUntil(lambda: form.datasets.epoch_pictures() == 8, timeout=10_000)  # 4 pictures × 2 repeats
    form.steps_unit.setCurrentText("epochs")
    form.steps_box.setValue(3)
    assert form.steps_note.text() == "= 12 steps"
    assert form.config().steps == 12
    form.steps_unit.setCurrentText("steps")
    assert form.config().steps == 3 and form.steps_note.text() == "≈ 0.75 epochs"


def test_a_preset_keeps_model_datasets_name_and_trigger(make_tab, tmp_path, red_pictures):
    tab = make_tab()
    form = _ready_form(tab, tmp_path, red_pictures)
    form.fields["name"].set("mine")
    form.fields["trigger"].set("zz")
    form.preset.setCurrentIndex(form.preset.findData("sd15-style"))
    form.preset.activated.emit(form.preset.currentIndex())
    config = form.config()
    assert config.preset == "sd15-style" and config.network.targets.value == "locon" and config.data.flip
    assert (config.name, config.trigger, config.base) == ("mine", "zz", str(tmp_path / "model"))
    assert [d.path for d in config.datasets] == [str(red_pictures)]


def test_the_preset_list_follows_the_base_models_family(make_tab, tmp_path, tiny_flux1):
    form = make_tab().form
    every = [form.preset.itemData(i) for i in range(1, form.preset.count())]
    assert {"sd15-character", "sdxl-style", "flux-dev-character-12gb"} <= set(every)  # no base yet: all
    before = form.preset.currentData()  # the restored default preset stays named (its values are on show)
    form.model_picker.setText(str(tiny_flux1))  # a diffusers folder with FluxPipeline in model_index.json
    flux = [form.preset.itemData(i) for i in range(1, form.preset.count())]
    assert flux[:4] == ["flux-dev-character", "flux-dev-character-12gb", "flux-dev-style", "flux-dev-style-12gb"]
    assert flux[4:] == ([before] if before else [])
    form.preset.setCurrentIndex(form.preset.findData("flux-dev-style"))
    form.preset.activated.emit(form.preset.currentIndex())
    config = form.config()
    assert config.fp8_base and config.network.targets.value == "all_linear" and config.sample.guidance == 3.5
    assert config.flow.timestep_sampling.value == "shift" and not config.data.shuffle_tags
    form.model_picker.setText("stabilityai/stable-diffusion-xl-base-1.0")  # a Hub id: its name tells
    sdxl = [form.preset.itemData(i) for i in range(1, form.preset.count())]
    assert sdxl == ["sdxl-character", "sdxl-style", "flux-dev-style"]
    assert form.preset.currentData() == "flux-dev-style"  # the chosen preset stays named


def test_the_last_config_is_restored_and_a_broken_one_ignored(make_tab, tmp_path, red_pictures, loraloom_home):
    tab = make_tab()
    form = _ready_form(tab, tmp_path, red_pictures)
    form.fields["network.rank"].set(7)
    form.fields["sample.prompts"].set(["{trigger} at noon"])
    tab.hide()  # switching tabs (or closing the window) saves the form
    restored = make_tab().form.config()
    assert restored.network.rank == 7 and restored.sample.prompts == ["{trigger} at noon"]
    assert restored.datasets[0].path == str(red_pictures)
    tab.ops.settings_path.write_text("this is [not toml", encoding="utf-8")
    fresh = make_tab().form.config()
    assert fresh.preset == "sd15-character"  # the default preset, not a crash


def test_the_dataset_tabs_folder_is_the_default(make_tab, tmp_path, red_pictures, qtbot):
    from app.ui.dataset.dataset_ops import DatasetSession

    session = DatasetSession(None)
    tab = make_tab(dataset_session=session)
    tab.form.datasets.set_specs([])
    assert session.open(red_pictures)
    assert [d["path"] for d in tab.form.datasets.specs()] == [str(red_pictures.resolve())]
    other = write_pictures(tmp_path / "other")
    assert session.open(other)  # the user's choice is kept; the button offers the new folder
    assert [d["path"] for d in tab.form.datasets.specs()] == [str(red_pictures.resolve())]
    assert tab.form.datasets.use_open_button.isEnabled()
    qtbot.mouseClick(tab.form.datasets.use_open_button, Qt.MouseButton.LeftButton)
    assert [d["path"] for d in tab.form.datasets.specs()] == [str(other.resolve())]
    session.flush()


@pytest.mark.parametrize("values", [[1.0, 1.0, 1.0], [2.0, 0.0, 2.0, 0.0]])
def test_smoothed_loss_starts_at_the_first_value(values):
    from app.ui.train.loss_plot import smooth

    out = smooth(values)
    assert out[0] == values[0] and len(out) == len(values)
    assert min(values) <= out[-1] <= max(values)
