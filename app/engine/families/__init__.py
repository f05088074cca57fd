"""Registry: family id -> its engine module's ``ENGINE`` (what needs torch; see ``base``).

Each family of ``app.core.families.FAMILIES`` has one module here named by its id
(``app/engine/families/<id>.py``, defining ``ENGINE``); adding a family edits nothing in this
file. Importing this package imports no torch or diffusers: the engines import them when used.
"""

from __future__ import annotations

from importlib import import_module

from app.core.families import FAMILIES, Family
from app.engine.families.base import StableDiffusion

ENGINES: dict[Family, StableDiffusion] = {f.id: import_module(f"{__name__}.{f.id.value}").ENGINE for f in FAMILIES}


def engine(family: Family | str) -> StableDiffusion:
    """The engine of a family (``Family`` or its value); ValueError for an unknown value."""
    return ENGINES[Family(family)]
