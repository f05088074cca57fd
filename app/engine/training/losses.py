"""The loss options of ``[loss]`` (:class:`~app.core.train_options.LossOptions`), as kohya
sd-scripts defines them, so a setting means the same here as there:

* ``huber_threshold`` and ``elementwise_loss``: sd-scripts' ``get_huber_threshold_if_needed``
  and ``conditional_loss`` (pseudo-Huber ``2c(sqrt(d² + c²) - c)``, smooth-L1 ``2(sqrt(d² + c²) - c)``);
* ``debiased_weights``: ``apply_debiased_estimation`` (1/sqrt(SNR), 1/(SNR+1) for v-prediction,
  SNR capped at 1000);
* ``pyramid_noise``: ``pyramid_noise_like`` (multi-resolution noise), drawing from the step's
  generator instead of Python's ``random`` so that a resumed run repeats its noise.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from app.core.train_options import HuberSchedule, LossOptions, LossType


def draw_noise(shape: tuple[int, ...], gen: torch.Generator, noise_offset: float, opts: LossOptions) -> torch.Tensor:
    """A step's noise: Gaussian, plus ``noise_offset`` times a per-channel offset, then
    multi-resolution when it is on (sd-scripts' order); every draw from ``gen``."""
    noise = torch.randn(shape, generator=gen)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((shape[0], shape[1], 1, 1), generator=gen)
    if opts.multires_noise_iterations:
        noise = pyramid_noise(noise, gen, opts.multires_noise_iterations, opts.multires_noise_discount)
    return noise


def family_problem(opts: LossOptions, snr_loss_options: bool, family_label: str) -> str | None:
    """The sentence refusing a ``[loss]`` setting that reads a DDPM schedule's SNR on a family
    whose schedule has none (flow matching: the engine's ``snr_loss_options``); None when it fits."""
    if snr_loss_options:
        return None
    if opts.debiased_estimation:
        return (
            f"[loss] debiased_estimation weights by a DDPM noise schedule's SNR, and {family_label} trains by "
            "flow matching, which has none; set debiased_estimation = false"
        )
    if opts.loss_type is not LossType.L2 and opts.huber_schedule is HuberSchedule.SNR:
        return (
            f'[loss] huber_schedule = "snr" reads a DDPM noise schedule\'s SNR, and {family_label} trains by '
            'flow matching, which has none; set huber_schedule = "constant" or "exponential"'
        )
    return None


def draw_timesteps(opts: LossOptions, sched: Any, count: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform timesteps in ``min_timestep ... max_timestep - 1`` (the schedule's length at most)."""
    high = min(opts.max_timestep, sched.config.num_train_timesteps)
    return torch.randint(opts.min_timestep, high, (count,), generator=gen)


def huber_threshold(opts: LossOptions, sched: Any, timesteps: torch.Tensor) -> torch.Tensor | None:
    """The Huber ``c`` of each picture's timestep; None for the L2 loss."""
    if opts.loss_type is LossType.L2:
        return None
    t = timesteps.to("cpu")
    if opts.huber_schedule is HuberSchedule.EXPONENTIAL:
        alpha = -math.log(opts.huber_c) / sched.config.num_train_timesteps
        c = torch.exp(-alpha * t.float())
    elif opts.huber_schedule is HuberSchedule.SNR:
        alphas = torch.index_select(sched.alphas_cumprod.to("cpu"), 0, t)
        sigmas = ((1.0 - alphas) / alphas) ** 0.5
        c = (1 - opts.huber_c) / (1 + sigmas) ** 2 + opts.huber_c
    else:
        c = torch.full((t.shape[0],), opts.huber_c)
    return c.float().to(timesteps.device)


def elementwise_loss(
    pred: torch.Tensor, target: torch.Tensor, loss_type: LossType, c: torch.Tensor | None
) -> torch.Tensor:
    """The loss of every latent value (not reduced)."""
    if loss_type is LossType.L2:
        return F.mse_loss(pred, target, reduction="none")
    assert c is not None
    c = c.view(-1, *([1] * (pred.ndim - 1)))
    curve = torch.sqrt((pred - target) ** 2 + c**2) - c
    return 2 * c * curve if loss_type is LossType.HUBER else 2 * curve


def debiased_weights(sched: Any, timesteps: torch.Tensor) -> torch.Tensor:
    """Per-picture weights of debiased estimation (Yu et al. 2024, as sd-scripts applies them)."""
    alphas = sched.alphas_cumprod.to("cpu")[timesteps.to("cpu")]
    snr = torch.clamp(alphas / (1.0 - alphas), max=1000.0)
    weights = 1 / (snr + 1) if sched.config.prediction_type == "v_prediction" else 1 / torch.sqrt(snr)
    return weights.float().to(timesteps.device)


def pyramid_noise(noise: torch.Tensor, gen: torch.Generator, iterations: int, discount: float) -> torch.Tensor:
    """Multi-resolution noise: ``noise`` plus ever coarser noise (each level ``discount`` times the
    last, a random 2-4x smaller), rescaled to unit standard deviation."""
    b, c, w, h = noise.shape
    up = torch.nn.Upsample(size=(w, h), mode="bilinear")
    out = noise.clone()
    for i in range(iterations):
        r = torch.rand((), generator=gen).item() * 2 + 2
        wn, hn = max(1, int(w / (r**i))), max(1, int(h / (r**i)))
        out += up(torch.randn((b, c, wn, hn), generator=gen)) * discount**i
        if wn == 1 or hn == 1:
            break
    return out / out.std()
