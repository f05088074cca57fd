"""The training objective, written once: the training step and :func:`fixed_loss` both call it.

Noise (with its offset) and timesteps come from the caller's generator in a fixed order, so
a step's loss is a pure function of its seed and a resumed run repeats it exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from app.engine.families import engine
from app.engine.training.buckets import plan_crop
from app.engine.training.data import TrainItem

if TYPE_CHECKING:
    from app.engine.training.session import TrainSession


def scaled(latents: torch.Tensor, vae_config: Any) -> torch.Tensor:
    """VAE latents in the UNet's range (the shift and scale of the VAE's config)."""
    return (latents - (getattr(vae_config, "shift_factor", None) or 0.0)) * vae_config.scaling_factor


def time_ids(item: TrainItem) -> list[int]:
    """SDXL's size conditioning of a picture: original size, crop corner, target size (h, w order)."""
    plan = plan_crop(item.size[0], item.size[1], item.bucket)
    return [item.size[1], item.size[0], plan.top, plan.left, item.bucket[1], item.bucket[0]]


def objective(
    session: TrainSession,
    latents: torch.Tensor,
    captions: list[str],
    ids: list[list[int]],
    gen: torch.Generator,
    *,
    timesteps: torch.Tensor | None = None,
    noise_offset: float = 0.0,
) -> torch.Tensor:
    """Per-picture loss on ``latents`` (scaled, on the CPU): noise (plus ``noise_offset`` times a
    per-channel noise) and, unless given, timesteps are drawn from ``gen``; the denoiser predicts
    the family's target (noise, velocity, or flow matching's noise - x0); MSE, weighted as the
    family weights it (min-SNR-gamma for the DDPM ones)."""
    sched, device, eng = session.noise_scheduler, session.device, engine(session.family)
    noise = torch.randn(latents.shape, generator=gen)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=gen)
    if timesteps is None:
        timesteps = eng.sample_timesteps(sched, session.config, latents, gen)
    latents, noise, timesteps = latents.to(device), noise.to(device), timesteps.to(device)
    noisy, target = eng.noisy_and_target(sched, latents, noise, timesteps)
    cond = condition(session, captions, ids)
    pred = eng.predict(
        session.net.unet, noisy.to(session.unet_dtype), timesteps, cond, session.config.flow.guidance_scale
    )
    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return loss * eng.loss_weights(sched, session.config, timesteps)


def condition(session: TrainSession, captions: list[str], time_ids: list[list[int]]) -> dict[str, Any]:
    """The UNet's conditioning keywords for ``captions``: from the text cache, or encoded now."""
    if session.text_cache is not None:
        found = session.text_cache.get_many(captions)
        out = {k: torch.stack([f[k] for f in found]).to(session.device) for k in found[0]}
    else:
        out = session.encode(captions)
    dtype = session.unet_dtype
    cond: dict[str, Any] = {"encoder_hidden_states": out["embeds"].to(dtype)}
    cond.update(engine(session.family).added_conditioning(out, time_ids, session.device, dtype))
    return cond


def fixed_loss(
    session: TrainSession, seed: int = 0, timesteps: tuple[int, ...] = (999, 900, 750, 500, 250, 100)
) -> float:
    """The training objective (min-SNR weighting included) over the training pictures at fixed
    noise and timesteps (latent means, plain captions, no dropout, no grad): a learning measure
    free of each step's random choices."""
    unet = session.net.unet
    was_training = unet.training
    unet.eval()
    gen = torch.Generator("cpu").manual_seed(seed)
    total, count = 0.0, 0
    vae_config = session.pipe.vae.config
    try:
        with torch.no_grad(), session.accelerator.autocast():
            for item in session.data.train_items:
                mean, _ = session.latents.load(item.path, item.bucket, False)
                latents = scaled(mean, vae_config)[None].repeat(len(timesteps), 1, 1, 1)
                n = len(timesteps)
                loss = objective(
                    session, latents, [item.caption] * n, [time_ids(item)] * n, gen, timesteps=torch.tensor(timesteps)
                )
                total += loss.mean().item()
                count += 1
    finally:
        unet.train(was_training)
    return total / count
