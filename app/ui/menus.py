"""The main window's menu bar: File, Edit, View, Worker, Help.

Entries show the keyboard shortcuts that work. Where the key already belongs to a widget (the
Generate tab's Ctrl+Enter, the Dataset grid's and the text fields' own Undo/Redo), the menu
only *shows* the key (text after a tab) and triggering the entry does the same thing: a
second real shortcut on the same key would make Qt treat both as ambiguous and fire neither.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QApplication, QLineEdit, QMenu, QMenuBar, QPlainTextEdit, QTextEdit

from app.ui.help_actions import add_help_actions
from app.ui.theme import SETTINGS_KEY, Theme, theme_keeper

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parents[2] / "README.md"
THEME_TEXT = {Theme.SYSTEM: "Follow the system", Theme.LIGHT: "Light", Theme.DARK: "Dark"}


def key_text(key: QKeySequence.StandardKey | str) -> str:
    """A standard key in the platform's words; a string is shown as written ("Ctrl+Enter")."""
    return key if isinstance(key, str) else QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText)


def shown_key(action: QAction, key: QKeySequence.StandardKey | str) -> QAction:
    """Show ``key`` beside the entry without registering a second shortcut for it."""
    action.setText(f"{action.text()}\t{key_text(key)}")
    return action


def build_menus(window: MainWindow) -> None:
    bar = window.menuBar()
    _file_menu(window, bar)
    _edit_menu(window, bar)
    _view_menu(window, bar)
    worker_menu = bar.addMenu("&Worker")
    worker_menu.addAction(window.restart_action)
    show_log = window.log_dock.toggleViewAction()
    show_log.setText("Show log")
    worker_menu.addAction(show_log)
    window.help_menu = build_help_menu(window, bar)


def _file_menu(window: MainWindow, bar: QMenuBar) -> None:
    menu = bar.addMenu("&File")
    window.dataset_tab.open_action.setShortcut(QKeySequence.StandardKey.Open)
    menu.addAction(window.dataset_tab.open_action)
    menu.addMenu(window.dataset_tab.recent_menu)
    menu.addAction(window.open_data_action)
    window.generate_action = shown_key(QAction("Generate picture", window), "Ctrl+Enter")
    window.generate_action.setToolTip("Render with the Generate tab's settings (Ctrl+Enter there).")
    window.generate_action.triggered.connect(lambda: _generate(window))
    menu.addAction(window.generate_action)
    menu.addSeparator()
    if window.quit_action.shortcut().isEmpty():  # platforms without a standard Quit key (Windows)
        window.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
    menu.addAction(window.quit_action)


def _generate(window: MainWindow) -> None:
    window.tabs.setCurrentWidget(window.generate_tab)
    window.generate_tab.generate()


def _edit_menu(window: MainWindow, bar: QMenuBar) -> None:
    menu = bar.addMenu("&Edit")
    window.edit_undo_action = shown_key(QAction("Undo", window), QKeySequence.StandardKey.Undo)
    window.edit_undo_action.triggered.connect(lambda: _undo_redo(window, redo=False))
    window.edit_redo_action = shown_key(QAction("Redo", window), "Ctrl+Shift+Z")
    window.edit_redo_action.triggered.connect(lambda: _undo_redo(window, redo=True))
    window.find_action = QAction("Find", window)
    window.find_action.setShortcut(QKeySequence.StandardKey.Find)  # no widget owns Ctrl+F
    window.find_action.setToolTip("Jump to the search field: the Dataset filter, or the Library search.")
    window.find_action.triggered.connect(lambda: find_field(window))
    for action in (window.edit_undo_action, window.edit_redo_action, window.find_action):
        menu.addAction(action)


def _undo_redo(window: MainWindow, *, redo: bool) -> None:
    """The text field being edited first (its own undo), else the Dataset tab's caption edits."""
    focus = QApplication.focusWidget()
    if isinstance(focus, (QLineEdit, QTextEdit, QPlainTextEdit)) and not focus.isReadOnly():
        focus.redo() if redo else focus.undo()
    elif window.tabs.currentWidget() is window.dataset_tab:
        window.dataset_tab.redo() if redo else window.dataset_tab.undo()


def find_field(window: MainWindow) -> QLineEdit:
    if window.tabs.currentWidget() is window.library_tab:
        field = window.library_tab.search_box
    else:
        window.tabs.setCurrentWidget(window.dataset_tab)
        field = window.dataset_tab.filter_box
    field.setFocus()
    field.selectAll()
    return field


def _view_menu(window: MainWindow, bar: QMenuBar) -> None:
    from app.ui.common.settings import window_settings

    menu = bar.addMenu("&View")
    themes = menu.addMenu("Theme")
    group = QActionGroup(window)
    window.theme_actions = {}
    try:
        saved = Theme(str(window_settings().value(SETTINGS_KEY, Theme.SYSTEM.value)))
    except ValueError:
        saved = Theme.SYSTEM  # a hand-edited settings file: fall back, do not fail
    for theme in Theme:
        action = QAction(THEME_TEXT[theme], window)
        action.setCheckable(True)
        action.setChecked(theme is saved)
        action.triggered.connect(lambda _checked=False, t=theme: set_theme(t))
        group.addAction(action)
        themes.addAction(action)
        window.theme_actions[theme] = action
    theme_keeper().apply(saved)


def set_theme(theme: Theme) -> None:
    from app.ui.common.settings import window_settings

    theme_keeper().apply(theme)
    settings = window_settings()
    settings.setValue(SETTINGS_KEY, Theme(theme).value)
    settings.sync()


def build_help_menu(window: MainWindow, bar: QMenuBar) -> QMenu:
    """Help: documentation, then Report a problem… and About (app/ui/help_actions.py)."""
    menu = bar.addMenu("&Help")
    window.docs_action = QAction("Open documentation", window)
    window.docs_action.setToolTip("Open the user guide (README) in the default viewer.")
    window.docs_action.triggered.connect(open_documentation)
    menu.addAction(window.docs_action)
    menu.addSeparator()
    window.help_actions = add_help_actions(window, menu)
    return menu


def open_documentation() -> bool:
    if not DOCS.is_file() or not QDesktopServices.openUrl(QUrl.fromLocalFile(str(DOCS))):
        log.warning("could not open the documentation (%s)", DOCS)
        return False
    return True
