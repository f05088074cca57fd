"""Registry: family id -> its engine module's ``ENGINE`` (what needs torch; see ``base``).

Importing this package imports no torch or diffusers: the engines import them when used.
"""

from __future__ import annotations

from app.core.families import Family
from app.engine.families import flux1, sd1, sd2, sdxl
from app.engine.families.base import StableDiffusion

ENGINES: dict[Family, StableDiffusion] = {m.ENGINE.family: m.ENGINE for m in (sd1, sd2, sdxl, flux1)}


def engine(family: Family | str) -> StableDiffusion:
    """The engine of a family (``Family`` or its value); ValueError for an unknown value."""
    return ENGINES[Family(family)]
