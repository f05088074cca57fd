"""A run that failed for a full disk (or a read-only folder) is offered for Resume: the History
selects it with Resume enabled, and the status line says what to do."""

from __future__ import annotations

import json

import pytest

from app.core import paths
from app.core.train_config import TrainConfig


def _saved_run(name: str):
    folder = paths.runs_dir() / name
    (folder / "state").mkdir(parents=True)
    TrainConfig.from_dict({"name": name, "steps": 10}).save_toml(folder / "config.toml")
    for file in ("adapter.safetensors", "optimizer.safetensors", "scheduler.safetensors"):
        (folder / "state" / file).write_bytes(b"x")
    (folder / "state" / "trainer.json").write_text(json.dumps({"step": 4}), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "kind, message",
    [
        (
            "disk_full",
            "Disk full while saving /runs/full/full-step000006.safetensors: free 0.1 GB and resume; "
            "the last checkpoint (step 4) is intact",
        ),
        (
            "permission",
            "Cannot save /runs/full/samples/step000006-0.png (Read-only file system): the folder is "
            "read-only or not yours; make it writable and resume; the last checkpoint (step 4) is intact",
        ),
    ],
)
def test_a_run_that_failed_for_space_is_selected_for_resume(kind, message, make_tab, qtbot):
    tab = make_tab()
    ops = tab.ops
    folder = _saved_run("full")
    entry = ops.enqueue(TrainConfig.from_dict({"name": "full", "steps": 10}))
    entry.state, entry.job_id = type(entry.state).RUNNING, "job-1"  # as if the worker had taken it
    ops.client.jobSubmitted.emit({"id": "job-1", "kind": "train"})  # the tracker follows it,
    ops._follow(entry, ops.tracker.handle("job-1"))  # and so does the queue (as _run_next does)
    said = []
    ops.message.connect(said.append)
    ops.client.eventReceived.emit({"type": "artifact", "job": "job-1", "kind": "run", "path": str(folder)})
    ops.client.eventReceived.emit(
        {
            "type": "finished",
            "job": "job-1",
            "status": "failed",
            "error": {"kind": kind, "message": message, "detail": ""},
        }
    )
    panel = tab.history_panel
    qtbot.waitUntil(lambda: panel.selected() is not None and str(panel.selected().path) == str(folder), timeout=10_000)
    assert panel.resume_button.isEnabled()
    heading = "" if kind == "disk_full" else "Read-only folder: "
    assert f"full failed: {heading}{message} — then press Resume in History (the run is selected there)" in said
