"""The ``request`` command (Save checkpoint now / Sample now) and reading past runs from their folders."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from app.core.train_config import TrainConfig
from app.core.train_requests import TryPrompt
from app.ui.train.run_history import RunStatus, list_runs, read_run
from app.worker import protocol as P
from app.worker.loop import Emitter, Job, JobContext, Worker


def test_request_commands_are_built_and_checked():
    line = P.encode(P.request("job-1", "checkpoint"))
    assert P.parse_command(line) == {"cmd": "request", "id": "job-1", "action": "checkpoint"}
    assert P.parse_command(P.encode(P.request("job-1", P.RequestAction.SAMPLE)))["action"] == "sample"
    with pytest.raises(P.ProtocolError, match="unknown action 'explode'"):
        P.parse_command('{"cmd": "request", "id": "j", "action": "explode"}')
    with pytest.raises(P.ProtocolError, match="request without a string 'id'"):
        P.parse_command('{"cmd": "request", "action": "sample"}')
    with pytest.raises(ValueError):
        P.request("j", "explode")


def test_a_try_request_carries_its_prompt_and_is_checked():
    line = P.encode(P.request("job-1", P.RequestAction.TRY, prompt="sks, a cat", seed=4))
    cmd = P.parse_command(line)
    assert P.train_request(cmd) == TryPrompt("sks, a cat", seed=4)
    assert P.train_request(P.parse_command(P.encode(P.request("j", "sample")))) == "sample"
    for bad, why in (
        ({}, "try request without a prompt of 1 to 2000 characters"),
        ({"prompt": "  "}, "try request without a prompt of 1 to 2000 characters"),
        ({"prompt": "x" * 2001}, "try request without a prompt of 1 to 2000 characters"),
        ({"prompt": "a", "seed": -1}, "try request with a seed that is not a whole number from 0: -1"),
        ({"prompt": "a", "negative": 3}, "try request with a negative prompt that is not text"),
    ):
        with pytest.raises(P.ProtocolError) as err:
            P.parse_command(P.encode({"cmd": "request", "id": "j", "action": "try", **bad}))
        assert str(err.value) == why


def test_the_worker_hands_requests_to_the_running_job_only():
    out = io.StringIO()
    worker = Worker(io.StringIO(), Emitter(out), {})
    running = Job(id="run", kind=P.JobKind.TRAIN, params={})
    worker._running = running
    for action in ("checkpoint", "sample", "checkpoint"):
        worker._on_command(P.parse_command(P.encode(P.request("run", action))))
    worker._on_command(P.parse_command(P.encode(P.request("someone-else", "sample"))))
    ctx = JobContext(running, Emitter(out))
    assert ctx.take_requests() == ["checkpoint", "sample", "checkpoint"]
    assert ctx.take_requests() == []  # taken once
    assert out.getvalue() == ""  # nothing to report to the GUI


def make_run(root: Path, name: str, *, steps: int = 10, logged: int = 6, saved: int = 4, final: bool = False) -> Path:
    folder = root / name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "samples").mkdir()
    TrainConfig.from_dict({"name": name, "steps": steps}).save_toml(folder / "config.toml")
    lines = [json.dumps({"step": s, "loss": 1.0 / s, "lr": 1e-4, "time": s * 0.1}) for s in range(1, logged + 1)]
    (folder / "log.jsonl").write_text("\n".join(lines) + '\n{"step": 7, "lo', encoding="utf-8")  # killed mid-line
    if saved:
        state = folder / "state"
        state.mkdir()
        for file in ("adapter.safetensors", "optimizer.safetensors", "scheduler.safetensors"):
            (state / file).write_bytes(b"x")
        (state / "trainer.json").write_text(json.dumps({"step": saved}), encoding="utf-8")
    for step in (4, 2):
        (folder / "checkpoints" / f"{name}-step{step:06d}.safetensors").write_bytes(b"x")
    (folder / "samples" / "step000002-1.png").write_bytes(b"x")
    (folder / "samples" / "step000002-0.png").write_bytes(b"x")
    if final:
        (folder / f"{name}.safetensors").write_bytes(b"x")
    return folder


def test_runs_are_read_from_their_folders(tmp_path):
    interrupted = make_run(tmp_path, "cat")
    info = read_run(interrupted, with_log=True)
    assert info.status is RunStatus.INTERRUPTED and info.resumable
    assert (info.step, info.saved_step, info.total) == (6, 4, 10)
    assert info.final_loss == pytest.approx(1 / 6) and info.log.steps == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in info.checkpoints] == [2, 4]
    assert [p.name for _, p in info.samples] == ["step000002-0.png", "step000002-1.png"]

    done = make_run(tmp_path, "dog", steps=4, logged=4, saved=4, final=True)
    assert read_run(done).status is RunStatus.DONE
    assert read_run(done).adapters()[-1] == ("final (step 4)", done / "dog.safetensors")
    assert read_run(make_run(tmp_path, "owl", saved=0)).status is RunStatus.NOT_SAVED

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.toml").write_text("steps = 'many'\n", encoding="utf-8")
    info = read_run(broken)
    assert info.status is RunStatus.UNREADABLE and "steps must be a whole number" in info.problem
    (tmp_path / "not-a-run").mkdir()
    names = sorted(r.name for r in list_runs([tmp_path, tmp_path, tmp_path / "missing"]))
    assert names == ["broken", "cat", "dog", "owl"]


def test_the_best_checkpoint_by_validation_loss_is_marked(tmp_path):
    folder = make_run(tmp_path, "val", steps=4, logged=4, saved=4, final=True)
    lines = [json.dumps({"step": s, "loss": 1.0, "lr": 1e-4, "val_loss": v}) for s, v in ((2, 0.3), (4, 0.5))]
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "samples" / "try-step000003-0.png").write_bytes(b"x")
    info = read_run(folder, with_log=True)
    assert info.best == (2, 0.3) and info.log.val == {2: 0.3, 4: 0.5}
    assert [label for label, _ in info.adapters()] == [
        "step 2 ★ best validation loss",
        "step 4",
        "final (step 4)",
    ]
    assert (3, folder / "samples" / "try-step000003-0.png") in info.samples  # Try a prompt pictures are listed
    assert read_run(make_run(tmp_path, "plain")).best is None  # no validation: nothing marked
