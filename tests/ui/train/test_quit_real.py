"""Quitting while training, end to end: the real worker, the tiny SD1 model, two windows.

The first window quits mid-run through its question box ("Stop, save and quit"); a new
window's History resumes the run, which must reproduce the losses of a run never stopped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox
from test_train_tab_real import TIMEOUT_MS, click, fill

from app.core.train_queue import EntryState
from app.ui.quit_guard import STOP_TEXT
from app.ui.train.run_history import RunStatus, read_log, read_run

pytestmark = pytest.mark.slow

STEPS = 60


def open_window(qtbot):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    window = MainWindow(WorkerClient(env={"OMP_NUM_THREADS": "1"}))
    qtbot.addWidget(window)
    window.resize(1180, 800)
    window.show()
    qtbot.waitExposed(window)
    window.tabs.setCurrentWidget(window.train_tab)
    return window


def train_to_end(qtbot, window, tiny_sd1, red_pictures, name: str) -> Path:
    tab = window.train_tab
    fill(tab, qtbot, tiny_sd1, red_pictures, name, STEPS)
    click(qtbot, tab.start_button)
    entry = tab.ops.current
    qtbot.waitUntil(lambda: entry.state.final, timeout=TIMEOUT_MS)
    assert entry.state is EntryState.DONE, entry.error
    return Path(entry.run_dir)


def test_quit_during_training_saves_a_state_that_resumes_exactly(qtbot, tiny_sd1, red_pictures):
    first = open_window(qtbot)
    whole = train_to_end(qtbot, first, tiny_sd1, red_pictures, "whole")
    expected = read_log(whole / "log.jsonl")
    assert expected.steps == list(range(1, STEPS + 1))

    tab = first.train_tab
    fill(tab, qtbot, tiny_sd1, red_pictures, "part", STEPS)
    click(qtbot, tab.start_button)
    entry = tab.ops.current
    qtbot.waitUntil(lambda: entry.step >= 3, timeout=TIMEOUT_MS)

    first.quit_action.trigger()  # Ctrl+Q / File > Quit
    box = first.quit_guard.box
    assert box is not None and box.isVisible() and first.isVisible()
    asked_at = int(box.text().split("is at step ")[1].split(" ")[0])
    assert box.text().startswith("Training 'part' is at step ") and f"of {STEPS}." in box.text()
    assert asked_at >= 3
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    stop = next(b for b in box.buttons() if b.text() == STOP_TEXT)
    stop.click()

    qtbot.waitUntil(lambda: not first.isVisible(), timeout=60_000)
    assert entry.state is EntryState.STOPPED and asked_at <= entry.step < STEPS
    stopped_at = entry.step
    run_dir = Path(entry.run_dir)
    info = read_run(run_dir)
    assert info.status is RunStatus.INTERRUPTED and info.saved_step == stopped_at
    assert (run_dir / "state" / "trainer.json").is_file()
    assert read_log(run_dir / "log.jsonl").steps == list(range(1, stopped_at + 1))

    # A new start of the app: History offers Resume, and the resumed run ends as if never stopped.
    second = open_window(qtbot)
    tab = second.train_tab
    tab.views.setCurrentWidget(tab.history_panel)
    qtbot.waitUntil(
        lambda: any(r.path == run_dir and r.status is RunStatus.INTERRUPTED for r in tab.ops.history), timeout=10_000
    )
    assert tab.history_panel.select(str(run_dir))
    click(qtbot, tab.history_panel.resume_button)
    resumed = tab.ops.current
    qtbot.waitUntil(lambda: resumed.state.final, timeout=TIMEOUT_MS)
    assert resumed.state is EntryState.DONE, resumed.error
    got = read_log(run_dir / "log.jsonl")
    assert got.steps == expected.steps
    assert got.losses == expected.losses  # float for float: the resume starts at the saved step exactly
