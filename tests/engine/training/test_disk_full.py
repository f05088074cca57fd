"""A full disk or a read-only folder during training: one sentence saying what is still whole,
error kind disk_full / permission, nothing lost, and Resume continues once there is room."""

from __future__ import annotations

import errno
import os

import pytest
from disk_faults import fail_writes_of
from train_helpers import small_config, warnings_in

import app.core.files as files
from app.core.errors import ErrorKind
from app.engine.training import TrainError, train

pytestmark = pytest.mark.slow


def test_a_full_disk_at_a_checkpoint_says_which_checkpoint_is_intact_and_resume_continues(
    tiny_sd1, red_dataset, monkeypatch
):
    from app.worker.loop import describe_error

    config = small_config(tiny_sd1, red_dataset, name="full", steps=4, output={"save_every": 2, "keep_last": 5})
    fail_writes_of(monkeypatch, errno.ENOSPC, ".full.safetensors")
    with pytest.raises(TrainError) as caught:
        train(config)
    folder = files.Path(os.environ["LORALOOM_HOME"]) / "runs" / "full"
    final = folder / "full.safetensors"  # step 4 is the last: the final file is the one that failed
    message = str(caught.value)
    assert message.startswith(f"Disk full while saving {final}: free ")
    assert message.endswith(" GB and resume; the last checkpoint (step 2) is intact")
    assert caught.value.kind is ErrorKind.DISK_FULL and describe_error(caught.value)["kind"] == "disk_full"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["full-step000002.safetensors"]
    monkeypatch.undo()
    rest = train(resume=folder)
    assert rest.status == "done" and sorted(rest.losses) == [3, 4] and rest.final == final


def test_a_full_disk_while_saving_the_resume_state_keeps_the_previous_state(tiny_sd1, red_dataset, monkeypatch):
    import app.engine.training.run as run_module

    config = small_config(tiny_sd1, red_dataset, name="state", steps=4, output={"save_every": 2, "keep_last": 5})
    real_open = open
    saves = {"n": 0}

    def open_failing_on_the_second_state(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith("optimizer.safetensors"):
            saves["n"] += 1
            if saves["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(run_module, "open", open_failing_on_the_second_state, raising=False)
    with pytest.raises(TrainError) as caught:
        train(config)
    folder = files.Path(os.environ["LORALOOM_HOME"]) / "runs" / "state"
    assert str(caught.value).startswith(f"Disk full while saving {folder / 'state' / 'optimizer.safetensors'}: ")
    assert str(caught.value).endswith("and resume; the last checkpoint (step 2) is intact")
    assert not list(folder.glob(".state.tmp-*"))  # the half-written new state is gone, the old one whole
    monkeypatch.undo()
    rest = train(resume=folder)
    assert sorted(rest.losses) == [3, 4]


def test_a_read_only_samples_folder_is_a_permission_error_before_any_save(tiny_sd1, red_dataset, monkeypatch):
    # Tests run as root, where chmod does not stop writes: the EROFS is injected.
    config = small_config(
        tiny_sd1,
        red_dataset,
        name="ro",
        steps=2,
        output={"save_every": 0},
        sample={"every": 1, "prompts": ["sks"], "steps": 1},
    )
    fail_writes_of(monkeypatch, errno.EROFS, "step000001-0.png")
    with pytest.raises(TrainError) as caught:
        train(config)
    sample = files.Path(os.environ["LORALOOM_HOME"]) / "runs" / "ro" / "samples" / "step000001-0.png"
    assert caught.value.kind is ErrorKind.PERMISSION
    assert str(caught.value) == (
        f"Cannot save {sample} (Read-only file system): the folder is read-only or not "
        "yours; make it writable and start the run again; nothing was saved yet"
    )


def test_too_little_free_space_is_a_warning_before_the_first_step(tiny_sd1, red_dataset, monkeypatch):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    events = []
    result = train(small_config(tiny_sd1, red_dataset, name="tight", steps=1), on_event=events.append)
    assert result.status == "done"  # a warning, not a refusal: the estimate may be pessimistic
    warnings = warnings_in(events)
    assert len(warnings) == 1
    assert warnings[0].startswith(f"only 0 MB free in {result.run_dir}, and this run needs about ")
    assert warnings[0].endswith(
        "(checkpoints, resume state, caches): free space now or lower [output] keep_last, "
        "or the run stops when the disk is full"
    )


def test_the_cli_gives_the_disk_full_sentence_on_one_line(tiny_sd1, red_dataset, monkeypatch, tmp_path, capsys):
    from app.cli import main

    config = tmp_path / "run.toml"
    small_config(tiny_sd1, red_dataset, name="clifull", steps=1).save_toml(config)
    fail_writes_of(monkeypatch, errno.ENOSPC, "clifull.safetensors")
    assert main(["train", str(config)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("loraloom: error: ")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("loraloom: error: Disk full while saving ")
    assert lines[0].endswith("clifull.safetensors: free 0.1 GB and start the run again; nothing was saved yet")
