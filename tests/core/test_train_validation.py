"""The [validation] and [masks] tables: old configs still load, bad values are one sentence, the
validation loss travels in Progress, and the best checkpoint is the lowest validation loss."""

from __future__ import annotations

import pytest

from app.core.configs import ConfigError
from app.core.events import Phase, Progress
from app.core.train_config import TrainConfig
from app.core.train_validation import best_step
from app.worker import protocol as P


def test_an_old_config_without_the_new_tables_loads_with_both_off(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text('name = "old"\nsteps = 10\n[network]\nrank = 4\n', encoding="utf-8")
    config = TrainConfig.load_toml(path)
    assert not config.validation.enabled and not config.masks.enabled
    config.validation.images, config.masks.enabled, config.masks.unmasked_weight = 3, True, 0.2
    config.save_toml(tmp_path / "new.toml")
    again = TrainConfig.load_toml(tmp_path / "new.toml")
    assert again.validation.images == 3 and again.masks.enabled and again.masks.unmasked_weight == 0.2


@pytest.mark.parametrize(
    "table, message",
    [
        ({"validation": {"images": 2, "folder": "/x"}}, "give images (held-out training pictures) or folder"),
        ({"validation": {"every": 0}}, "[validation]: every = 0 must be 1 or more"),
        ({"masks": {"unmasked_weight": 1.5}}, "[masks]: unmasked_weight = 1.5 must be between 0 and 1"),
        ({"masks": {"weight": 1}}, "[masks]: unknown key 'weight' (known: enabled, unmasked_weight)"),
    ],
)
def test_bad_values_are_one_sentence(table, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(table)
    assert message in str(err.value)


def test_the_validation_loss_travels_in_progress_and_picks_the_best_saved_step():
    event = Progress(step=4, total=10, phase=Phase.TRAINING, loss=0.2, lr=1e-4, eta_s=1.0, val_loss=0.125)
    assert P.decode_event(P.encode_event("j", event)) == ("j", event)
    assert "val_loss" not in P.encode_event("j", Progress(step=1, total=2))  # only when measured
    assert best_step({2: 0.3, 4: 0.1, 6: 0.2}, [2, 6]) == 6  # among the files still there
    assert best_step({2: 0.3}, [4]) is None
