"""The window's own settings (geometry, open tab, theme): one ini file beside the app's config."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from app.core import paths

WINDOW_SETTINGS_FILE = "window.ini"


def window_settings() -> QSettings:
    # An ini file in our config folder rather than the platform registry, so that
    # LORALOOM_HOME (tests, portable installs) keeps it with everything else.
    return QSettings(str(paths.config_dir() / WINDOW_SETTINGS_FILE), QSettings.Format.IniFormat)
