"""Hostile settings files and values: one sentence naming the file or field, never a traceback."""

from __future__ import annotations

import pytest

from app.core.configs import AdapterEntry, ConfigError
from app.core.train_config import TrainConfig


def test_deeply_nested_toml_is_one_sentence(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text('name = "x"\nsteps = ' + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        TrainConfig.load_toml(path)
    assert str(caught.value) == f"{path}: not valid TOML (arrays or tables nested too deeply)"


def test_a_folder_given_as_the_settings_file_is_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match=r": cannot be read \(Is a directory\)$"):
        TrainConfig.load_toml(tmp_path)


@pytest.mark.parametrize("name", ["cat\n", "cat\x1b[2J", "ca\tt", "cat ", "cat."])
def test_a_run_name_with_control_characters_or_a_trailing_space_is_refused(name):
    with pytest.raises(
        ConfigError,
        match=r"^test: name = .* must be letters, digits, spaces, '\.', '-' or '_', not "
        r"ending in a space or '\.' \(at most 100\)$",
    ):
        TrainConfig.from_dict({"name": name}, where="test")


def test_ordinary_run_names_still_pass():
    for name in ("cat", "my cat v1.5", "a_b-c", "x-"):
        assert TrainConfig.from_dict({"name": name}).name == name


def test_an_adapter_name_with_a_control_character_is_refused():
    with pytest.raises(ConfigError) as caught:
        AdapterEntry.from_dict({"path": "a.safetensors", "name": "cat\n<lora:evil:9>"}, where="adapter 1")
    assert str(caught.value) == "adapter 1.name = 'cat\\n<lora:evil:9>' has a control character; use plain text"
