"""Run folders as an attacker or an unlucky user leaves them: no code runs, nothing is lost,
every refusal is one sentence naming the file."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from train_helpers import PicklePayload, small_config, trained_to, warnings_in

from app.engine.training import TrainError, train
from app.engine.training.run import RunDir, prune_checkpoints

pytestmark = pytest.mark.slow


def _stopped_run(base, dataset, name, **options):
    """A run stopped after step 2 of 4 (checkpoint and resume state saved at step 2)."""
    seen = []
    first = train(
        small_config(base, dataset, name=name, **options), on_event=seen.append, should_stop=lambda: trained_to(seen, 2)
    )
    assert first.status == "cancelled" and first.step == 2
    return first


def test_a_crafted_pickle_state_is_never_loaded_and_resume_is_refused(tiny_sd1, red_dataset, tmp_path):
    first = _stopped_run(tiny_sd1, red_dataset, "evil")
    state = first.run_dir / "state"
    marker = tmp_path / "owned"
    for name in ("optimizer.safetensors", "scheduler.safetensors"):  # as an old (or crafted) run folder has it
        (state / name).unlink()
    for name in ("optimizer.pt", "scheduler.pt"):
        (state / name).write_bytes(pickle.dumps({"state": PicklePayload(marker)}))
    with pytest.raises(TrainError) as caught:
        train(resume=first.run_dir)
    assert str(caught.value) == (
        f"{state / 'optimizer.pt'}: resume state in the old pickle format, which could run "
        "code, is not loaded; start a new run (the checkpoints of this run are still usable)"
    )
    assert not marker.exists()


def test_a_damaged_optimizer_state_is_refused_with_a_sentence(tiny_sd1, red_dataset):
    first = _stopped_run(tiny_sd1, red_dataset, "broken")
    target = first.run_dir / "state" / "optimizer.safetensors"
    target.write_bytes(pickle.dumps({"not": "safetensors"}))
    with pytest.raises(
        TrainError,
        match=r"optimizer\.safetensors: the saved state cannot be read \(not a readable "
        r"safetensors file .*\); start a new run$",
    ):
        train(resume=first.run_dir)


def test_prodigy_state_with_its_non_tensor_values_resumes_exactly(tiny_sd1, red_dataset):
    pytest.importorskip("prodigyopt")
    options = dict(optimizer={"kind": "prodigy", "learning_rate": 1.0, "schedule": "cosine", "warmup_steps": 1})
    whole = train(small_config(tiny_sd1, red_dataset, name="pwhole", **options))
    first = _stopped_run(tiny_sd1, red_dataset, "ppart", **options)
    rest = train(resume=first.run_dir)
    assert {**first.losses, **rest.losses} == whole.losses


def test_the_state_codec_keeps_nested_tables_tuples_and_shared_tensors(tmp_path):
    from app.engine.training import state_codec

    shared = torch.arange(4.0)
    state = {
        "state": {
            0: {"step": torch.tensor(3.0), "qmap": shared, "d": 1e-6, "k": 2},
            1: {"qmap": shared, "slice": shared[1:3]},
        },
        "param_groups": [{"betas": (0.9, 0.999), "params": [0, 1], "fused": None, "use": True, "lr": float("inf")}],
    }
    path = tmp_path / "s.safetensors"
    path.write_bytes(state_codec.encode(state))
    back = state_codec.decode_file(path)
    assert back["param_groups"] == state["param_groups"] and back["state"][0]["k"] == 2
    assert torch.equal(back["state"][1]["slice"], torch.tensor([1.0, 2.0]))
    assert back["state"][0]["qmap"] is back["state"][1]["qmap"]  # stored once, shared again
    with pytest.raises(state_codec.StateFormatError, match="cannot store a object"):
        state_codec.encode({"x": object()})


def test_pruning_keeps_the_newest_by_step_number_not_by_name(tmp_path):
    run = RunDir(path=tmp_path, name="big")
    run.checkpoints.mkdir()
    for step in (999_998, 999_999, 1_000_000):
        run.checkpoint_path(step).write_bytes(b"x")
    gone = prune_checkpoints(run, keep_last=2)
    assert [p.name for p in gone] == ["big-step999998.safetensors"]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [
        "big-step1000000.safetensors",
        "big-step999999.safetensors",
    ]


def test_a_config_edited_to_another_rank_is_refused_before_the_model_loads(tiny_sd1, red_dataset):
    first = _stopped_run(tiny_sd1, red_dataset, "ranked")
    config_path = first.run_dir / "config.toml"
    config_path.write_text(config_path.read_text(encoding="utf-8").replace("rank = 4", "rank = 8"), encoding="utf-8")
    with pytest.raises(TrainError) as caught:
        train(resume=first.run_dir)
    assert str(caught.value) == (
        f"{config_path}: network 'rank' is 8 but the saved state was trained with 4; put it back or start a new run"
    )


def test_an_older_state_without_network_settings_still_refuses_another_rank(tiny_sd1, red_dataset):
    first = _stopped_run(tiny_sd1, red_dataset, "ranked-old")
    info_path = first.run_dir / "state" / "trainer.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    del info["network"]
    info_path.write_text(json.dumps(info), encoding="utf-8")
    config_path = first.run_dir / "config.toml"
    config_path.write_text(config_path.read_text(encoding="utf-8").replace("rank = 4", "rank = 8"), encoding="utf-8")
    with pytest.raises(
        TrainError,
        match=r"state: the saved state does not fit the network in .*config\.toml "
        r"\(.*\); were its network settings \(rank, targets\) changed\?",
    ):
        train(resume=first.run_dir)


@pytest.mark.parametrize("step", ["two", -1, 2.5, True, None])
def test_a_trainer_json_with_an_impossible_step_is_refused(step, tiny_sd1, red_dataset, tmp_path):
    first = _stopped_run(tiny_sd1, red_dataset, f"step-{step}")
    info_path = first.run_dir / "state" / "trainer.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info["step"] = step
    info_path.write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(TrainError) as caught:
        train(resume=first.run_dir)
    assert str(caught.value) == (
        f"{info_path}: 'step' must be a whole number of 0 or more, not {str(step)!r}; the resume state is damaged"
    )


def test_temp_files_of_a_killed_save_are_cleaned_at_the_next_start(tiny_sd1, red_dataset):
    first = _stopped_run(tiny_sd1, red_dataset, "litter")
    folder = first.run_dir
    leftovers = [
        folder / ".state.tmp-abc" / "optimizer.safetensors",
        folder / ".state.old-123" / "trainer.json",
        folder / "checkpoints" / ".litter-step000003.safetensors.x1y2.tmp.safetensors",
        folder / ".log.jsonl.k3j4.tmp",
        folder / "samples" / ".step000002-0.png.q9.tmp.png",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    rest = train(resume=folder)
    assert rest.status == "done"
    assert not any(path.exists() for path in leftovers)
    assert not list(folder.glob(".state.*"))


def test_a_kill_between_the_state_renames_resumes_from_the_old_state(tiny_sd1, red_dataset):
    first = _stopped_run(tiny_sd1, red_dataset, "swap")
    folder = first.run_dir
    shutil.move(folder / "state", folder / ".state.old-99")  # killed after the first rename of a save
    rest = train(resume=folder)
    assert sorted(rest.losses) == [3, 4] and (folder / "state" / "trainer.json").is_file()
    assert not list(folder.glob(".state.old-*"))


def test_output_dir_set_to_a_file_is_one_sentence(tiny_sd1, red_dataset, tmp_path):
    taken = tmp_path / "not-a-folder"
    taken.write_text("x", encoding="utf-8")
    with pytest.raises(TrainError) as caught:
        train(small_config(tiny_sd1, red_dataset, name="out", output_dir=str(taken)))
    assert str(caught.value) == f"output_dir {taken} is a file, not a folder; pick a folder for the runs"
    below = taken / "runs"
    with pytest.raises(TrainError, match=r"^output_dir .*not-a-folder/runs: cannot be made a folder \(.*\)$"):
        train(small_config(tiny_sd1, red_dataset, name="out", output_dir=str(below)))


def test_resume_warns_when_the_dataset_changed_since_the_stop(tiny_sd1, tmp_path):
    from PIL import Image
    from train_helpers import write_images

    folder = write_images(tmp_path / "ds" / "1_sks")
    first = _stopped_run(tiny_sd1, tmp_path / "ds", "drift")
    Image.new("RGB", (64, 64), (10, 10, 240)).save(folder / "img0.png")  # changed
    (folder / "img3.png").unlink()  # removed
    (folder / "img3.txt").unlink()
    (folder / "img1.txt").write_text("sks, smiling", encoding="utf-8")  # recaptioned
    Image.new("RGB", (64, 64), (10, 240, 10)).save(folder / "new.png")  # added
    events = []
    rest = train(resume=first.run_dir, on_event=events.append)
    assert rest.status == "done"
    assert warnings_in(events) == [
        "the dataset changed since the run stopped: 4 picture(s) differ (2 changed or recaptioned, 1 added, "
        "1 removed); the run goes on with the pictures as they are now, so it will not repeat an uninterrupted "
        "run exactly"
    ]


def test_an_unchanged_dataset_resumes_without_a_warning(tiny_sd1, red_dataset):
    first = _stopped_run(tiny_sd1, red_dataset, "same")
    events = []
    train(resume=first.run_dir, on_event=events.append)
    assert warnings_in(events) == []
