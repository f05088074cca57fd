"""The adapter row's "Blocks…" popover, lbw= from a dropped PNG and the XY grid over presets (pytest-qt, fake worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtWidgets import QApplication
from test_generate_ui import add, tiny_adapter, window  # noqa: F401 - the Generate tab fixtures

from app.core import block_weights
from app.core.families import Family, spec
from app.core.pngmeta import format_parameters

SD1_BLOCKS = spec(Family.SD1).blocks


@pytest.fixture
def red(tmp_path) -> Path:
    return tiny_adapter(tmp_path / "red.safetensors", "red style")


def _rendered(qtbot, model) -> dict:
    qtbot.waitUntil(lambda: not model.busy and model.last_image != "", timeout=10_000)
    return model.tracker.get(model.job_id).params


def _drag(slider, value: int) -> None:
    """What a mouse drag does: the slider is down while it moves, and released at the end."""
    slider.setSliderDown(True)
    slider.setValue(value)
    slider.setSliderDown(False)  # emits sliderReleased


def test_changing_one_block_slider_re_renders_with_that_block(qtbot, window, red):  # noqa: F811
    tab, model = window.generate_tab, window.generate_ops
    add(qtbot, tab, red)
    tab.generate()
    first = _rendered(qtbot, model)
    assert "lbw" not in first["adapters"][0]
    row = tab.stack_widget.row_widgets[0]
    assert row.blocks_glyph.isHidden()
    popover = row.open_blocks()
    assert [s.toolTip().split(" ")[0] for s in popover.sliders] == list(SD1_BLOCKS)  # block names as tooltips
    before = model.job_id
    _drag(popover.sliders[SD1_BLOCKS.index("MID")], 50)
    qtbot.waitUntil(lambda: model.job_id != before and not model.busy, timeout=10_000)
    expected = block_weights.format_vector([0.5 if b == "MID" else 1.0 for b in SD1_BLOCKS])
    assert model.tracker.get(model.job_id).params["adapters"][0]["lbw"] == expected
    assert popover.preset.currentText() == "Custom"
    assert row.blocks_glyph.isVisible() and expected in row.blocks_glyph.toolTip()


def test_presets_reset_copy_and_paste(qtbot, window, red):  # noqa: F811
    tab = window.generate_tab
    tab.live.setChecked(False)
    add(qtbot, tab, red)
    row = tab.stack_widget.row_widgets[0]
    popover = row.open_blocks()
    index = popover.preset.findText("MIDD")
    popover.preset.setCurrentIndex(index)
    popover.preset.activated.emit(index)
    assert tab.model.stack.rows[0].lbw == "MIDD"  # a preset's values keep its name (lbw=MIDD in the PNG)
    assert popover.values() == block_weights.vector("MIDD", Family.SD1)
    assert popover.copy() == QApplication.clipboard().text() == block_weights.format_vector(popover.values())

    popover.reset_button.click()
    assert tab.model.stack.rows[0].lbw == "" and row.blocks_glyph.isHidden()
    assert popover.preset.currentText() == "Every block alike"

    assert popover.paste("OUTS")
    assert tab.model.stack.rows[0].lbw == "OUTS"
    assert not popover.paste("1,2,3")  # a bad text is named and changes nothing
    assert popover.problem.text() == "block weights '1,2,3': 3 values; give 12, 17, 20 or 26 values, or a preset name"
    assert tab.model.stack.rows[0].lbw == "OUTS"

    popover.start_box.setValue(0.3)
    popover.start_box.editingFinished.emit()
    assert tab.model.stack.rows[0].start == 0.3 and tab.values()["adapters"][0]["start"] == 0.3


def test_a_saved_preset_is_listed_and_kept_in_toml(qtbot, window, red):  # noqa: F811
    tab = window.generate_tab
    tab.live.setChecked(False)
    add(qtbot, tab, red)
    popover = tab.stack_widget.row_widgets[0].open_blocks()
    popover.paste("IND")
    popover.save_preset("MYFACE")
    qtbot.waitUntil(lambda: popover.preset.findText("MYFACE") >= 0, timeout=10_000)
    assert block_weights.load_user_presets() == {"MYFACE": block_weights.format_vector(popover.values())}


def test_the_popover_shows_the_workers_per_block_norms_as_bars(qtbot, window, red):  # noqa: F811
    tab = window.generate_tab
    tab.live.setChecked(False)
    add(qtbot, tab, red)
    popover = tab.stack_widget.row_widgets[0].open_blocks()
    assert all(bar.fraction == 0.0 for bar in popover.bars)  # nothing rendered yet: nothing known
    tab.model.stack.mark_applied([{"path": str(red), "block_norms": {"IN01": 2.0, "MID": 0.5}}])
    fractions = {b: bar.fraction for b, bar in zip(SD1_BLOCKS, popover.bars) if bar.fraction}
    assert fractions == {"IN01": 1.0, "MID": 0.25}
    assert "‖ΔW‖ = 0.5" in popover.sliders[SD1_BLOCKS.index("MID")].toolTip()


def test_dropping_a_png_restores_block_weights(qtbot, window, red, tmp_path):  # noqa: F811
    tab = window.generate_tab
    tab.live.setChecked(False)
    meta = {
        "prompt": "a fox",
        "steps": 20,
        "seed": 9,
        "width": 64,
        "height": 64,
        "adapters": [{"name": "red", "weight": 0.7, "lbw": "MIDD", "stop": 0.5}],
    }
    info = PngInfo()
    info.add_text("parameters", format_parameters(meta))
    png = tmp_path / "a1111.png"
    Image.new("RGB", (64, 64)).save(png, pnginfo=info)
    tab.restore_from_png(str(png))
    qtbot.waitUntil(lambda: len(tab.model.stack) == 1 and not tab.model.stack.rows[0].loading, timeout=10_000)
    row = tab.model.stack.rows[0]
    assert (row.weight, row.lbw, row.start, row.stop) == (0.7, "MIDD", 0.0, 0.5)
    assert tab.stack_widget.row_widgets[0].blocks_glyph.isVisible()


def test_the_xy_grid_sweeps_block_presets_on_one_axis(qtbot, window, red, tmp_path):  # noqa: F811
    from app.ui.generate.xy_grid import XYGridDialog

    tab, model = window.generate_tab, window.generate_ops
    tab.live.setChecked(False)
    add(qtbot, tab, red, tiny_adapter(tmp_path / "blue.safetensors"))
    tab.open_xy_grid()
    dialog: XYGridDialog = tab.xy_dialog
    dialog.x_weights.setText("MIDD, OUTS")
    dialog.y_weights.setText("0.5, 1")
    dialog.start_button.click()
    qtbot.waitUntil(lambda: len(dialog.grid.paths) == 4, timeout=20_000)
    cells = [model.tracker.get(job_id).params["adapters"] for job_id in dialog.grid.cells]
    assert sorted((a[0]["lbw"], a[1]["weight"]) for a in cells) == [
        ("MIDD", 0.5),
        ("MIDD", 1.0),
        ("OUTS", 0.5),
        ("OUTS", 1.0),
    ]
    dialog.x_weights.setText("MIDD, NOPE")
    dialog.start_button.click()
    assert dialog.status.text().startswith("X weights: block weights 'NOPE': no preset has this name")


def test_the_popover_follows_the_families_blocks(qtbot, window, tmp_path):  # noqa: F811
    tab = window.generate_tab
    tab.live.setChecked(False)
    add(qtbot, tab, tiny_adapter(tmp_path / "xl.safetensors", family="sdxl_base_v1-0"))
    popover = tab.stack_widget.row_widgets[0].open_blocks()
    assert len(popover.sliders) == len(spec(Family.SDXL).blocks) == 20
