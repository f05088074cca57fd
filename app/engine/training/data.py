"""The training pictures: datasets with repeats, buckets, caption variations, epoch order.

Everything random here is derived from (seed, step, ...) rather than from a running
random state, so the batch and the caption variation of any step are known without
replaying earlier steps: that is what makes resume exact.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.dataset.captions import join_tags, split_tags
from app.core.dataset.scan import DatasetError, ImageItem, scan_dataset
from app.core.errors import ErrorKind
from app.core.train_config import TrainConfig
from app.engine.training.buckets import Size, make_buckets, pick_bucket

_REPEATS_PREFIX = re.compile(r"^\d+_")
# The text encoders read 77 tokens (a few hundred characters); a longer caption costs tokenizing
# time every step, and diffusers logs the whole cut-off part (a 1 MB caption made 40 MB log lines).
MAX_CAPTION_CHARS = 2000


class TrainError(Exception):
    """A run cannot start or go on; the message is one sentence for the user."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.BAD_INPUT, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed from several numbers/texts (stable across runs and machines)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass
class TrainItem:
    path: Path
    caption: str
    size: Size  # (width, height) after EXIF rotation
    bucket: Size
    repeats: int
    regularization: bool = False


@dataclass
class TrainData:
    items: list[TrainItem]
    skipped: list[str] = field(default_factory=list)  # "path: problem" for every unusable picture
    notes: list[str] = field(default_factory=list)  # warnings about usable pictures (cut captions)
    tag_frequency: dict[str, dict[str, int]] = field(default_factory=dict)  # kohya ss_tag_frequency
    dataset_dirs: dict[str, dict[str, int]] = field(default_factory=dict)  # kohya ss_dataset_dirs
    validation: list[TrainItem] = field(default_factory=list)  # held out: never trained on ([validation])

    @property
    def train_items(self) -> list[TrainItem]:
        return [i for i in self.items if not i.regularization]

    @property
    def reg_items(self) -> list[TrainItem]:
        return [i for i in self.items if i.regularization]


def folder_caption(folder: Path) -> str:
    """kohya's fallback caption: the folder name without its ``N_`` repeats prefix."""
    return _REPEATS_PREFIX.sub("", folder.name).replace("_", " ").strip()


def collect(config: TrainConfig, should_stop: Callable[[], bool] | None = None) -> TrainData:
    """Scan every dataset folder; raise :class:`TrainError` when nothing usable is left."""
    opts = config.data
    buckets = make_buckets(opts.resolution, opts.min_bucket, opts.max_bucket, opts.bucket_step)
    items: list[TrainItem] = []
    skipped: list[str] = []
    notes: list[str] = []
    for index, spec in enumerate(config.datasets):
        try:
            dataset = scan_dataset(
                spec.path, min_side=opts.min_image_side, separator=opts.separator, should_stop=should_stop
            )
        except DatasetError as exc:
            raise TrainError(f"dataset #{index + 1}: {exc}") from None
        usable = dataset.usable_items()
        for item in dataset.items:
            if not item.usable:
                reasons = "; ".join(p.message for p in item.problems if p.blocking)
                skipped.append(reasons if str(item.path) in reasons else f"{item.path}: {reasons}")
        if not usable:
            summary = _problem_summary(dataset.items)
            found = (
                f"{len(dataset.items)} picture(s) found, none usable ({summary})"
                if dataset.items
                else "no pictures found (jpg, png, webp, bmp, tiff)"
            )
            raise TrainError(f"{dataset.root}: no usable training picture: {found}")
        fallback = spec.caption.strip() or folder_caption(dataset.root)
        for item in usable:
            caption = item.caption.strip() or (
                folder_caption(item.path.parent) if item.path.parent != dataset.root else fallback
            )
            if len(caption) > MAX_CAPTION_CHARS:
                notes.append(
                    f"{item.path}: the caption has {len(caption):,} characters; only the first "
                    f"{MAX_CAPTION_CHARS:,} are used (the text encoder reads about 77 tokens)"
                )
                caption = caption[:MAX_CAPTION_CHARS]
            if opts.bucketing:
                bucket = pick_bucket(
                    item.width,
                    item.height,
                    buckets,
                    resolution=opts.resolution,
                    step=opts.bucket_step,
                    no_upscale=opts.no_upscale,
                )
            else:
                side = opts.resolution
                if opts.no_upscale:
                    side = max(
                        opts.bucket_step, min(side, min(item.width, item.height) // opts.bucket_step * opts.bucket_step)
                    )
                bucket = (side, side)
            repeats = spec.repeats or item.repeats or 1
            items.append(
                TrainItem(
                    path=item.path,
                    caption=caption,
                    size=(item.width, item.height),
                    bucket=bucket,
                    repeats=repeats,
                    regularization=spec.regularization,
                )
            )
    if not any(not i.regularization for i in items):
        raise TrainError("no training pictures: every dataset is marked regularization = true")
    # No log line here: the trainer reports each skipped picture once, as a status event.
    frequency, dirs = _kohya_folders(items, opts.separator)
    return TrainData(items=items, skipped=skipped, notes=notes, tag_frequency=frequency, dataset_dirs=dirs)


def _kohya_folders(
    items: list[TrainItem], separator: str
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """kohya's ss_tag_frequency and ss_dataset_dirs: keyed by each training folder's own name
    (``5_ohwx``), a name taken twice gets `` (2)`` as kohya's merge does; regularization left out."""
    names: dict[Path, str] = {}
    frequency: dict[str, dict[str, int]] = {}
    dirs: dict[str, dict[str, int]] = {}
    for item in items:
        if item.regularization:
            continue
        folder = item.path.parent
        if folder not in names:
            name, i = folder.name, 2
            while name in dirs:
                name, i = f"{folder.name} ({i})", i + 1
            names[folder] = name
            frequency[name], dirs[name] = {}, {"n_repeats": item.repeats, "img_count": 0}
        name = names[folder]
        dirs[name]["img_count"] += 1
        for tag in split_tags(item.caption, separator):
            frequency[name][tag] = frequency[name].get(tag, 0) + 1
    return frequency, dirs


def bucket_info(data: TrainData) -> dict | None:
    """kohya's ss_bucket_info: every bucket's (width, height) and picture count with repeats, and the
    mean aspect-ratio error of the pictures (without repeats)."""
    counts: dict[Size, int] = {}
    errors = []
    for item in data.train_items:
        counts[item.bucket] = counts.get(item.bucket, 0) + item.repeats
        errors.append(abs(item.bucket[0] / item.bucket[1] - item.size[0] / item.size[1]))
    buckets = {i: {"resolution": list(b), "count": counts[b]} for i, b in enumerate(sorted(counts))}
    return {"buckets": buckets, "mean_img_ar_error": sum(errors) / len(errors) if errors else 0.0}


def _problem_summary(items: list[ImageItem]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        for kind in {p.kind.value.replace("_", " ") for p in item.problems if p.blocking}:
            counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


# ---------------------------------------------------------------- epochs and batches


@dataclass(frozen=True)
class Entry:
    item: int  # index into TrainData.items
    weight: float  # loss weight (reg_weight for regularization pictures)


class Schedule:
    """Which pictures form global micro-batch ``n`` (the same answer on every process and run)."""

    def __init__(self, data: TrainData, batch_size: int, seed: int, reg_weight: float) -> None:
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        entries: list[Entry] = []
        for index, item in enumerate(data.items):
            if not item.regularization:
                entries.extend([Entry(index, 1.0)] * item.repeats)
        reg = [
            Entry(i, reg_weight)
            for i, item in enumerate(data.items)
            if item.regularization
            for _ in range(item.repeats)
        ]
        if reg:  # kohya: as many regularization samples per epoch as training samples
            wanted = len(entries)
            entries.extend(reg[i % len(reg)] for i in range(wanted))
        self._entries = entries
        by_bucket: dict[Size, int] = {}
        for e in entries:
            bucket = data.items[e.item].bucket
            by_bucket[bucket] = by_bucket.get(bucket, 0) + 1
        self.batches_per_epoch = sum(-(-n // batch_size) for n in by_bucket.values())
        self._cached: tuple[int, list[list[Entry]]] | None = None

    @property
    def samples_per_epoch(self) -> int:
        return len(self._entries)

    def epoch_batches(self, epoch: int) -> list[list[Entry]]:
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = random.Random(mix_seed(self.seed, "epoch", epoch))
        groups: dict[Size, list[Entry]] = {}
        for entry in self._entries:
            groups.setdefault(self.data.items[entry.item].bucket, []).append(entry)
        batches: list[list[Entry]] = []
        for bucket in sorted(groups):
            group = groups[bucket]
            rng.shuffle(group)
            batches.extend(group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size))
        rng.shuffle(batches)
        self._cached = (epoch, batches)
        return batches

    def batch(self, index: int) -> tuple[int, list[Entry]]:
        """(epoch, entries) of global micro-batch ``index``."""
        epoch, position = divmod(index, self.batches_per_epoch)
        return epoch, self.epoch_batches(epoch)[position]


def vary_caption(caption: str, rng: random.Random, *, dropout: float, shuffle: bool, keep: int, separator: str) -> str:
    """Caption dropout, then tag shuffle with the first ``keep`` tags in place."""
    if dropout > 0 and rng.random() < dropout:
        return ""
    if not shuffle:
        return caption
    tags = split_tags(caption, separator)
    head, tail = tags[:keep], tags[keep:]
    rng.shuffle(tail)
    return join_tags(head + tail, separator)
