"""End to end with the real worker: the tiny Flux in the Generate tab. The form fits Flux once
the model is loaded (no negative prompt, flow-matching samplers, 28 steps / 3.5), two adapters
mix, a slider move updates the preview, and the X/Y grid renders Flux cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtGui import QImage
from safetensors.torch import save_file

from tests.ui.generate.test_generate_ui import window  # noqa: F401 - the fixture (fake worker)

pytestmark = pytest.mark.slow

TIMEOUT_MS = 120_000  # the worker imports torch and loads the model on a busy 2-core CPU


def pixels(path: str) -> np.ndarray:
    image = QImage(path).convertToFormat(QImage.Format.Format_RGB888)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
        :, : image.width() * 3
    ]


def flux_lora(tiny_flux1, path, seed: int):
    """A diffusers-layout (ai-toolkit) LoRA on every attention layer of the tiny Flux transformer."""
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(tiny_flux1 / "transformer")
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and ".attn." in name:
            state[f"transformer.{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=g) * 0.3
            state[f"transformer.{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=g) * 0.3
    save_file(state, str(path))
    return path


def test_flux_in_generate_fits_the_form_mixes_two_adapters_and_fills_the_grid(qtbot, tiny_flux1, tmp_path):
    from app.ui.generate.xy_grid import XYGridDialog
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    first, second = (
        flux_lora(tiny_flux1, tmp_path / "a.safetensors", 1),
        flux_lora(tiny_flux1, tmp_path / "b.safetensors", 2),
    )
    win = MainWindow(WorkerClient())
    qtbot.addWidget(win)
    win.show()
    tab, model = win.generate_tab, win.generate_ops
    tab.model_picker.setText(str(tiny_flux1))
    tab.prompt.setPlainText("a red square")
    for box, value in ((tab.width_box, 64), (tab.height_box, 64), (tab.steps, 3), (tab.seed, 21)):
        box.setValue(value)
    tab.seed_lock.setChecked(True)
    tab.generate()
    qtbot.waitUntil(lambda: model.last_image != "" and not model.busy, timeout=TIMEOUT_MS)
    assert model.last_meta["family"] == "flux1" and tab.preview.path() == model.last_image
    # The worker said Flux: the form now fits it.
    assert not tab.negative.isEnabled() and tab.negative.toolTip() == "Flux.1 takes no negative prompt."
    samplers = tab.scheduler.model()
    usable = [samplers.item(i).text() for i in range(samplers.rowCount()) if samplers.item(i).isEnabled()]
    assert usable == ["Euler", "Euler a", "UniPC"]
    assert (tab.steps.value(), tab.guidance.value(), tab.width_box.value()) == (28, 3.5, 64)  # tiny keeps 64 px
    assert "distilled guidance" in tab.guidance.toolTip()

    tab.steps.setValue(3)
    tab.add_adapter(str(first))
    tab.add_adapter(str(second))
    qtbot.waitUntil(lambda: all(not r.loading for r in model.stack.rows), timeout=10_000)
    assert [r.family for r in model.stack.rows] == ["flux1", "flux1"] and not model.stack.rows[0].problem
    row = tab.stack_widget.row_widgets[0]
    row.weight_box.setValue(0.0)
    tab.stack_widget.row_widgets[1].weight_box.setValue(0.0)
    qtbot.waitUntil(
        lambda: not model.busy and [a["weight"] for a in model.last_meta["adapters"]] == [0.0, 0.0], timeout=TIMEOUT_MS
    )
    at_zero = model.last_image
    row.slider.setValue(100)
    row.slider.sliderReleased.emit()
    qtbot.waitUntil(lambda: model.last_image != at_zero and not model.busy, timeout=TIMEOUT_MS)
    assert tab.preview.path() == model.last_image and model.last_meta["adapters"][0]["weight"] == 1.0
    assert np.abs(pixels(model.last_image).astype(int) - pixels(at_zero)).max() > 5
    assert "Distilled CFG Scale: 3.5" in QImage(model.last_image).text("parameters")

    tab.live.setChecked(False)
    tab.open_xy_grid()
    dialog: XYGridDialog = tab.xy_dialog
    qtbot.addWidget(dialog)
    dialog.x_weights.setText("0, 1")
    dialog.y_weights.setText("0, 1")
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.status.text() == "4 / 4 pictures", timeout=TIMEOUT_MS)
    win.close()


def test_schnell_greys_guidance_and_an_sd_model_gives_the_form_back(window):  # noqa: F811
    """What the worker says it holds (its "model" event) fits the form."""
    tab, tracker = window.generate_tab, window.tracker
    tab.scheduler.setCurrentText("DDIM")
    tab.width_box.setValue(512)
    tab.height_box.setValue(512)
    tracker.modelChanged.emit({"family": "flux1", "distilled": True})
    assert not tab.guidance.isEnabled() and "ignores guidance" in tab.guidance.toolTip()
    assert tab.guidance.toolTip() == "Flux.1 [schnell] is distilled to a few steps and ignores guidance."
    assert (tab.steps.value(), tab.guidance.value()) == (4, 0.0)
    assert tab.scheduler.currentText() == "Euler"  # DDIM has no flow form
    assert (tab.width_box.value(), tab.height_box.value()) == (1024, 1024)
    tracker.modelChanged.emit({"family": "sd1"})
    assert tab.guidance.isEnabled() and tab.negative.isEnabled()
    assert (tab.steps.value(), tab.guidance.value(), tab.width_box.value()) == (20, 7.0, 512)
    tab.scheduler.setCurrentText("DDIM")
    assert tab.scheduler.currentText() == "DDIM"
