""" "Try a prompt" while training: rendered between two steps with the adapter as it is, off the run's clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from train_helpers import small_config

from app.core.events import ImageReady
from app.core.train_requests import TryPrompt
from app.engine.training import loop as loop_module
from app.engine.training import train
from app.engine.training.run import read_log


@pytest.mark.slow
def test_a_tried_prompt_renders_after_the_step_it_was_asked_at(tiny_sd1, red_dataset):
    events = []
    asked = {2: [TryPrompt("{trigger}, a red square", seed=5), "sample"]}
    step = {"n": 0}

    def take_requests():
        step["n"] += 1
        return asked.get(step["n"], [])

    result = train(
        small_config(tiny_sd1, red_dataset, steps=3, sample={"prompts": ["sks"], "every": 0, "steps": 2}),
        on_event=events.append,
        take_requests=take_requests,
    )
    assert result.status == "done"
    images = [e for e in events if isinstance(e, ImageReady)]
    tried = [e for e in images if Path(e.path).name.startswith("try-")]
    assert [(Path(e.path).name, e.step, e.meta["prompt"], e.meta["seed"]) for e in tried] == [
        ("try-step000002-0.png", 2, "sks, a red square", 5)
    ]
    assert Image.open(tried[0].path).size == (64, 64)
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
