"""Quitting while a job runs asks first (the fake worker; the real resume is in tests/ui/train)."""

from __future__ import annotations

from PIL import Image
from PySide6.QtWidgets import QMessageBox

from app.core.train_config import load_preset
from app.ui.quit_guard import STOP_TEXT


def config(name: str):
    cfg = load_preset("sd15-character")
    cfg.name = name
    cfg.base = "tiny"
    return cfg


def stop_button(box: QMessageBox):
    return next(b for b in box.buttons() if b.text() == STOP_TEXT)


def test_cancel_keeps_the_window_and_the_training(qtbot, make_window):
    window = make_window(FAKE_WORKER_STEP_S="0.3")
    ops = window.train_tab.ops
    entry = ops.start(config("shapes_c"))
    qtbot.waitUntil(lambda: entry.step >= 1, timeout=10_000)
    window.close()
    box = window.quit_guard.box
    assert window.isVisible() and box is not None and box.isVisible()
    assert box.text().startswith("Training 'shapes_c' is at step ")
    assert box.text().endswith("Stop and save a resumable state, or keep training?")
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert window.isVisible() and ops.current is entry and not window.quit_guard.stopping
    # Stop pressed already, then Stop, save and quit: it waits for the save (never a second, hard stop).
    messages: list[str] = []
    ops.message.connect(messages.append)
    ops.stop()
    window.close()
    stop_button(window.quit_guard.box).click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert entry.state.final and entry.state.value == "stopped"
    assert not any(m.startswith("Stopped at once") for m in messages), messages


def test_a_waiting_queue_is_named_and_a_render_just_stops(qtbot, make_window):
    window = make_window(FAKE_WORKER_STEP_S="0.3")
    job = window.generate_ops.generate({"base": "tiny", "prompt": "a fox", "steps": 20})
    qtbot.waitUntil(lambda: window.tracker.get(job) is not None and window.tracker.get(job).step >= 1, timeout=10_000)
    ops = window.train_tab.ops
    ops.enqueue(config("one"))
    ops.enqueue(config("two"))
    window.close()
    box = window.quit_guard.box
    assert box.isVisible() and window.isVisible()
    assert box.text() == (
        "2 runs are waiting in the training queue and will not start. Quit anyway, or keep the window open?"
    )
    assert [b.text() for b in box.buttons() if b is not box.button(QMessageBox.StandardButton.Cancel)] == ["Quit"]
    box.button(QMessageBox.StandardButton.Cancel).click()
    ops.clear_finished()
    for entry in list(ops.entries):
        ops.remove(entry.id)
    window.close()  # only the render runs: no question
    assert not window.isVisible()


def test_a_caption_job_asks_too(qtbot, make_window, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64), (200, 20, 20)).save(folder / f"img{i}.png")
    window = make_window(FAKE_WORKER_STEP_S="0.3")
    tab = window.dataset_tab
    assert tab.open_folder(str(folder))
    qtbot.waitUntil(lambda: not tab.session.scanning and tab.model.rowCount() == 3, timeout=10_000)
    job = tab.start_auto_caption({"backend": "blip", "model": str(tmp_path / "no-model")})
    assert job
    qtbot.waitUntil(lambda: window.tracker.get(job).step >= 1, timeout=10_000)
    window.close()
    box = window.quit_guard.box
    assert box.isVisible() and box.text().startswith("Auto-captioning is at picture ")
    stop_button(box).click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert window.tracker.get(job).state.is_final


def test_quit_with_only_a_waiting_queue_closes_without_starting_it(qtbot, make_window):
    window = make_window()
    ops = window.train_tab.ops
    waiting = ops.enqueue(config("later"))
    window.close()
    box = window.quit_guard.box
    assert box.text().startswith("1 run is waiting in the training queue")
    next(b for b in box.buttons() if b.text() == "Quit").click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)
    assert waiting.state.value == "waiting" and window.tracker.jobs() == []
