"""The tag completer's popup shows whole entries: as wide as the longest one it offers."""

from __future__ import annotations

from app.ui.dataset.caption_editor import CaptionEditor

LONG = "blue long sleeved shirt with a white collar and golden buttons"


def test_completer_popup_is_as_wide_as_its_longest_entry(qtbot):
    editor = CaptionEditor()
    qtbot.addWidget(editor)
    editor.resize(300, 120)
    editor.show()
    qtbot.waitExposed(editor)
    editor.set_tags(["blue eyes", "blue sky"] + [f"blue tag {i}" for i in range(20)] + [LONG, "red"])
    editor.setFocus()
    qtbot.keyClicks(editor, "solo, blu")
    popup = editor.completer.popup()
    qtbot.waitUntil(popup.isVisible)
    assert editor.completer.completionCount() == 23  # more than the popup shows: it scrolls
    text_width = popup.fontMetrics().horizontalAdvance(LONG)
    # The item view elides an entry whose size hint (text and margins) is wider than its viewport.
    assert popup.viewport().width() >= popup.sizeHintForColumn(0) >= text_width, "the longest entry is cut off"
    assert popup.width() <= max(editor.width(), text_width + 80)
    left = popup.mapToGlobal(popup.rect().topLeft()).x()
    assert left >= editor.mapToGlobal(editor.rect().topLeft()).x()  # it starts inside the editor

    # A short list afterwards is as wide as its own entries, no wider than the editor needs.
    editor.clear()
    qtbot.keyClicks(editor, "re")
    qtbot.waitUntil(lambda: editor.completer.completionCount() == 1 and popup.isVisible())
    assert popup.width() < text_width
