"""Light or dark colours: follow the OS (Qt 6.5+ ``QStyleHints.colorScheme``) or the user's
choice in View > Theme, kept in the window settings.

Dark is an explicit Fusion palette rather than ``QStyleHints.setColorScheme``: platform
styles differ in whether they honour a requested scheme, a palette looks the same everywhere.
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

SETTINGS_KEY = "view/theme"


class Theme(str, Enum):
    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark


def dark_palette() -> QPalette:
    pal = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(230, 230, 230)
    disabled = QColor(130, 130, 130)
    for role, colour in {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: QColor(40, 40, 43),
        QPalette.ColorRole.ToolTipBase: QColor(60, 60, 64),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.PlaceholderText: disabled,
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor(55, 55, 58),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 90, 90),
        QPalette.ColorRole.Link: QColor(100, 160, 255),
        QPalette.ColorRole.Highlight: QColor(60, 110, 190),
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.Light: QColor(75, 75, 78),
        QPalette.ColorRole.Midlight: QColor(62, 62, 65),
        QPalette.ColorRole.Mid: QColor(40, 40, 42),
        QPalette.ColorRole.Dark: QColor(25, 25, 27),
        QPalette.ColorRole.Shadow: QColor(10, 10, 10),
    }.items():
        pal.setColor(role, colour)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return pal


def wants_dark(theme: Theme) -> bool:
    return theme is Theme.DARK or (theme is Theme.SYSTEM and system_is_dark())


class ThemeKeeper:
    """Applies a theme to the application and re-applies it when the OS switches (SYSTEM only)."""

    def __init__(self, app: QApplication) -> None:
        self.app = app
        self.theme = Theme.SYSTEM
        self._light = app.palette()  # what the platform gave us, restored for light
        self._style = app.style().name()
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(lambda _scheme: self.apply(self.theme))

    def apply(self, theme: Theme) -> None:
        self.theme = Theme(theme)
        if wants_dark(self.theme):
            self.app.setStyle(QStyleFactory.create("Fusion"))  # honours a palette fully
            self.app.setPalette(dark_palette())
        else:
            self.app.setStyle(QStyleFactory.create(self._style) or QStyleFactory.create("Fusion"))
            self.app.setPalette(self._light)

    @property
    def dark(self) -> bool:
        return wants_dark(self.theme)


_KEEPER: ThemeKeeper | None = None


def theme_keeper() -> ThemeKeeper:
    """The one keeper of the running application (several windows, e.g. in tests, share it, so
    the platform's light palette is the one captured before any dark one was set)."""
    global _KEEPER
    app = QApplication.instance()
    if _KEEPER is None or _KEEPER.app is not app:
        _KEEPER = ThemeKeeper(app)
    return _KEEPER
