"""The training objective, written once: the training step and :func:`fixed_loss` both call it.

Noise (with its offset) and timesteps come from the caller's generator in a fixed order, so
a step's loss is a pure function of its seed and a resumed run repeats it exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from app.engine.families import engine
from app.engine.training.buckets import plan_crop
from app.engine.training.data import TrainItem
from app.engine.training.losses import debiased_weights, draw_noise, elementwise_loss, huber_threshold

if TYPE_CHECKING:
    from app.engine.training.session import TrainSession


def scaled(latents: torch.Tensor, vae_config: Any, family: Any) -> torch.Tensor:
    """VAE latents in the denoiser's range, as the family scales them (``scale_latents``)."""
    return engine(family).scale_latents(vae_config, latents)


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
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-picture loss on ``latents`` (scaled, on the CPU): noise (plus ``noise_offset`` times a
    per-channel noise, then multi-resolution noise when on) and, unless given, timesteps are drawn
    from ``gen`` as the family draws them (within the ``[loss]`` range for the DDPM ones); the
    denoiser predicts the family's target (noise, velocity, or flow matching's noise - x0); the
    ``[loss]`` type (MSE by default), weighted as the family weights it (min-SNR-gamma for the DDPM
    ones) and by debiased estimation when it is on (see :mod:`~app.engine.training.losses`).
    ``mask`` (B, 1, h, w) at latent size weights each latent pixel's error (masked loss)."""
    sched, device, eng = session.noise_scheduler, session.device, engine(session.family)
    noise = draw_noise(tuple(latents.shape), gen, noise_offset, session.config.loss)
    if timesteps is None:
        timesteps = eng.sample_timesteps(sched, session.config, latents, gen)
    latents, noise, timesteps = latents.to(device), noise.to(device), timesteps.to(device)
    noisy, target = eng.noisy_and_target(sched, latents, noise, timesteps)
    cond = condition(session, captions, ids)
    pred = eng.predict(
        session.net.unet, noisy.to(session.unet_dtype), timesteps, cond, session.config.flow.guidance_scale
    )
    weights = eng.loss_weights(sched, session.config, timesteps)
    return weighted_loss(session.config, sched, pred.float(), target.float(), timesteps, mask=mask, weights=weights)


def weighted_loss(
    config: Any,
    sched: Any,
    pred: torch.Tensor,
    target: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Per-picture loss of a prediction: the ``[loss]`` type averaged over each picture (each
    element weighted by ``mask`` when given: kohya's masked loss averages over every pixel),
    times ``weights`` (the family's; min-SNR-gamma when not given) and the debiased-estimation
    weights when they are on."""
    opts = config.loss
    c = huber_threshold(opts, sched, timesteps)
    loss = elementwise_loss(pred, target, opts.loss_type, c)
    if mask is not None:
        loss = loss * mask.to(loss.device)
    loss = loss.mean(dim=tuple(range(1, pred.ndim)))
    loss = loss * (snr_weights(sched, config.min_snr_gamma, timesteps) if weights is None else weights)
    if opts.debiased_estimation:  # refused up front where the schedule has no SNR (setup.check_family_options)
        loss = loss * debiased_weights(sched, timesteps)
    return loss


def snr_weights(sched: Any, gamma: float, timesteps: torch.Tensor) -> torch.Tensor | float:
    """min-SNR-gamma loss weights (Hang et al. 2023); 1 when off."""
    if gamma <= 0:
        return 1.0
    from diffusers.training_utils import compute_snr

    snr = compute_snr(sched, timesteps)
    clipped = torch.clamp(snr, max=gamma)
    return clipped / (snr + 1) if sched.config.prediction_type == "v_prediction" else clipped / snr


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
    session: TrainSession,
    seed: int = 0,
    timesteps: tuple[int, ...] = (999, 900, 750, 500, 250, 100),
    items: list[TrainItem] | None = None,
) -> float:
    """The training objective (min-SNR weighting and masks included) over ``items`` (the training
    pictures unless given) at fixed noise and timesteps (latent means, plain captions, no dropout,
    no grad): a learning measure free of each step's random choices."""
    unet = session.net.unet
    was_training = unet.training
    unet.eval()
    gen = torch.Generator("cpu").manual_seed(seed)
    total, count = 0.0, 0
    vae_config = session.pipe.vae.config
    try:
        with torch.no_grad(), session.accelerator.autocast():
            for item in session.data.train_items if items is None else items:
                mean, _ = session.latents.load(item.path, item.bucket, False)
                latents = scaled(mean, vae_config, session.family)[None].repeat(len(timesteps), 1, 1, 1)
                n = len(timesteps)
                mask = session.masks.batch([item], [False]) if session.masks is not None else None
                loss = objective(
                    session,
                    latents,
                    [item.caption] * n,
                    [time_ids(item)] * n,
                    gen,
                    timesteps=torch.tensor(timesteps),
                    mask=mask,
                )
                total += loss.mean().item()
                count += 1
    finally:
        unet.train(was_training)
    return total / count
