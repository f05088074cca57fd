"""Masked loss: each picture's mask, cropped exactly like its latent, as loss weights.

A mask goes through the same bucket plan as its picture (:func:`~app.engine.training.buckets.plan_crop`:
scale to cover, centre crop, flip), then is averaged down to the latent grid, so a white region
weights the latent pixels that picture region became. The weight is ``unmasked_weight`` where the
mask is black and 1 where it is white. Masks are read once when the session is built; a picture
with no usable mask trains on every pixel (weight 1), with one sentence saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from app.core.dataset.masks import MaskError, find_mask, load_mask
from app.core.train_validation import MaskOptions
from app.engine.training.buckets import plan_crop
from app.engine.training.data import TrainItem


def mask_pixels(mask: Image.Image, item: TrainItem, flip: bool) -> torch.Tensor:
    """The mask as its picture's bucket: values in [0, 1], shape (1, H, W), the crop of
    :func:`app.engine.training.caches.prepare_pixels` (bilinear: a mask has no detail to keep)."""
    plan = plan_crop(mask.size[0], mask.size[1], item.bucket)
    mask = mask.resize(plan.scaled, Image.Resampling.BILINEAR)
    bw, bh = plan.bucket
    mask = mask.crop((plan.left, plan.top, plan.left + bw, plan.top + bh))
    if flip:
        mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None]


class MaskSet:
    """Loss weights at latent size per (picture, flip); pictures without a mask get None."""

    def __init__(self, opts: MaskOptions, latent_factor: int) -> None:
        self.unmasked = float(opts.unmasked_weight)
        self.factor = latent_factor
        self._weights: dict[tuple[Path, bool], torch.Tensor] = {}
        self.missing: list[Path] = []

    def add(self, item: TrainItem, flips: tuple[bool, ...], warn: Callable[[str], None]) -> None:
        ref = find_mask(item.path)
        if ref is None:
            self.missing.append(item.path)
            return
        try:
            mask = load_mask(ref, item.size)
        except MaskError as exc:
            warn(f"{exc}; {item.path.name} trains without a mask")
            return
        bw, bh = item.bucket
        for flip in flips:
            pixels = mask_pixels(mask, item, flip)
            small = F.interpolate(pixels[None], size=(bh // self.factor, bw // self.factor), mode="area")[0]
            self._weights[(item.path, flip)] = self.unmasked + (1.0 - self.unmasked) * small

    def batch(self, items: list[TrainItem], flips: list[bool]) -> torch.Tensor | None:
        """(B, 1, h, w) weights of a batch (ones for pictures without a mask); None when none has one."""
        found = [self._weights.get((item.path, flip)) for item, flip in zip(items, flips)]
        if all(w is None for w in found):
            return None
        shape = next(w for w in found if w is not None).shape
        return torch.stack([w if w is not None else torch.ones(shape) for w in found])


def build_masks(
    opts: MaskOptions, items: list[TrainItem], flip: bool, latent_factor: int, warn: Callable[[str], None]
) -> MaskSet | None:
    """Every picture's mask weights (None when masking is off); one sentence per unusable mask and
    one for all the pictures without a mask."""
    if not opts.enabled:
        return None
    masks = MaskSet(opts, latent_factor)
    for item in items:
        masks.add(item, (False, True) if flip else (False,), warn)
    if masks.missing:
        first = masks.missing[0]
        warn(
            f"masked loss: {len(masks.missing)} picture(s) have no mask (first: {first}) and train on the whole "
            f"picture; add {first.stem}.mask.png beside it, a masks/{first.stem}.png, or an alpha channel"
        )
    return masks
