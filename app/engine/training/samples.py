"""Sample pictures during training: the same prompts and seeds at every sampling step."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch

from app import __version__
from app.core.train_config import TrainConfig
from app.engine.rendering import _scheduler_for, save_png

log = logging.getLogger(__name__)


def render_samples(
    pipe: Any,
    config: TrainConfig,
    step: int,
    out_paths: list[Path],
    *,
    device: torch.device,
    autocast: Any = None,
    wanted: list[tuple[str, str, int]] | None = None,
) -> list[tuple[Path, dict]]:
    """Render every sample prompt (or the (prompt, negative, seed) triples of ``wanted``) with the
    adapter as it is now; return (path, meta) pairs."""
    opts = config.sample
    width = opts.width or config.data.resolution
    height = opts.height or config.data.resolution
    scheduler_config = dict(pipe.scheduler.config)
    original = pipe.scheduler
    pipe.scheduler = _scheduler_for(opts.scheduler, scheduler_config)
    models = [
        m
        for m in (pipe.unet, getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None))
        if m is not None
    ]
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    results = []
    try:
        if wanted is None:
            wanted = [(p, opts.negative, opts.seed + i) for i, p in enumerate(config.sample_prompts())]
        for (prompt, negative, seed), path in zip(wanted, out_paths):
            generator = torch.Generator("cpu").manual_seed(seed)
            context = autocast() if autocast is not None else contextlib.nullcontext()
            with torch.no_grad(), context:
                image = pipe(
                    prompt=prompt,
                    negative_prompt=negative or None,
                    num_inference_steps=opts.steps,
                    guidance_scale=opts.guidance,
                    width=width,
                    height=height,
                    generator=generator,
                ).images[0]
            meta = {
                "prompt": prompt,
                "negative": negative,
                "seed": seed,
                "steps": opts.steps,
                "guidance": opts.guidance,
                "width": width,
                "height": height,
                "scheduler": opts.scheduler.value,
                "base": config.base,
                "model": Path(config.base).stem if Path(config.base).exists() else config.base,
                "version": f"LoRA Loom {__version__}",
                "training_step": step,
                "run": config.name,
            }
            save_png(image, path, meta)
            results.append((path, meta))
    finally:
        pipe.scheduler = original
        for m, flag in zip(models, was_training):
            m.train(flag)
    return results
