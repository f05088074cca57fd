"""End to end with the real worker: the tiny Chroma in the Generate tab. The form fits Chroma once
the model is loaded (a negative prompt, real CFG 5.0, 35 steps), an adapter mixes and a slider
move renders the new picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtGui import QImage
from safetensors.torch import save_file

pytestmark = pytest.mark.slow

TIMEOUT_MS = 120_000  # the worker imports torch and loads the model on a busy 2-core CPU


def pixels(path: str) -> np.ndarray:
    image = QImage(path).convertToFormat(QImage.Format.Format_RGB888)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
        :, : image.width() * 3
    ]


def chroma_lora(folder, path):
    """A kohya-layout LoRA with sd-scripts' Chroma metadata on every double block's q/k/v."""
    from diffusers import ChromaTransformer2DModel

    transformer = ChromaTransformer2DModel.from_pretrained(folder / "transformer")
    g = torch.Generator().manual_seed(1)
    inner = transformer.inner_dim
    state = {}
    for i in range(len(transformer.transformer_blocks)):
        for name in ("img_attn_qkv", "txt_attn_qkv"):
            key = f"lora_unet_double_blocks_{i}_{name}"
            state[f"{key}.lora_down.weight"] = torch.randn(4, inner, generator=g) * 0.5
            state[f"{key}.lora_up.weight"] = torch.randn(3 * inner, 4, generator=g) * 0.5
    save_file(state, str(path), metadata={"ss_base_model_version": "chroma"})
    return path


def test_chroma_in_generate_fits_the_form_and_mixes_an_adapter(qtbot, tiny_model, tmp_path):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    folder = tiny_model("chroma")
    adapter = chroma_lora(folder, tmp_path / "c.safetensors")
    win = MainWindow(WorkerClient())
    qtbot.addWidget(win)
    win.show()
    tab, model = win.generate_tab, win.generate_ops
    tab.model_picker.setText(str(folder))
    tab.prompt.setPlainText("a red square")
    for box, value in ((tab.width_box, 64), (tab.height_box, 64), (tab.steps, 3), (tab.seed, 21)):
        box.setValue(value)
    tab.seed_lock.setChecked(True)
    tab.generate()
    qtbot.waitUntil(lambda: model.last_image != "" and not model.busy, timeout=TIMEOUT_MS)
    assert model.last_meta["family"] == "chroma"
    assert tab.negative.isEnabled()  # real CFG: the negative prompt counts
    assert (tab.steps.value(), tab.guidance.value()) == (35, 5.0)

    tab.steps.setValue(3)
    tab.negative.setPlainText("blurry")
    tab.add_adapter(str(adapter))
    qtbot.waitUntil(lambda: all(not r.loading for r in model.stack.rows), timeout=10_000)
    assert [r.family for r in model.stack.rows] == ["chroma"] and not model.stack.rows[0].problem
    row = tab.stack_widget.row_widgets[0]
    row.weight_box.setValue(0.0)
    qtbot.waitUntil(
        lambda: not model.busy and [a["weight"] for a in model.last_meta["adapters"]] == [0.0], timeout=TIMEOUT_MS
    )
    at_zero = model.last_image
    row.slider.setValue(100)
    row.slider.sliderReleased.emit()
    qtbot.waitUntil(lambda: model.last_image != at_zero and not model.busy, timeout=TIMEOUT_MS)
    assert model.last_meta["adapters"][0]["weight"] == 1.0
    assert np.abs(pixels(model.last_image).astype(int) - pixels(at_zero)).max() > 5
    assert "Negative prompt: blurry" in QImage(model.last_image).text("parameters")
    win.close()


def test_the_library_marks_flux_files_as_fitting_a_chroma_base_and_chroma_files_not_an_sd_one():
    from app.ui.library.cards import FAMILY_COLORS, family_mismatch

    assert not family_mismatch("flux1", "chroma") and family_mismatch("chroma", "flux1")
    assert family_mismatch("chroma", "sd1") and not family_mismatch("chroma", "chroma")
    assert FAMILY_COLORS["chroma"] == "#d81b60"
