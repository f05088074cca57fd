"""Every dialog: Enter does the dialog's action (never Cancel), Escape cancels."""

from __future__ import annotations

from PySide6.QtWidgets import QPushButton


def default_buttons(dialog) -> list[str]:
    return [b.text() for b in dialog.findChildren(QPushButton) if b.isDefault()]


def test_caption_xy_and_compare_dialogs_default_to_their_action(qtbot, make_window, tmp_path):
    from app.ui.dataset.caption_dialog import CaptionDialog
    from app.ui.generate.xy_grid import XYGridDialog
    from app.ui.train.compare import CompareDialog

    window = make_window()
    caption = CaptionDialog(False, window)
    caption.show()
    assert default_buttons(caption) == ["Caption"]

    tab = window.generate_tab
    for name in ("a", "b"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
        tab.add_adapter(str(tmp_path / f"{name}.safetensors"))
    qtbot.waitUntil(lambda: all(not r.loading for r in tab.model.stack.rows), timeout=10_000)
    grid = XYGridDialog(tab.model, tab.values, window)
    grid.show()
    assert default_buttons(grid) == ["Render grid"]
    cancel = grid.cancel_button
    assert not cancel.autoDefault()

    compare = CompareDialog(
        window.train_tab.compare_ops, [("step 1", str(tmp_path / "a.safetensors"))], {"base": "tiny"}, None, window
    )
    compare.show()
    assert default_buttons(compare) == ["Render"] and not compare.save_button.autoDefault()
    for dialog in (caption, grid, compare):
        dialog.reject()
        assert not dialog.isVisible()
