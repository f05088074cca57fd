"""Where LoRA Loom keeps its data (platformdirs), overridable by ``LORALOOM_HOME``.

``LORALOOM_HOME`` puts everything under one folder: tests and portable installs use it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "LoRA Loom"
APP_SLUG = "loraloom"


def _home() -> Path | None:
    value = os.environ.get("LORALOOM_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    home = _home()
    return home if home else Path(platformdirs.user_data_dir(APP_SLUG, appauthor=False))


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP_SLUG, appauthor=False))


def cache_dir() -> Path:
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_SLUG, appauthor=False))


def log_dir() -> Path:
    home = _home()
    return home / "logs" if home else Path(platformdirs.user_log_dir(APP_SLUG, appauthor=False))


def outputs_dir() -> Path:
    """Rendered pictures (Generate tab and ``loraloom generate`` without --out)."""
    return data_dir() / "outputs"


def runs_dir() -> Path:
    """One folder per training run."""
    return data_dir() / "runs"
