"""On start, the Train tab offers to resume a run that a crash, kill or power loss ended (not one
the user stopped); the runs are made by the real trainer on the tiny model."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox
from train_helpers import small_config, trained_to

from app.core import paths
from app.core.events import ArtifactKind, ArtifactSaved

pytestmark = pytest.mark.slow


def _crashed_run(base, dataset):
    """A run killed right after its step-2 checkpoint (the exception stands in for the kill)."""
    from app.engine.training import train

    def power_loss(event):
        if isinstance(event, ArtifactSaved) and event.kind is ArtifactKind.CHECKPOINT:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(small_config(base, dataset, name="crashed", steps=4), on_event=power_loss)
    return paths.runs_dir() / "crashed"


def _stopped_run(base, dataset):
    from app.engine.training import train

    seen = []
    result = train(
        small_config(base, dataset, name="stopped", steps=4),
        on_event=seen.append,
        should_stop=lambda: trained_to(seen, 1),
    )
    assert result.status == "cancelled" and result.step == 1
    return result.run_dir


def _button(box: QMessageBox, text: str):
    return next(b for b in box.buttons() if b.text() == text)


def test_an_interrupted_run_is_offered_and_resume_queues_it(make_tab, qtbot, tiny_sd1, red_dataset):
    _stopped_run(tiny_sd1, red_dataset)  # newer than none, but stopped on purpose: never offered
    crashed = _crashed_run(tiny_sd1, red_dataset)
    tab = make_tab()
    qtbot.waitUntil(lambda: tab.resume_box is not None, timeout=10_000)
    box = tab.resume_box
    assert box.text() == (
        "The training run crashed was interrupted at step 2 of 4 (the app or the computer stopped). "
        "Resume it from step 2?"
    )
    assert str(crashed) in box.informativeText()
    _button(box, "Resume").click()
    assert tab.resume_box is None
    assert [e.resume for e in tab.ops.entries] == [str(crashed)]


def test_not_now_is_remembered_and_a_stopped_run_is_never_offered(make_tab, qtbot, tiny_sd1, red_dataset):
    _crashed_run(tiny_sd1, red_dataset)
    first = make_tab()
    qtbot.waitUntil(lambda: first.resume_box is not None, timeout=10_000)
    _button(first.resume_box, "Not now").click()
    assert first.ops.entries == []

    _stopped_run(tiny_sd1, red_dataset)
    second = make_tab()
    assert second.ops.wait()
    qtbot.wait(50)  # the finished look-up's signal is delivered by the event loop
    assert second.resume_box is None and second.ops.entries == []
