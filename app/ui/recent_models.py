"""Recently used base models (Hub ids, folders, checkpoint files), newest first.

Shared by every model picker (Generate and Train) so a model picked in one tab
is offered in the other. Stored as JSON in the config folder, written atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.core import paths
from app.core.files import atomic_write_text

log = logging.getLogger(__name__)

MAX_RECENT = 12
FILE_NAME = "recent_models.json"


class RecentModels(QObject):
    changed = Signal()

    def __init__(self, path: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._path = path or paths.config_dir() / FILE_NAME
        self._items: list[str] = self._load()

    @property
    def path(self) -> Path:
        return self._path

    def items(self) -> list[str]:
        return list(self._items)

    def add(self, model: str) -> None:
        model = model.strip()
        if not model:
            return
        items = [model] + [m for m in self._items if m != model]
        items = items[:MAX_RECENT]
        if items == self._items:
            return
        self._items = items
        self._save()
        self.changed.emit()

    def remove(self, model: str) -> None:
        if model in self._items:
            self._items.remove(model)
            self._save()
            self.changed.emit()

    def _load(self) -> list[str]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("could not read %s (%s); starting with an empty list", self._path, exc)
            return []
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            return []
        return [m for m in models if isinstance(m, str) and m.strip()][:MAX_RECENT]

    def _save(self) -> None:
        try:
            atomic_write_text(self._path, json.dumps({"version": 1, "models": self._items}, indent=2) + "\n")
        except OSError as exc:
            log.warning("could not save the recent models to %s: %s", self._path, exc)
