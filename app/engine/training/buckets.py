"""Aspect-ratio buckets: every picture trains at a size close to its own shape.

The bucket sizes keep about ``resolution x resolution`` pixels, have sides that are
multiples of ``step`` between ``min_side`` and ``max_side``, and include the square.
A picture goes to the bucket whose aspect ratio is closest to its own; it is scaled to
cover the bucket and centre-cropped (the crop is reported, SDXL conditions on it).
With ``no_upscale`` a picture smaller than the training area gets a bucket of its own
size (rounded down to ``step``) instead of being enlarged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Size = tuple[int, int]  # (width, height)


def make_buckets(resolution: int, min_side: int, max_side: int, step: int = 64) -> list[Size]:
    area = resolution * resolution
    found: set[Size] = {(resolution, resolution)}
    width = min_side
    while width <= max_side:
        height = min(max_side, (area // width) // step * step)
        if height >= min_side:
            found.add((width, height))
            found.add((height, width))
        width += step
    return sorted(found, key=lambda s: (s[0] / s[1], s[0]))


def pick_bucket(
    width: int, height: int, buckets: list[Size], *, resolution: int, step: int = 64, no_upscale: bool = False
) -> Size:
    """The bucket for a ``width`` x ``height`` picture."""
    if width <= 0 or height <= 0:
        raise ValueError(f"picture size {width}x{height} is not positive")
    if no_upscale and width * height <= resolution * resolution:
        return max(step, width // step * step), max(step, height // step * step)
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


@dataclass(frozen=True)
class CropPlan:
    """How a picture becomes its bucket: resize to ``scaled`` then crop ``bucket`` at (left, top)."""

    original: Size
    scaled: Size
    bucket: Size
    left: int
    top: int


def plan_crop(width: int, height: int, bucket: Size) -> CropPlan:
    bw, bh = bucket
    scale = max(bw / width, bh / height)
    sw = max(bw, round(width * scale))
    sh = max(bh, round(height * scale))
    return CropPlan(original=(width, height), scaled=(sw, sh), bucket=bucket, left=(sw - bw) // 2, top=(sh - bh) // 2)
