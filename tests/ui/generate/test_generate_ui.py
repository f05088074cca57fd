"""The Generate tab's adapter stack, live preview, A/B, XY grid, batch and PNG drop (pytest-qt, fake worker)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from safetensors.numpy import save_file

from app.core.pngmeta import format_parameters
from app.ui.jobs import JobState

FAKE_WORKER = Path(__file__).resolve().parents[2] / "ui" / "fake_worker.py"


def tiny_adapter(path: Path, trigger: str = "", family: str = "sd_v1") -> Path:
    """A small but real kohya file (header, factors, alpha), enough for the GUI's header reading."""
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    meta = {"ss_network_module": "networks.lora", "ss_base_model_version": family}
    if trigger:
        meta["modelspec.trigger_phrase"] = trigger
    save_file(
        {
            f"{name}.lora_down.weight": np.zeros((4, 32), np.float32),
            f"{name}.lora_up.weight": np.zeros((32, 4), np.float32),
            f"{name}.alpha": np.array(4.0, np.float32),
        },
        str(path),
        metadata=meta,
    )
    return path


@pytest.fixture
def window(qtbot, monkeypatch):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    monkeypatch.setenv("FAKE_WORKER_STEP_S", "0.05")
    w = MainWindow(WorkerClient([sys.executable, str(FAKE_WORKER)]))
    qtbot.addWidget(w)
    w.show()
    tab = w.generate_tab
    tab.model_picker.setText("fake-model")
    tab.prompt.setPlainText("a cat")
    tab.steps.setValue(2)
    tab.width_box.setValue(64)
    tab.height_box.setValue(64)
    tab.seed_lock.setChecked(True)
    tab.seed.setValue(7)
    yield w
    w.close()


@pytest.fixture
def adapters(tmp_path) -> dict[str, Path]:
    return {
        "red": tiny_adapter(tmp_path / "red.safetensors", "red style"),
        "blue": tiny_adapter(tmp_path / "blue.safetensors", "blue style, azure"),
        "xl": tiny_adapter(tmp_path / "xl.safetensors", family="sdxl_base_v1-0"),
    }


def add(qtbot, tab, *paths) -> None:
    for p in paths:
        tab.add_adapter(str(p))
    qtbot.waitUntil(lambda: all(not r.loading for r in tab.model.stack.rows), timeout=10_000)


def test_trigger_words_join_the_prompt_while_enabled(qtbot, window, adapters):
    tab = window.generate_tab
    tab.live.setChecked(False)
    add(qtbot, tab, adapters["red"], adapters["blue"])
    row = tab.stack_widget.row_widgets[0]
    assert row.chip_texts() == ["red style"]
    assert tab.model.make_request(tab.values()).prompt == "red style, blue style, azure, a cat"
    assert tab.trigger_label.text() == "Trigger words added: red style, blue style, azure"

    row.down_button.click()  # reorder: blue first
    assert [r.display_name for r in tab.model.stack.rows] == ["blue", "red"]
    assert tab.model.make_request(tab.values()).prompt == "blue style, azure, red style, a cat"
    tab.stack_widget.row_widgets[1].up_button.click()
    row = tab.stack_widget.row_widgets[0]
    row.enabled_box.click()  # disable red: its word leaves the prompt
    assert tab.model.make_request(tab.values()).prompt == "blue style, azure, a cat"
    assert "red style" not in tab.trigger_label.text()
    assert tab.values()["adapters"][0] == {"path": str(adapters["red"]), "weight": 1.0, "enabled": False}

    tab.stack_widget.row_widgets[1].remove_button.click()
    assert tab.model.make_request(tab.values()).prompt == "a cat" and tab.trigger_label.isHidden()


def test_trigger_words_never_reach_the_saved_prompt_and_leave_with_their_adapter(qtbot, window, adapters):
    from app.core.configs import GenerateRequest

    tab = window.generate_tab
    model = window.generate_ops
    tab.live.setChecked(False)
    add(qtbot, tab, adapters["red"])
    tab.generate()
    qtbot.waitUntil(lambda: not model.busy and model.last_image != "", timeout=10_000)
    assert model.last_meta["prompt"] == "red style, a cat"  # what the render (and its PNG) says
    assert GenerateRequest.load_toml(model.settings_path).prompt == "a cat"
    tab.save_settings()  # as when the window closes
    restored = model.load_settings()
    assert restored.prompt == "a cat" and [a["path"] for a in restored.adapters] == [str(adapters["red"])]
    tab.apply_request(restored)
    qtbot.waitUntil(lambda: all(not r.loading for r in model.stack.rows), timeout=10_000)
    assert tab.prompt.toPlainText() == "a cat" and tab.trigger_label.text() == "Trigger words added: red style"

    first = model.last_image
    tab.stack_widget.row_widgets[0].enabled_box.click()  # untick: its words leave the next render
    tab.generate()
    qtbot.waitUntil(lambda: not model.busy and model.last_image != first, timeout=10_000)
    assert model.last_meta["prompt"] == "a cat" and tab.prompt.toPlainText() == "a cat"


def test_adding_an_adapter_live_renders_once_with_its_trigger_words(qtbot, window, adapters):
    tab = window.generate_tab
    model = window.generate_ops
    tab.generate()
    qtbot.waitUntil(lambda: not model.busy and model.last_image != "", timeout=10_000)
    before = {job.id for job in model.tracker.jobs()}
    tab.add_adapter(str(adapters["red"]))  # live preview is on
    qtbot.waitUntil(
        lambda: not model.stack.rows[0].loading and model.job_id not in before and not model.busy, timeout=10_000
    )
    renders = [job for job in model.tracker.jobs() if job.id not in before]
    assert [job.params["prompt"] for job in renders] == ["red style, a cat"]
    assert tab.preview.path() == renders[0].images[0] and model.last_meta["prompt"] == "red style, a cat"
    assert tab.freshness.text() == ""


def test_moving_a_slider_re_renders_the_preview_with_the_locked_seed(qtbot, window, adapters):
    tab = window.generate_tab
    model = window.generate_ops
    add(qtbot, tab, adapters["red"])
    tab.generate()
    qtbot.waitUntil(lambda: model.last_image != "" and not model.busy, timeout=10_000)
    first = tab.preview.path()
    assert tab.freshness.text() == ""

    row = tab.stack_widget.row_widgets[0]
    row.slider.setValue(150)  # the user drags…
    assert "changed since" in tab.freshness.text()  # nothing rendered yet: the picture is labelled stale
    row.slider.sliderReleased.emit()  # …and lets go: the live preview renders
    assert model.busy and tab.freshness.text().startswith("Rendering")
    qtbot.waitUntil(lambda: not model.busy and tab.preview.path() != first, timeout=10_000)
    job = model.tracker.get(model.job_id)
    assert job.params["adapters"][0]["weight"] == 1.5 and job.params["seed"] == 7
    assert tab.freshness.text() == ""

    row.weight_box.setValue(3.5)  # typed beyond the slider's range: renders at once, slider stops at 2
    assert row.slider.value() == 200
    qtbot.waitUntil(lambda: not model.busy, timeout=10_000)
    assert model.tracker.get(model.job_id).params["adapters"][0]["weight"] == 3.5


def test_a_newer_request_cancels_the_stale_one(qtbot, window, adapters, monkeypatch):
    tab = window.generate_tab
    model = window.generate_ops
    add(qtbot, tab, adapters["red"])
    tab.steps.setValue(20)
    row = tab.stack_widget.row_widgets[0]
    row.slider.setValue(50)
    row.slider.sliderReleased.emit()
    stale = model.job_id
    row.slider.setValue(-80)
    row.slider.sliderReleased.emit()
    newest = model.job_id
    qtbot.waitUntil(lambda: model.tracker.get(stale).state.is_final and not model.busy, timeout=15_000)
    assert model.tracker.get(stale).state is JobState.CANCELLED
    assert model.tracker.get(stale).images == []
    assert tab.preview.path() == model.tracker.get(newest).images[0]
    assert model.shown_params["adapters"][0]["weight"] == -0.8


def test_an_adapter_for_another_family_is_marked(qtbot, window, adapters):
    tab = window.generate_tab
    add(qtbot, tab, adapters["xl"], adapters["red"])
    window.tracker.modelChanged.emit({"base": "fake-model", "family": "sd1"})
    rows = tab.stack_widget.row_widgets
    assert rows[0].problem_label.text() == "made for SDXL, but the base model is SD 1.x"
    assert rows[1].problem_label.isHidden()


def test_a_b_button_shows_the_picture_without_adapters_while_held(qtbot, window, adapters):
    tab = window.generate_tab
    model = window.generate_ops
    add(qtbot, tab, adapters["red"])
    tab.generate()
    qtbot.waitUntil(lambda: model.last_image != "" and not model.busy, timeout=10_000)
    with_adapters = tab.preview.path()
    tab.ab_button.pressed.emit()
    qtbot.waitUntil(lambda: tab.preview.path() != with_adapters, timeout=10_000)
    base_job = [j for j in model.tracker.jobs() if j.params.get("adapters") == []][0]
    assert tab.preview.path() == base_job.images[0]
    assert "without adapters" in tab.freshness.text()
    tab.ab_button.released.emit()
    assert tab.preview.path() == with_adapters
    tab.ab_button.pressed.emit()  # the second look comes from the cache: no new job
    assert tab.preview.path() == base_job.images[0]
    assert len([j for j in model.tracker.jobs() if j.params.get("adapters") == []]) == 1
    tab.ab_button.released.emit()


def test_a_b_picture_ready_after_release_is_kept_as_the_a_side(qtbot, window, adapters):
    tab = window.generate_tab
    model = window.generate_ops
    add(qtbot, tab, adapters["red"])
    tab.generate()
    qtbot.waitUntil(lambda: model.last_image != "" and not model.busy, timeout=10_000)
    with_adapters = tab.preview.path()
    tab.ab_button.pressed.emit()
    tab.ab_button.released.emit()  # a quick click: let go long before the base picture is ready
    assert tab.preview.path() == with_adapters
    qtbot.waitUntil(lambda: tab.preview.path() != with_adapters, timeout=10_000)
    base_job = [j for j in model.tracker.jobs() if j.params.get("adapters") == []][0]
    assert tab.preview.path() == base_job.images[0]
    assert tab.freshness.text().startswith("Showing: without adapters (A).")
    tab.ab_button.pressed.emit()  # A/B from here: held shows A (from the cache), let go shows B
    assert tab.preview.path() == base_job.images[0]
    tab.ab_button.released.emit()
    assert tab.preview.path() == with_adapters and tab.freshness.text() == ""


def test_batch_fills_the_history_strip(qtbot, window):
    tab = window.generate_tab
    model = window.generate_ops
    tab.batch.setValue(3)
    tab.generate()
    qtbot.waitUntil(lambda: not model.busy and tab.history.count() == 3, timeout=15_000)
    seeds = sorted(meta["seed"] for _, meta in model.history)
    assert seeds == [7, 8, 9]
    tab.history.itemClicked.emit(tab.history.item(2))
    assert tab.preview.path() == tab.history.paths()[2]


def test_dropping_a_png_restores_settings_and_the_adapters_it_finds(qtbot, window, adapters, tmp_path):
    tab = window.generate_tab
    meta = {
        "prompt": "red style, a fox",
        "negative": "blurry",
        "steps": 9,
        "scheduler": "DDIM",
        "guidance": 4.5,
        "seed": 99,
        "width": 128,
        "height": 96,
        "model": "fake-model",
        "adapters": [{"name": "red", "weight": 0.7}, {"name": "gone", "weight": 1.0}],
    }
    info = PngInfo()
    info.add_text("parameters", format_parameters(meta))
    png = tmp_path / "made-elsewhere.png"
    Image.new("RGB", (128, 96), (200, 10, 10)).save(png, pnginfo=info)

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(png))])
    enter = QDragEnterEvent(
        QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(tab, enter)
    assert enter.isAccepted()
    drop = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(tab, drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: "Restored" in tab.status_label.text(), timeout=10_000)
    assert tab.status_label.text() == "Restored the settings of made-elsewhere.png; adapters not found: gone."
    qtbot.waitUntil(lambda: all(not r.loading for r in tab.model.stack.rows), timeout=10_000)
    assert [(r.path, r.weight) for r in tab.model.stack.rows] == [(str(adapters["red"]), 0.7)]
    assert tab.prompt.toPlainText() == "a fox"  # the trigger word comes back through the adapter
    values = tab.values()
    assert tab.model.make_request(values).prompt == "red style, a fox"
    assert (values["seed"], values["steps"], values["width"], values["height"]) == (99, 9, 128, 96)
    assert values["scheduler"] == "DDIM" and values["negative"] == "blurry" and values["base"] == "fake-model"


def test_xy_grid_fills_progressively_and_saves_one_picture(qtbot, window, adapters, tmp_path):
    from app.ui.generate.xy_grid import XYGridDialog

    tab = window.generate_tab
    tab.live.setChecked(False)
    add(qtbot, tab, adapters["red"], adapters["blue"])
    tab.open_xy_grid()
    dialog: XYGridDialog = tab.xy_dialog
    qtbot.addWidget(dialog)
    dialog.x_weights.setText("0, 1")
    dialog.y_weights.setText("-0.5, 0.5, 1")
    seen = []
    dialog.grid.cellReady.connect(lambda i, j, p: seen.append((i, j)))
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.status.text() == "6 / 6 pictures", timeout=20_000)
    assert sorted(seen) == [(i, j) for i in range(2) for j in range(3)]
    params = {
        (a["adapters"][0]["weight"], a["adapters"][1]["weight"])
        for a in (window.tracker.get(job).params for job in dialog.grid.cells)
    }
    assert params == {(x, y) for x in (0.0, 1.0) for y in (-0.5, 0.5, 1.0)}
    assert dialog.save_button.isEnabled()
    out = tmp_path / "grid.png"
    dialog.save(str(out))
    qtbot.waitUntil(lambda: "Saved the grid" in dialog.status.text(), timeout=10_000)
    grid = Image.open(out)
    assert grid.size == (90 + 2 * 64, 2 * 28 + 3 * 64)

    dialog.x_weights.setText("0, x")
    dialog.start_button.click()
    assert dialog.status.text() == "X weights: 'x' is not a number (write weights like 0, 0.5, 1)"


def test_size_presets_and_saving_the_picture(qtbot, window, tmp_path):
    tab = window.generate_tab
    index = tab.size_preset.findText("SDXL · 832 × 1216")
    tab.size_preset.activated.emit(index)
    assert (tab.width_box.value(), tab.height_box.value()) == (832, 1216)
    assert tab.size_preset.currentIndex() == 0
    tab.width_box.setValue(64)
    tab.height_box.setValue(64)
    tab.generate()
    qtbot.waitUntil(lambda: tab.save_button.isEnabled() and not window.generate_ops.busy, timeout=10_000)
    target = tmp_path / "keep.png"
    tab.save_picture(str(target))
    qtbot.waitUntil(lambda: target.is_file(), timeout=10_000)
    assert target.read_bytes() == Path(tab.preview.path()).read_bytes()
