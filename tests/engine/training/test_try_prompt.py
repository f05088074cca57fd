""" "Try a prompt" while training: rendered between two steps with the adapter as it is, off the run's clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from train_helpers import small_config

from app.core.events import ArtifactKind, ArtifactSaved, ImageReady
from app.core.train_requests import TryPrompt
from app.engine.training import loop as loop_module
from app.engine.training import train
from app.engine.training.run import read_log


@pytest.mark.slow
def test_a_tried_prompt_renders_after_the_step_it_was_asked_at(tiny_sd1, red_dataset):
    events = []
    asked = {2: [TryPrompt("{trigger}, a red square", seed=5), "sample"], 3: [TryPrompt("red", negative="blue")]}
    step = {"n": 0}

    def take_requests():
        step["n"] += 1
        if step["n"] == 3:  # a try at step 3 from before a resume (which redoes the steps after its save)
            run = next(e.path for e in events if isinstance(e, ArtifactSaved) and e.kind is ArtifactKind.RUN)
            (Path(run) / "samples" / "try-step000003-0.png").write_bytes(b"an earlier try")
        return asked.get(step["n"], [])

    config = small_config(tiny_sd1, red_dataset, steps=3, sample={"prompts": ["sks"], "every": 0, "steps": 2})
    result = train(config, on_event=events.append, take_requests=take_requests)
    assert result.status == "done"
    images = [e for e in events if isinstance(e, ImageReady)]
    tried = [e for e in images if Path(e.path).name.startswith("try-")]
    assert [(Path(e.path).name, e.step, e.meta["prompt"], e.meta["negative"], e.meta["seed"]) for e in tried] == [
        ("try-step000002-0.png", 2, "sks, a red square", "", 5),
        ("try-step000003-1.png", 3, "red", "blue", 1234),
    ]
    assert Image.open(tried[0].path).size == (64, 64)
    assert (Path(tried[1].path).parent / "try-step000003-0.png").read_bytes() == b"an earlier try"  # kept
    assert [e.step for e in images if e not in tried] == [2]  # the sample asked at the same step, as before
    assert [r["step"] for r in read_log(result.run_dir / "log.jsonl")] == [1, 2, 3]  # not a step


@pytest.mark.parametrize("paused_for", [0.0, 30.0])
def test_time_spent_trying_is_not_the_runs(monkeypatch, paused_for):
    now = {"t": 100.0}
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: now["t"])
    clock = loop_module._StepClock(start_step=0, elapsed_before=5.0)
    for step in (1, 2, 3):
        now["t"] += 2.0  # every step takes 2 s
        per_step, elapsed = clock.lap(step)
        if step == 2:
            with clock.paused():
                now["t"] += paused_for  # a Try a prompt picture
    assert per_step == 2.0 and elapsed == 5.0 + 6.0
