"""The Generate tab bound to its model, driven through the window with the fake worker."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from app.core.configs import GenerateRequest, Scheduler
from app.ui.common.formatting import format_eta
from app.ui.recent_models import RecentModels
from app.ui.worker_client import WorkerState


def same_picture(pixmap, path: str) -> bool:
    shown = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB32)
    on_disk = QImage(path).convertToFormat(QImage.Format.Format_RGB32)
    return not on_disk.isNull() and shown == on_disk


def fill_form(tab, *, base="fake-model", prompt="a red fox", steps=3, width=96, height=64) -> None:
    tab.model_picker.setText(base)
    tab.prompt.setPlainText(prompt)
    tab.steps.setValue(steps)
    tab.width_box.setValue(width)
    tab.height_box.setValue(height)
    tab.scheduler.setCurrentText(Scheduler.DDIM.value)


def test_generate_shows_the_rendered_picture_and_the_seed_used(qtbot, make_window):
    window = make_window()
    tab = window.generate_tab
    fill_form(tab)
    assert not tab.seed_lock.isChecked() and not tab.seed.isEnabled()
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    assert tab.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not tab.preview.pixmap().isNull(), timeout=10_000)
    qtbot.waitUntil(lambda: tab.status_label.text() == "Done.", timeout=5_000)

    pixmap = tab.preview.pixmap()
    assert (pixmap.width(), pixmap.height()) == (96, 64)
    assert same_picture(pixmap, tab.preview.path())
    meta = window.generate_ops.last_meta
    assert meta["scheduler"] == "DDIM" and meta["steps"] == 3
    assert tab.seed.value() == meta["seed"]  # unlocked: shows the seed drawn by the worker
    assert f"Seed {meta['seed']}" in tab.image_info.text()
    assert (tab.progress.value(), tab.progress.maximum()) == (3, 3)
    assert not tab.cancel_button.isEnabled()
    assert not tab.error_label.isVisible()
    assert RecentModels().items() == ["fake-model"]  # persisted for the next start
    assert tab.model_picker.combo.itemText(0) == "fake-model"


def test_locked_seed_is_sent(qtbot, make_window):
    window = make_window()
    tab = window.generate_tab
    fill_form(tab)
    tab.seed_lock.setChecked(True)
    tab.seed.setValue(1234)
    assert tab.values()["seed"] == 1234
    tab.generate()
    qtbot.waitUntil(lambda: window.generate_ops.last_meta.get("seed") == 1234, timeout=10_000)


def test_invalid_settings_show_the_message_and_submit_nothing(qtbot, make_window):
    window = make_window()
    tab = window.generate_tab
    fill_form(tab, base="")
    tab.generate()
    assert tab.error_label.isVisible()
    assert tab.error_label.text() == "base is empty: pick a base model"
    assert window.client.state is WorkerState.STOPPED  # nothing was submitted
    assert window.tracker.jobs() == []


def test_failed_render_shows_the_workers_message(qtbot, make_window):
    window = make_window()
    tab = window.generate_tab
    fill_form(tab, prompt="fail")
    tab.generate()
    qtbot.waitUntil(lambda: tab.error_label.isVisible(), timeout=10_000)
    assert tab.error_label.text() == "Bad settings: the prompt says fail"
    assert tab.status_label.text() == "Failed."
    # The next good render clears the error line.
    tab.prompt.setPlainText("a fox")
    tab.generate()
    assert not tab.error_label.isVisible()


def test_cancel_stops_the_render(qtbot, make_window):
    window = make_window(FAKE_WORKER_STEP_S="0.1")
    tab = window.generate_tab
    fill_form(tab, steps=200)
    tab.generate()
    qtbot.waitUntil(lambda: tab.progress.value() >= 1, timeout=10_000)
    qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.status_label.text() == "Cancelled.", timeout=5_000)
    assert not tab.cancel_button.isEnabled()
    assert tab.preview.pixmap().isNull()


def test_a_second_generate_replaces_the_running_one(qtbot, make_window, event_log):
    window = make_window(FAKE_WORKER_STEP_S="0.05")
    events = event_log(window.client)
    tab = window.generate_tab
    fill_form(tab, steps=200)
    first = window.generate_ops.generate(tab.values())
    qtbot.waitUntil(lambda: bool(events.of_type("progress", first)), timeout=10_000)
    fill_form(tab, steps=2)
    second = window.generate_ops.generate(tab.values())
    qtbot.waitUntil(lambda: events.finished(second) is not None, timeout=10_000)
    assert events.finished(first)["status"] == "cancelled"
    assert events.finished(second)["status"] == "done"
    assert tab.status_label.text() == "Done."


def test_last_settings_are_restored_at_start(qtbot, make_window):
    window = make_window()
    tab = window.generate_tab
    fill_form(tab, base="some/model", prompt="a castle", steps=17, width=320, height=200)
    tab.negative.setPlainText("blurry")
    tab.seed_lock.setChecked(True)
    tab.seed.setValue(42)
    tab.guidance.setValue(5.5)
    window.close()

    saved = GenerateRequest.load_toml(window.generate_ops.settings_path)
    assert saved.steps == 17 and saved.seed == 42 and saved.scheduler is Scheduler.DDIM

    again = make_window().generate_tab
    assert again.values() == {
        "base": "some/model",
        "prompt": "a castle",
        "negative": "blurry",
        "seed": 42,
        "steps": 17,
        "guidance": 5.5,
        "width": 320,
        "height": 200,
        "scheduler": "DDIM",
    }
    assert again.seed_lock.isChecked() and again.seed.isEnabled()


def test_broken_settings_file_gives_defaults(qtbot, make_window, loraloom_home):
    settings = loraloom_home / "config" / "generate.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text('steps = "many"\n', encoding="utf-8")
    tab = make_window().generate_tab
    assert tab.values()["steps"] == GenerateRequest().steps


def test_size_boxes_round_typed_values_to_multiples_of_8(qtbot, make_window):
    tab = make_window().generate_tab
    tab.width_box.lineEdit().selectAll()
    qtbot.keyClicks(tab.width_box, "500")
    tab.generate()  # commits typed text the way leaving the field does
    assert tab.width_box.value() == 504
    assert tab.width_box.singleStep() == 8


def test_eta_formatting():
    assert format_eta(None) == ""
    assert format_eta(4.4) == "4 s"
    assert format_eta(125) == "2 min 05 s"
    assert format_eta(float("inf")) == ""
