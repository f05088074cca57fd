"""The adapter row's "Blocks…" button follows the family table: offered where the family has
per-block weights (SD, Flux), disabled with a tooltip saying why where ``block_layout`` is NONE
(a new family may ship without them)."""

from __future__ import annotations

import dataclasses

from test_generate_ui import add, tiny_adapter, window  # noqa: F401 - the Generate tab fixtures

from app.core.families import BlockLayout, spec
from app.ui.generate import adapter_rows


def test_blocks_button_is_disabled_with_a_reason_for_a_family_without_blocks(qtbot, window, tmp_path, monkeypatch):  # noqa: F811
    tab = window.generate_tab
    tab.live.setChecked(False)
    add(qtbot, tab, tiny_adapter(tmp_path / "red.safetensors", "red style"))
    row = tab.stack_widget.row_widgets[0]
    assert row.blocks_button.isEnabled() and "per block" in row.blocks_button.toolTip()

    # A family entry as a 2026 family without per-block weights writes it (SD 1.x otherwise).
    blockless = dataclasses.replace(spec("sd1"), label="New Family", blocks=(), block_layout=BlockLayout.NONE)
    monkeypatch.setattr(adapter_rows, "spec", lambda family: blockless)
    row.refresh()
    assert not row.blocks_button.isEnabled()
    assert row.blocks_button.toolTip().startswith("New Family has no per-block weights yet")

    monkeypatch.undo()
    row.refresh()
    assert row.blocks_button.isEnabled()
