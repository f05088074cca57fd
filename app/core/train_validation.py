"""The ``[validation]`` and ``[masks]`` tables of a TrainConfig.

::

    [validation]
    images = 2          # hold out 2 training pictures (chosen by the seed), or:
    folder = "/pictures/held-out"
    every = 100         # validation loss every 100 steps (and at each save_every checkpoint)

    [masks]
    enabled = true      # alpha channel, name.mask.png or masks/name.png: white trains, black does not
    unmasked_weight = 0.1

Old config files have neither table: validation and masking are off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.core.config_section import _check, _Section


@dataclass
class ValidationOptions(_Section):
    images: int = 0  # training pictures held out for validation (chosen by the seed); 0: none
    folder: str = ""  # or a folder of validation pictures (with captions), never trained on
    every: int = 100  # steps between validation losses (also at each save_every checkpoint and the end)

    @property
    def enabled(self) -> bool:
        return self.images > 0 or bool(self.folder.strip())

    def validate(self, prefix: str = "") -> None:
        _check(0 <= self.images <= 10000, prefix, f"images = {self.images} must be between 0 and 10000")
        _check(
            not (self.images and self.folder.strip()),
            prefix,
            "give images (held-out training pictures) or folder (validation pictures), not both",
        )
        _check(self.every >= 1, prefix, f"every = {self.every} must be 1 or more")


@dataclass
class MaskOptions(_Section):
    enabled: bool = False  # weight the loss by each picture's mask (alpha, name.mask.png or masks/name.png)
    unmasked_weight: float = 0.0  # loss weight where the mask is black (the background); 1: no masking

    def validate(self, prefix: str = "") -> None:
        _check(
            0.0 <= self.unmasked_weight <= 1.0,
            prefix,
            f"unmasked_weight = {self.unmasked_weight} must be between 0 and 1",
        )


def best_step(val_losses: dict[int, float], steps: Iterable[int]) -> int | None:
    """Of ``steps`` (saved checkpoints), the one with the lowest validation loss; None when none has one."""
    known = [(val_losses[s], s) for s in steps if s in val_losses]
    return min(known)[1] if known else None
