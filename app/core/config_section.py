"""A table inside a versioned config (``[data]``, ``[network]`` ... of a TrainConfig).

Its own module so that option tables can live beside :mod:`app.core.train_config` (which is
near its size limit) without either importing the other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from app.core.configs import ConfigError, _Config


class _Section(_Config):
    """A table inside TrainConfig: the same typed parsing, no version of its own."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = ""):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table, not {data!r}")
        names = sorted(f.name for f in dataclasses.fields(cls) if f.name != "version")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(names)})")
        return super().from_dict(data, where=where)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("version", None)
        return out


def _check(cond: bool, prefix: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{prefix}{message}")
