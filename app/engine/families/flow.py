"""What every flow-matching transformer family shares (Flux.1, and the 2026 families after it):
the pipeline's FlowMatchEulerDiscreteScheduler as the training schedule, sigma drawn as
``[flow]`` says, x_t = (1 - sigma) x0 + sigma noise with the velocity as the target, no
min-SNR weighting, a ``transformer`` denoiser and text encoders released once captions are cached.

A family module subclasses :class:`FlowMatchingTransformer` and adds what is its own: the
pipeline class, prompt encoding, ``predict`` (how its transformer is called) and its tiny model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.core.train_flow import TimestepSampling
from app.engine.families.base import StableDiffusion


@dataclass(frozen=True)
class FlowMatchingTransformer(StableDiffusion):
    denoiser_name = "transformer"
    trainable_text_encoders = 0  # LLM/T5 text encoders stay frozen unless a family says otherwise
    release_text_encoders = True  # a T5-XXL or a 4-8 B LLM: never resident during the steps
    fp8_base = True  # a multi-billion-parameter transformer: fp8 storage fits 12-16 GB
    #: no DDPM schedule, so no SNR for debiased estimation or Huber's snr schedule (sd-scripts
    #: refuses both on Flux too: "Huber schedule 'snr' is not supported with the current model")
    snr_loss_options = False
    #: latent pixels per image token (2x2 patches: 4), for the resolution-dependent shift
    latent_pixels_per_token = 4

    def load_kwargs(self) -> dict[str, Any]:
        return {}

    def noise_schedule(self, pipe: Any, prediction: str | None) -> Any:
        """The pipeline's FlowMatchEulerDiscreteScheduler config (its shift settings are read)."""
        return pipe.scheduler

    def sample_timesteps(self, sched: Any, config: Any, latents: Any, gen: Any) -> Any:
        """sigma * 1000 per picture, drawn from ``gen`` as ``config.flow`` says (see
        app.core.train_flow); ``shift`` moves it as the family's sampler shifts its sigmas; then
        scaled into the ``[loss]`` range (min_timestep / 1000 ... max_timestep / 1000)."""
        import torch

        opts, n = config.flow, latents.shape[0]
        if opts.timestep_sampling is TimestepSampling.UNIFORM:
            sigma = torch.rand((n,), generator=gen)
        else:
            sigma = torch.sigmoid(opts.logit_mean + opts.logit_std * torch.randn((n,), generator=gen))
        if opts.timestep_sampling is TimestepSampling.SHIFT:
            sigma = self.shifted(sched.config, sigma, latents)
        # The [loss] timestep range, as musubi-tuner and sd-scripts scale a flow's sigma into it
        # (the whole range, the default, leaves sigma as it is).
        low, high = config.loss.min_timestep / 1000.0, config.loss.max_timestep / 1000.0
        if (low, high) != (0.0, 1.0):
            sigma = sigma * (high - low) + low
        return sigma * sched.config.num_train_timesteps

    def shifted(self, sched_config: Any, sigma: Any, latents: Any) -> Any:
        """The sampler's own time shift: resolution-dependent (``use_dynamic_shifting``, Flux) or
        the scheduler's fixed ``shift`` (SD 3, Z-Image)."""
        if sched_config.get("use_dynamic_shifting", False):
            tokens = latents.shape[-2] * latents.shape[-1] // self.latent_pixels_per_token
            mu = self.resolution_shift(sched_config, tokens)
            return math.exp(mu) / (math.exp(mu) + (1.0 / sigma - 1.0))
        shift = float(sched_config.get("shift", 1.0))
        return shift * sigma / (1.0 + (shift - 1.0) * sigma)

    @staticmethod
    def resolution_shift(sched_config: Any, image_tokens: int) -> float:
        """mu for ``image_tokens``: linear from base_shift at base_image_seq_len to max_shift at
        max_image_seq_len, as FluxPipeline renders."""
        lo, hi = sched_config.get("base_image_seq_len", 256), sched_config.get("max_image_seq_len", 4096)
        base, top = sched_config.get("base_shift", 0.5), sched_config.get("max_shift", 1.15)
        return base + (top - base) * (image_tokens - lo) / (hi - lo)

    def noisy_and_target(self, sched: Any, latents: Any, noise: Any, timesteps: Any) -> tuple[Any, Any]:
        """Flow matching: x_t = (1 - sigma) x0 + sigma noise; the target is the velocity noise - x0."""
        sigma = (timesteps.float() / sched.config.num_train_timesteps).view(-1, *([1] * (latents.dim() - 1)))
        return (1.0 - sigma) * latents + sigma * noise, noise - latents

    def loss_weights(self, sched: Any, config: Any, timesteps: Any) -> Any:
        return 1.0  # min-SNR is a DDPM weighting; the sampling of sigma does the weighting here

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        return {"negative_prompt": negative or None} if not self.spec.guidance_distilled else {}

    def sample_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        return self.call_kwargs(pipe, negative)
