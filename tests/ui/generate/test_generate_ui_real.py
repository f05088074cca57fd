"""End to end: the Generate tab, the real worker and the tiny SD1 model with adapters made here."""

from __future__ import annotations

import adapter_factory as F
import numpy as np
import pytest
from PySide6.QtGui import QImage

from app.core.adapters import inspect_adapter

pytestmark = pytest.mark.slow

TIMEOUT_MS = 120_000  # the worker imports torch and loads the model on a busy 2-core CPU


def pixels(path: str) -> np.ndarray:
    image = QImage(path).convertToFormat(QImage.Format.Format_RGB888)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
        :, : image.width() * 3
    ]


def test_slider_live_preview_refusal_and_bake_with_the_real_worker(qtbot, tiny_sd1, rgb, tmp_path):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    window = MainWindow(WorkerClient())
    qtbot.addWidget(window)
    window.show()
    tab = window.generate_tab
    model = window.generate_ops
    tab.model_picker.setText(str(tiny_sd1))
    tab.prompt.setPlainText("a red square")
    for box, value in ((tab.width_box, 64), (tab.height_box, 64), (tab.steps, 3), (tab.seed, 21)):
        box.setValue(value)
    tab.seed_lock.setChecked(True)
    tab.add_adapter(str(rgb["red"]))
    qtbot.waitUntil(lambda: not model.stack.rows[0].loading, timeout=10_000)
    row = tab.stack_widget.row_widgets[0]
    row.weight_box.setValue(0.0)  # typed: the live preview renders the base picture
    qtbot.waitUntil(lambda: model.last_image != "" and not model.busy, timeout=TIMEOUT_MS)
    at_zero = model.last_image
    assert model.last_meta["adapters"][0]["weight"] == 0.0

    row.slider.setValue(150)
    row.slider.sliderReleased.emit()
    qtbot.waitUntil(lambda: model.last_image != at_zero and not model.busy, timeout=TIMEOUT_MS)
    assert tab.preview.path() == model.last_image and tab.freshness.text() == ""
    (used,) = model.last_meta["adapters"]
    assert {k: used[k] for k in ("name", "path", "weight", "te_weight")} == {
        "name": "red",
        "path": str(rgb["red"]),
        "weight": 1.5,
        "te_weight": 1.5,
    }
    assert used["load_details"] == "" and used["layers"] == row.layers_badge.text()  # e.g. "40/40 layers"
    assert np.abs(pixels(model.last_image).astype(int) - pixels(at_zero)).max() > 5  # the picture changed
    assert "<lora:red:1.5>" in QImage(model.last_image).text("parameters")

    broken = F.not_a_lora(tmp_path / "full-model.safetensors")
    tab.add_adapter(str(broken))  # refused by the worker: marked on its row, the others still apply
    qtbot.waitUntil(lambda: model.stack.rows[1].problem != "", timeout=TIMEOUT_MS)
    assert model.stack.rows[1].problem.startswith(f"{broken}: not a LoRA adapter")
    tab.stack_widget.row_widgets[1].remove_button.click()
    qtbot.waitUntil(lambda: not model.busy, timeout=TIMEOUT_MS)

    out = tmp_path / "baked.safetensors"
    with qtbot.waitSignal(model.bakeFinished, timeout=TIMEOUT_MS) as baked:
        tab.bake_to(str(out), 0)
    path, message = baked.args
    assert path == str(out.resolve()) and "relative error" in message
    assert inspect_adapter(out).rank == 4 and tab.status_label.text() == message

    tab.add_adapter(str(rgb["blue"]))
    model.stack.rows[1].path = str(broken)  # the file under a row is replaced by a broken one
    with qtbot.waitSignal(model.bakeFinished, timeout=TIMEOUT_MS) as refused:
        tab.bake_to(str(tmp_path / "never.safetensors"), 2)
    assert refused.args[0] == ""
    assert refused.args[1].startswith(f"Incompatible adapter: {broken}: not a LoRA adapter")
    assert tab.error_label.text() == refused.args[1] and not (tmp_path / "never.safetensors").exists()

    red_row = tab.stack_widget.row_widgets[0]  # its menu: "Save as…" in each layout, done by the worker
    assert set(red_row.save_as_actions) == {"kohya", "diffusers", "peft", "comfy"}
    comfy = tmp_path / "red-comfy.safetensors"
    with qtbot.waitSignal(model.savedAs, timeout=TIMEOUT_MS) as saved:
        red_row.saveAsRequested.emit(str(rgb["red"]), "comfy", str(comfy))
    assert saved.args == [str(comfy), f"Saved {comfy}."] and tab.status_label.text() == f"Saved {comfy}."
    assert inspect_adapter(comfy).layout.value == "comfy"
    with qtbot.waitSignal(model.savedAs, timeout=TIMEOUT_MS) as not_saved:
        red_row.saveAsRequested.emit(str(rgb["red"]), "peft", str(tmp_path / "red-peft.safetensors"))
    assert not_saved.args[0] == "" and "peft's own layout holds one model" in not_saved.args[1]
    window.close()


def test_block_weights_reach_the_real_worker_and_its_norms_come_back(qtbot, tiny_sd1, rgb):
    from app.core import block_weights
    from app.core.families import Family, spec
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    window = MainWindow(WorkerClient())
    qtbot.addWidget(window)
    window.show()
    tab, model = window.generate_tab, window.generate_ops
    tab.model_picker.setText(str(tiny_sd1))
    tab.prompt.setPlainText("a red square")
    for box, value in ((tab.width_box, 64), (tab.height_box, 64), (tab.steps, 3), (tab.seed, 21)):
        box.setValue(value)
    tab.seed_lock.setChecked(True)
    tab.add_adapter(str(rgb["red"]))  # the live preview renders it with every block at 1
    qtbot.waitUntil(lambda: model.last_image != "" and not model.busy, timeout=TIMEOUT_MS)
    full = model.last_image
    popover = tab.stack_widget.row_widgets[0].open_blocks()
    assert any(bar.fraction > 0 for bar in popover.bars)  # the worker measured where the adapter acts

    blocks = spec(Family.SD1).blocks
    mid = popover.sliders[blocks.index("MID")]
    mid.setSliderDown(True)
    mid.setValue(0)
    mid.setSliderDown(False)
    qtbot.waitUntil(lambda: model.last_image != full and not model.busy, timeout=TIMEOUT_MS)
    lbw = block_weights.format_vector([0.0 if b == "MID" else 1.0 for b in blocks])
    assert model.last_meta["adapters"][0]["lbw"] == lbw
    assert f"<lora:red:1:lbw={lbw}>" in QImage(model.last_image).text("parameters")
    assert np.abs(pixels(model.last_image).astype(int) - pixels(full)).max() > 0  # MID's change is gone
    window.close()
