"""``[flow]``: the settings of the flow-matching objective (Flux.1), a table of :class:`TrainConfig`.

A flow-matching model learns the straight path between a picture and noise: the noisy input
is ``(1 - sigma) * x0 + sigma * noise`` and the target the velocity ``noise - x0``. How the
noise levels ``sigma`` are drawn decides which part of the path training spends its steps on:

* ``uniform``: sigma uniform in (0, 1);
* ``logit_normal``: sigmoid of a normal(``logit_mean``, ``logit_std``) draw (SD3's recipe),
  which favours the middle of the path;
* ``shift``: the logit-normal draw moved towards the noisy end by the resolution-dependent
  shift Flux.1 samples with (more image tokens, more shift), as kohya sd-scripts' ``flux_shift``.

Families without flow matching (SD 1.x/2.x/SDXL) ignore the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from app.core.configs import ConfigError, _Config


class TimestepSampling(str, Enum):
    UNIFORM = "uniform"
    LOGIT_NORMAL = "logit_normal"
    SHIFT = "shift"


@dataclass
class FlowOptions(_Config):
    timestep_sampling: TimestepSampling = TimestepSampling.SHIFT
    logit_mean: float = 0.0  # logit_normal and shift: the mean of the normal draw
    logit_std: float = 1.0  # ... and its spread
    guidance_scale: float = 1.0  # [dev]'s distilled-guidance input while training (sd-scripts' default)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> FlowOptions:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table, not {data!r}")
        return super().from_dict(data, where=where)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("version", None)  # a table of TrainConfig: the file's version is the config's
        return out

    def validate(self, prefix: str = "") -> None:
        if not 0.0 < self.logit_std <= 10.0:
            raise ConfigError(f"{prefix}logit_std = {self.logit_std} must be more than 0 and at most 10")
        if not -10.0 <= self.logit_mean <= 10.0:
            raise ConfigError(f"{prefix}logit_mean = {self.logit_mean} must be between -10 and 10")
        if not 0.0 <= self.guidance_scale <= 100.0:
            raise ConfigError(f"{prefix}guidance_scale = {self.guidance_scale} must be between 0 and 100")
