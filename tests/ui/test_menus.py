"""Menus: the shortcuts that work are shown, Edit (Undo/Redo/Find), View > Theme (persisted),
Help > Open documentation."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QFileDialog

from app.ui import menus
from app.ui.theme import Theme, theme_keeper

SHOTS = os.environ.get("LORALOOM_SHOTS")


def _entries(window, title: str) -> dict[str, object]:
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == title)
    out = {}
    for action in menu.actions():
        if action.isSeparator():
            continue
        text = action.text().replace("&", "")
        shortcut = action.shortcut().toString()
        out[text.split("\t")[0]] = (text.split("\t")[1] if "\t" in text else shortcut) or None
    return out


def test_menus_show_the_shortcuts_that_exist(qtbot, make_window):
    window = make_window()
    assert _entries(window, "&File") == {
        "Open dataset…": "Ctrl+O",
        "Recent datasets": None,
        "Open data folder": None,
        "Generate picture": "Ctrl+Enter",
        "Quit": "Ctrl+Q",
    }
    assert _entries(window, "&Edit") == {"Undo": "Ctrl+Z", "Redo": "Ctrl+Shift+Z", "Find": "Ctrl+F"}
    help_entries = _entries(window, "&Help")
    assert list(help_entries)[0] == "Open documentation" and "About LoRA Loom" in help_entries


def test_ctrl_o_opens_the_dataset_chooser_and_ctrl_f_finds(qtbot, make_window, monkeypatch):
    window = make_window()
    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: asked.append(a) or "")
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    qtbot.keyClick(window.generate_tab, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert len(asked) == 1
    qtbot.keyClick(window.generate_tab, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is window.dataset_tab
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.dataset_tab.filter_box)
    window.tabs.setCurrentWidget(window.library_tab)
    window.find_action.trigger()
    assert window.tabs.currentWidget() is window.library_tab
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.library_tab.search_box)


def test_edit_undo_and_redo_act_on_the_field_being_edited(qtbot, make_window):
    window = make_window()
    window.tabs.setCurrentWidget(window.dataset_tab)
    box = window.dataset_tab.filter_box
    box.setFocus()
    qtbot.waitUntil(box.hasFocus)
    qtbot.keyClicks(box, "tag:red")
    window.edit_undo_action.trigger()
    assert box.text() == ""
    window.edit_redo_action.trigger()
    assert box.text() == "tag:red"


def test_generate_entry_renders_from_any_tab(qtbot, make_window):
    window = make_window()
    window.tabs.setCurrentWidget(window.dataset_tab)
    called = []
    window.generate_tab.generate = lambda: called.append(True)  # the button's own code is tested elsewhere
    window.generate_action.trigger()
    assert window.tabs.currentWidget() is window.generate_tab and called == [True]


def test_dark_theme_is_applied_persisted_and_undone(qtbot, make_window):
    window = make_window()
    light = QApplication.palette().color(QPalette.ColorRole.Window).lightness()
    assert window.theme_actions[Theme.SYSTEM].isChecked()  # offscreen has no dark scheme: light
    window.theme_actions[Theme.DARK].trigger()
    try:
        assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 80 < light
        QApplication.processEvents()  # the palette reaches the widgets through posted change events
        assert window.generate_tab.palette().color(QPalette.ColorRole.Window).lightness() < 80
        if SHOTS:
            window.tabs.setCurrentWidget(window.train_tab)
            window.grab().save(os.path.join(SHOTS, "dark-theme-train.png"))
            window.tabs.setCurrentWidget(window.dataset_tab)
            window.grab().save(os.path.join(SHOTS, "dark-theme-dataset.png"))
        again = make_window()  # a new start reads the choice back
        assert again.theme_actions[Theme.DARK].isChecked()
    finally:
        window.theme_actions[Theme.LIGHT].trigger()
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() == light


def test_system_theme_follows_the_os_scheme(qtbot, make_window, monkeypatch):
    window = make_window()
    assert window.theme_actions[Theme.SYSTEM].isChecked()
    monkeypatch.setattr("app.ui.theme.system_is_dark", lambda: True)
    hints = QGuiApplication.styleHints()
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # what Qt sends when the OS switches
    try:
        assert theme_keeper().dark
        assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 80
    finally:
        monkeypatch.setattr("app.ui.theme.system_is_dark", lambda: False)
        hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert not theme_keeper().dark


def test_open_documentation_opens_the_readme(qtbot, make_window, monkeypatch):
    window = make_window()
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    window.docs_action.trigger()
    assert opened == [str(menus.DOCS)] and menus.DOCS.name == "README.md" and menus.DOCS.is_file()
