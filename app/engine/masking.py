"""Automatic loss masks: CLIPSeg (transformers' ``CLIPSegForImageSegmentation``) finds what a
text prompt names in each picture, and the answer becomes its ``name.mask.png`` sidecar.

::

    masker = load_masker(request)                 # kept loaded by the worker between jobs
    summary = run_masking(masker, request, on_mask=..., on_skip=...)

The mask is CLIPSeg's probability at the picture's own size (EXIF rotation applied, as the
trainer sees it), white where the prompt's subject is; with a ``threshold`` it is made black
or white. Every sidecar is written atomically; a picture that fails is skipped with one
sentence and the run goes on.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from app.core.dataset.caption_config import Skip
from app.core.dataset.mask_config import MaskRequest, mask_targets
from app.core.dataset.masks import sidecar_path
from app.core.dataset.scan import DatasetError, ImageItem, load_training_image, scan_dataset
from app.core.errors import clip_words
from app.core.files import atomic_write_bytes
from app.engine.captioning.base import load_processor_and_model
from app.engine.models import pick_device, pick_dtype

log = logging.getLogger(__name__)


class MaskCancelled(Exception):
    pass


@dataclass
class MaskSummary:
    targets: int = 0
    written: int = 0
    kept: int = 0  # pictures that already had a sidecar (not overwritten)
    skipped: list[Skip] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{self.written} mask(s) written"]
        if self.kept:
            parts.append(f"{self.kept} kept (they already had one; overwrite replaces them)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts)


class Masker:
    """A loaded CLIPSeg model and its processor."""

    name = "CLIPSeg"

    def __init__(self, source: str, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        self.source = source
        self.processor, self.model = load_processor_and_model(
            source, CLIPSegProcessor, CLIPSegForImageSegmentation, "CLIPSeg masking model", device, dtype
        )
        self.device, self.dtype = device, dtype

    def probabilities(self, images: list[Image.Image], prompt: str) -> list[torch.Tensor]:
        """Per picture, the probability (H, W) in [0, 1] at its own size that a pixel shows ``prompt``."""
        inputs = self.processor(text=[prompt] * len(images), images=images, padding=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.no_grad():
            logits = self.model(**inputs).logits.float()
        logits = logits.reshape(len(images), 1, *logits.shape[-2:])
        out = []
        for image, logit in zip(images, logits):
            sized = torch.nn.functional.interpolate(logit[None], size=(image.height, image.width), mode="bilinear")
            out.append(torch.sigmoid(sized[0, 0]).cpu())
        return out


def load_masker(request: MaskRequest) -> Masker:
    device = pick_device(request.device)
    return Masker(request.model_id(), device, pick_dtype(request.dtype, device))


def mask_png(probability: torch.Tensor, threshold: float) -> bytes:
    """The sidecar's bytes: 8-bit grey, white where the subject is."""
    values = (probability > threshold).float() if threshold > 0 else probability.clamp(0, 1)
    image = Image.fromarray((values * 255).round().to(torch.uint8).numpy(), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


MaskFn = Callable[[ImageItem, Path], None]
SkipFn = Callable[[Skip], None]
ProgressFn = Callable[[int, int, "float | None", str], None]


def run_masking(
    masker: Masker,
    request: MaskRequest,
    *,
    on_progress: ProgressFn | None = None,
    on_mask: MaskFn | None = None,
    on_skip: SkipFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> MaskSummary:
    ds = scan_dataset(request.folder, min_side=request.min_side)
    targets, skipped, kept = mask_targets(ds, request)
    summary = MaskSummary(targets=len(targets), kept=kept)

    def skip(s: Skip) -> None:
        summary.skipped.append(s)
        (on_skip or (lambda s: log.warning("%s", s.reason)))(s)

    for s in skipped:
        skip(s)
    started, total = time.perf_counter(), len(targets)
    for start in range(0, total, request.batch_size):
        if should_cancel is not None and should_cancel():
            raise MaskCancelled()
        loaded = []
        for item in targets[start : start + request.batch_size]:
            try:
                loaded.append((item, load_training_image(item.path)))
            except DatasetError as exc:
                skip(Skip(item.path, f"skipped: {exc}"))
        for item, probability in _masks(masker, loaded, request, skip):
            out = sidecar_path(item.path)
            try:
                atomic_write_bytes(out, mask_png(probability, request.threshold))
            except OSError as exc:
                skip(Skip(item.path, f"skipped: {out}: could not be written ({exc.strerror or exc})"))
                continue
            summary.written += 1
            if on_mask:
                on_mask(item, out)
        done = min(start + request.batch_size, total)
        if on_progress:
            elapsed = time.perf_counter() - started
            on_progress(done, total, elapsed / done * (total - done), f"{done}/{total} pictures masked")
    return summary


def _masks(
    masker: Masker, loaded: list[tuple[ImageItem, Image.Image]], request: MaskRequest, skip: SkipFn
) -> list[tuple[ImageItem, torch.Tensor]]:
    """A batch's probabilities; on failure one picture at a time, so only the failing one is skipped."""
    if not loaded:
        return []
    try:
        found = masker.probabilities([im for _item, im in loaded], request.prompt.strip())
        return [(item, p) for (item, _im), p in zip(loaded, found)]
    except Exception as exc:  # noqa: BLE001 - one picture's failure must not end the run
        if len(loaded) > 1:
            return [pair for one in loaded for pair in _masks(masker, [one], request, skip)]
        item = loaded[0][0]
        skip(
            Skip(item.path, f"skipped: {item.path}: masking failed ({type(exc).__name__}: {clip_words(str(exc), 200)})")
        )
        return []
