"""The validation split and its loss.

``[validation] images = N`` holds out N training pictures (chosen by the seed, so a resume
holds out the same ones); ``folder = ...`` reads a folder of pictures that are never trained
on. Every ``every`` steps, and at each scheduled checkpoint (``save_every``, the end), the loss
over them at fixed noise and timesteps (:func:`~app.engine.training.objective.fixed_loss`) is
reported in the step's ``Progress.val_loss``, logged in ``log.jsonl`` as ``val_loss`` and said in a log line; the
checkpoint with the lowest one is the run's best (kept when old checkpoints are pruned).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from app.core.train_config import DatasetSpec, TrainConfig
from app.core.train_validation import ValidationOptions, best_step
from app.engine.training.data import TrainData, TrainError, collect, mix_seed
from app.engine.training.objective import fixed_loss
from app.engine.training.run import RunDir

if TYPE_CHECKING:
    from app.engine.training.session import TrainSession


def split(config: TrainConfig, data: TrainData, should_stop: Callable[[], bool] | None = None) -> TrainData:
    """``data`` with its validation pictures (held out of the training pictures, or from the folder)."""
    opts = config.validation
    if opts.folder.strip():
        only = replace(config, datasets=[DatasetSpec(path=opts.folder)], validation=ValidationOptions())
        try:
            held = collect(only, should_stop)
        except TrainError as exc:
            raise TrainError(f"[validation] folder: {str(exc).removeprefix('dataset #1: ')}") from None
        return replace(data, validation=held.items, skipped=data.skipped + held.skipped)
    if not opts.images:
        return data
    train = sorted(
        (i for i, item in enumerate(data.items) if not item.regularization), key=lambda i: str(data.items[i].path)
    )
    if opts.images >= len(train):
        raise TrainError(
            f"[validation] images = {opts.images} would hold out every training picture ({len(train)} found); "
            "hold out fewer, or give a validation folder"
        )
    chosen = set(random.Random(mix_seed(config.seed, "validation")).sample(train, opts.images))
    return replace(
        data,
        items=[item for i, item in enumerate(data.items) if i not in chosen],
        validation=[data.items[i] for i in sorted(chosen)],
    )


def due(session: TrainSession, step: int, saving: bool) -> bool:
    """Validation is on, has pictures left (unreadable ones are dropped), and this step is due."""
    opts = session.config.validation
    return opts.enabled and bool(session.data.validation) and (saving or step % opts.every == 0)


def validate(session: TrainSession, step: int) -> float:
    """The validation loss now; remembered by step and said in a log line."""
    loss = fixed_loss(session, items=session.data.validation)
    before = min(session.val_losses.values(), default=None)
    session.val_losses[step] = loss
    best = " (the best so far)" if before is None or loss < before else ""
    session.reporter.status(f"validation loss {loss:.4f} at step {step}{best}")
    return loss


def best_checkpoint_step(session: TrainSession, saved_steps: list[int]) -> int | None:
    """The saved step with the lowest validation loss (None without validation)."""
    return best_step(session.val_losses, saved_steps)


def history(run_dir: RunDir, up_to: int) -> dict[int, float]:
    """The validation losses a resumed run already logged (step <= ``up_to``)."""
    out: dict[int, float] = {}
    if not run_dir.log_path.is_file():
        return out
    for line in run_dir.log_path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("val_loss"), (int, float)):
            step = record.get("step")
            if isinstance(step, int) and step <= up_to:
                out[step] = float(record["val_loss"])
    return out
