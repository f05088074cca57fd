"""Caption a dataset folder in batches: progress with ETA, cancel between batches, and a
failing image reported and skipped (never the whole run).

A batch that fails is retried in halves, so one bad image (or running out of GPU
memory with a big batch) costs only that image or a smaller batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from app.core.dataset.caption_config import CaptionRequest, Skip, caption_targets, compose_caption
from app.core.dataset.captions import CaptionWriteError, write_caption
from app.core.dataset.scan import DatasetError, ImageItem, load_training_image, scan_dataset
from app.core.errors import clip_words
from app.engine.captioning.base import Captioner, CaptionerError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, "float | None", str], None]  # done, total, eta seconds, message
CaptionFn = Callable[[ImageItem, str, str], None]  # item, caption before, caption now
SkipFn = Callable[[Skip], None]


class CaptionCancelled(Exception):
    """Raised between batches when the caller asks to stop; captions written so far stay."""


@dataclass
class CaptionSummary:
    targets: int = 0
    written: int = 0
    kept: int = 0  # already captioned and left alone (fill mode)
    skipped: list[Skip] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        rate = f", {self.written / self.seconds:.2f} images/s" if self.seconds > 0 and self.written else ""
        return (
            f"{self.written} of {self.targets} captioned, {self.kept} already had a caption, "
            f"{len(self.skipped)} skipped{rate}"
        )


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_captioning(
    captioner: Captioner,
    request: CaptionRequest,
    *,
    on_progress: ProgressFn | None = None,
    on_caption: CaptionFn | None = None,
    on_skip: SkipFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> CaptionSummary:
    ds = scan_dataset(request.folder, min_side=request.min_side, separator=request.separator)
    targets, skipped, kept = caption_targets(ds, request)
    summary = CaptionSummary(targets=len(targets), kept=kept)
    report = _Reporter(summary, on_skip)
    for skip in skipped:
        report.skip(skip)
    total = len(targets)
    started = time.perf_counter()
    if on_progress:
        on_progress(0, total, None, f"captioning {total} images with {captioner.name}")
    batch_size = min(request.batch_size, captioner.max_batch or request.batch_size)
    done = 0
    for start in range(0, total, batch_size):
        if should_cancel is not None and should_cancel():
            raise CaptionCancelled()
        batch = targets[start : start + batch_size]
        loaded: list[tuple[ImageItem, Image.Image]] = []
        for item in batch:
            try:
                loaded.append((item, load_training_image(item.path)))
            except DatasetError as exc:
                report.skip(Skip(item.path, f"skipped: {exc}"))
        for item, caption in _caption(captioner, loaded, request, report):
            _write(item, caption, request, summary, report, on_caption)
        done += len(batch)
        elapsed = time.perf_counter() - started
        eta = elapsed / done * (total - done) if done else None
        if on_progress:
            on_progress(done, total, eta, f"{done}/{total} images")
    summary.seconds = time.perf_counter() - started
    return summary


class _Reporter:
    def __init__(self, summary: CaptionSummary, on_skip: SkipFn | None) -> None:
        self.summary = summary
        self.on_skip = on_skip

    def skip(self, skip: Skip) -> None:
        self.summary.skipped.append(skip)
        if self.on_skip:  # the caller shows it; logging it too printed every skip twice
            self.on_skip(skip)
        else:
            log.warning("%s", skip.reason)


def _caption(
    captioner: Captioner, loaded: list[tuple[ImageItem, Image.Image]], request: CaptionRequest, report: _Reporter
) -> list[tuple[ImageItem, str]]:
    """Caption a batch; on failure retry in halves so only the failing image is skipped."""
    if not loaded:
        return []
    try:
        texts = captioner.caption_batch(
            [im for _item, im in loaded], request, existing=[item.caption for item, _im in loaded]
        )
        if len(texts) != len(loaded):
            raise RuntimeError(f"the model returned {len(texts)} captions for {len(loaded)} images")
        return [(item, text) for (item, _im), text in zip(loaded, texts)]
    except CaptionerError:
        raise  # a setting or model problem, not an image problem
    except Exception as exc:  # noqa: BLE001 - any failure of one image must not end the run
        if len(loaded) > 1:
            if _is_oom(exc):
                log.warning("out of memory with a batch of %d; retrying in halves", len(loaded))
            half = len(loaded) // 2
            return _caption(captioner, loaded[:half], request, report) + _caption(
                captioner, loaded[half:], request, report
            )
        item = loaded[0][0]
        reason = (
            "out of GPU memory even for one image"
            if _is_oom(exc)
            else f"{type(exc).__name__}: {clip_words(str(exc), 200)}"
        )
        report.skip(Skip(item.path, f"skipped: {item.path}: captioning failed ({reason})"))
        return []


def _write(
    item: ImageItem,
    generated: str,
    request: CaptionRequest,
    summary: CaptionSummary,
    report: _Reporter,
    on_caption: CaptionFn | None,
) -> None:
    if not generated.strip():
        report.skip(Skip(item.path, f"skipped: {item.path}: the model found nothing to say about this image"))
        return
    new = compose_caption(item.caption, generated, request)
    before = item.caption
    try:
        write_caption(item.caption_path, new)
    except CaptionWriteError as exc:
        report.skip(Skip(item.path, f"skipped: {exc}"))
        return
    item.caption = new
    summary.written += 1
    if on_caption:
        on_caption(item, before, new)
