"""The bar of a tab's main buttons, progress and status that stays below its scrolled
settings, so those are always in view whatever the window height (Generate, Train)."""

from __future__ import annotations

from PySide6.QtWidgets import QLayout, QVBoxLayout, QWidget


def action_bar(parent: QWidget, rows: list[QLayout | QWidget], margins: tuple[int, int, int, int]) -> QWidget:
    bar = QWidget(parent)
    layout = QVBoxLayout(bar)
    layout.setContentsMargins(*margins)
    layout.setSpacing(4)
    for row in rows:
        if isinstance(row, QLayout):
            layout.addLayout(row)
        else:
            layout.addWidget(row)
    return bar
