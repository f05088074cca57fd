"""Validation loss: a held-out split or a folder, at fixed noise every K steps, the best checkpoint kept."""

from __future__ import annotations

import pytest
from train_helpers import small_config, write_images

from app.core.events import LogLine, Phase, Progress
from app.engine.training import Trainer, TrainError, train
from app.engine.training.objective import fixed_loss
from app.engine.training.run import RunDir, prune_checkpoints, read_log

pytestmark = pytest.mark.slow


def _val_steps(events) -> dict[int, float]:
    return {
        e.step: e.val_loss
        for e in events
        if isinstance(e, Progress) and e.phase is Phase.TRAINING and e.val_loss is not None
    }


def test_held_out_pictures_give_a_validation_loss_every_k_steps_and_at_checkpoints(tiny_sd1, tmp_path):
    dataset = write_images(tmp_path / "mixed", sizes=((64, 64),) * 3)
    write_images(tmp_path / "mixed" / "blue", colour=(20, 40, 220), caption="sks blue", sizes=((64, 64),) * 2)
    events = []
    config = small_config(
        tiny_sd1, dataset, steps=6, validation={"images": 2, "every": 3}, output={"save_every": 4, "keep_last": 1}
    )
    trainer = Trainer(config, on_event=events.append)
    result = trainer.run()
    session = trainer.session
    held = {i.path for i in session.data.validation}
    assert len(held) == 2 and not held & {i.path for i in session.data.items}  # never trained on
    assert len(session.data.items) == 3
    # Every 3 steps, and at the checkpoint of step 4 and the final step 6.
    val = _val_steps(events)
    assert sorted(val) == [3, 4, 6]
    assert [(r["step"], r["val_loss"]) for r in read_log(result.run_dir / "log.jsonl") if "val_loss" in r] == sorted(
        val.items()
    )
    assert f"validation loss {val[3]:.4f} at step 3 (the best so far)" in [
        e.message for e in events if isinstance(e, LogLine)
    ]
    # Fixed noise and timesteps: measured again on the final weights it is the same number.
    assert fixed_loss(session, items=session.data.validation) == pytest.approx(val[6], abs=1e-6)
    assert result.val_losses == val
    best = min((val[s], s) for s in (4, 6))[1]
    assert result.best is not None and result.best[0] == best and result.best[1].is_file()
    # The same seed holds out the same pictures on another run.
    again = Trainer(small_config(tiny_sd1, dataset, name="again", steps=1, validation={"images": 2}))
    again.run()
    assert {i.path for i in again.session.data.validation} == held


def test_a_validation_folder_is_measured_and_bad_settings_say_what_to_change(tiny_sd1, red_dataset, tmp_path):
    folder = write_images(tmp_path / "val", colour=(20, 200, 40), caption="sks green", sizes=((64, 64),) * 2)
    events = []
    result = train(
        small_config(tiny_sd1, red_dataset, steps=2, validation={"folder": str(folder), "every": 1}),
        on_event=events.append,
    )
    assert sorted(_val_steps(events)) == [1, 2] and result.best is not None
    with pytest.raises(TrainError) as err:
        train(small_config(tiny_sd1, red_dataset, validation={"images": 4}))
    assert str(err.value) == (
        "[validation] images = 4 would hold out every training picture (4 found); "
        "hold out fewer, or give a validation folder"
    )
    with pytest.raises(TrainError) as err:
        train(small_config(tiny_sd1, red_dataset, validation={"folder": str(tmp_path / "nowhere")}))
    assert str(err.value) == f"[validation] folder: {tmp_path / 'nowhere'}: no such folder"


def test_pruning_keeps_the_best_checkpoint(tmp_path):
    run = RunDir(tmp_path, "r")
    run.checkpoints.mkdir()
    for step in (1, 2, 3, 4):
        run.checkpoint_path(step).write_bytes(b"x")
    gone = prune_checkpoints(run, keep_last=1, keep_step=2)
    assert sorted(p.name for p in gone) == ["r-step000001.safetensors", "r-step000003.safetensors"]
    assert [p.name for p in run.checkpoint_files()] == ["r-step000002.safetensors", "r-step000004.safetensors"]
