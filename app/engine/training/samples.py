"""Sample pictures during training: the same prompts and seeds at every sampling step."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch

from app import __version__
from app.core import families
from app.core.families import Family
from app.core.train_config import TrainConfig
from app.engine.families import engine
from app.engine.rendering import _scheduler_for, save_png

log = logging.getLogger(__name__)


def render_samples(
    pipe: Any,
    config: TrainConfig,
    step: int,
    out_paths: list[Path],
    *,
    device: torch.device,
    family: Family,
    autocast: Any = None,
    wanted: list[tuple[str, str, int]] | None = None,
    text_cache: Any = None,
) -> list[tuple[Path, dict]]:
    """Render every sample prompt (or the (prompt, negative, seed) triples of ``wanted``) with the
    adapter as it is now; return (path, meta) pairs. Without text encoders (released after
    caching) the prompts' cached embeddings from ``text_cache`` are used."""
    opts, eng = config.sample, engine(family)
    width = opts.width or config.data.resolution
    height = opts.height or config.data.resolution
    original = pipe.scheduler
    spec = families.spec(family)
    if not spec.scheduler_problem(opts.scheduler.value):  # else the pipeline's own (Flux: flow-match Euler)
        pipe.scheduler = _scheduler_for(opts.scheduler, dict(pipe.scheduler.config), spec.flow_matching)
    models = [
        m
        for m in (eng.denoiser(pipe), getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None))
        if m is not None
    ]
    released = getattr(pipe, "text_encoder", None) is None
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
            if autocast is None and config.fp8_base:  # a bf16 denoiser between fp32 encoders and VAE
                context = torch.autocast(device.type, dtype=torch.bfloat16)
            if released:  # the cached encodings; a family with real CFG gets its negative's too
                encoded, negative_encoded = (
                    {k: v.to(device) for k, v in e.items()} for e in text_cache.get_many([prompt, negative])
                )
                prompt_kwargs = eng.prompt_kwargs(encoded) | eng.negative_prompt_kwargs(negative_encoded)
            else:
                prompt_kwargs = {"prompt": prompt}
            with torch.no_grad(), context:
                image = pipe(
                    **prompt_kwargs,
                    **eng.sample_kwargs(pipe, "" if released else negative),
                    num_inference_steps=opts.steps,
                    **eng.guidance_kwargs(opts.guidance),
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
