"""What a base-model family needs torch for, written once for the Stable Diffusion pipelines.

A family's engine module (``sd1.py``, ``sdxl.py``…) is an instance of one of these classes;
the registry in ``__init__`` maps each ``Family`` to it. The table of plain facts (metadata
values, widths, labels) is ``app.core.families``; this side holds the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.core import families
from app.core.families import Family, FamilySpec
from app.core.train_config import Targets

# LoRA targets of the UNet (kohya's presets): attention; + feed-forward and proj_in/out
# ("LoRA"); + ResNet convs, time projections and the samplers' convs ("LoCon").
_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
_FEED_FORWARD = ("proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
_CONVS = ("conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv")


@dataclass(frozen=True)
class TinyTextEncoder:
    """One text encoder of a family's tiny test model (``app.engine.tiny``)."""

    width: int
    act: str = "quick_gelu"
    pad: str = "<|endoftext|>"  # CLIP ViT-L tokenizers pad with <|endoftext|>, OpenCLIP ones with "!"
    projection: int | None = None  # set: CLIPTextModelWithProjection (its pooled output is used)


@dataclass(frozen=True)
class StableDiffusion:
    """SD 1.x / 2.x: StableDiffusionPipeline, one text encoder, no added conditioning."""

    family: Family
    tiny_text_encoders: tuple[TinyTextEncoder, ...]
    tiny_unet: dict[str, Any] = field(default_factory=dict)  # changes to the shared tiny UNet config

    @property
    def spec(self) -> FamilySpec:
        return families.spec(self.family)

    def pipeline_class(self):
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline

    def load_kwargs(self) -> dict[str, Any]:
        """Extra ``from_pretrained`` / ``from_single_file`` arguments."""
        return {"safety_checker": None, "requires_safety_checker": False}

    def encode_prompts(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """captions -> {"embeds": (B, 77, D)}, exactly as the pipeline encodes prompts."""
        embeds, _ = pipe.encode_prompt(captions, device, 1, False)
        return {"embeds": embeds}

    def added_conditioning(
        self, encoded: dict[str, Any], time_ids: list[list[int]], device: Any, dtype: Any
    ) -> dict[str, Any]:
        """UNet keyword arguments beyond ``encoder_hidden_states`` (none for SD 1.x/2.x)."""
        return {}

    def distilled(self, denoiser_config: Any) -> bool:
        """Whether a model is the family's timestep-distilled one (``spec.distilled``), from its
        denoiser's config (a dict or a diffusers FrozenDict)."""
        return False

    def model_distilled(self, denoiser_config: Any, scheduler_config: Any) -> bool:
        """Whether a model is the distilled one, from its denoiser's and its scheduler's configs
        (dicts or FrozenDicts; the scheduler's may be None): ``distilled`` unless a family tells
        its distilled model by the scheduler (Z-Image-Turbo's transformer config is the base's)."""
        return self.distilled(denoiser_config)

    def single_file_problem(self, info: Any) -> str | None:
        """Why a detected single-file checkpoint (``single_file.CheckpointInfo``) cannot be loaded
        as this family; None: ``from_single_file`` with the bundled config loads it."""
        return None

    def load_files(self, choice: Any, info: Any, dtype: Any) -> Any:
        """The pipeline from a single file and its companion files (``model_choice.ModelChoice``),
        for families kept as several files (Flux.1); None: ``from_single_file`` of the one file."""
        return None

    def companion_problem(self, choice: Any, info: Any) -> str | None:
        """Why these companion files do not go with this checkpoint, or None (checked before loading)."""
        if choice.companions:
            return "companion files (clip_l=, t5=, vae=) go with Flux.1 transformer files only; leave them out"
        return None

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """Pipeline call arguments beyond prompt, steps, guidance, size and generator."""
        return {"negative_prompt": negative or None}

    def guidance_kwargs(self, guidance: float) -> dict[str, Any]:
        """The pipeline-call keywords that carry the render's guidance scale."""
        return {"guidance_scale": guidance}

    def adapter_names(self, part: Any, root: Any) -> dict[str, tuple[Any, ...]]:
        """Module keys of adapter files for layers of ``part`` (module ``root``) beyond the
        generic naming schemes of ``app.engine.layer_index``: key -> the
        ``app.engine.layer_delta.Piece`` s it changes (several for a layer other tools fuse)."""
        return {}

    def kohya_places(self, part: Any, root: Any) -> dict[str, Any]:
        """Layer path -> its place (``name``, ``rows``, ``total_rows``) in the family's kohya layout
        where that is not ``lora_<part>_<path>``: layers kohya fuses (Flux's q/k/v). Empty here."""
        return {}

    # ------------------------------------------------------------ training
    #: pipeline attribute of the denoiser (diffusers' ``save_lora_weights`` keyword prefix too)
    denoiser_name = "unet"
    #: text encoders a LoRA may train (in the pipeline's order)
    trainable_text_encoders = 2
    #: the frozen text encoders leave memory once every caption is cached (T5-XXL: 9 GB)
    release_text_encoders = False
    #: ``fp8_base`` training is offered (a denoiser big enough to need it)
    fp8_base = False
    #: DoRA training is offered (its per-layer magnitude has no place in a fused saved layer)
    dora_training = True
    #: the training noise schedule is DDPM's (``alphas_cumprod``): the ``[loss]`` options that read
    #: its SNR (debiased estimation, ``huber_schedule = "snr"``) apply
    snr_loss_options = True

    def denoiser(self, pipe: Any) -> Any:
        return getattr(pipe, self.denoiser_name)

    def lora_target_names(self, denoiser: Any, targets: Targets) -> list[str]:
        """Full module paths of the denoiser layers that ``targets`` selects."""
        import torch

        suffixes = _ATTENTION
        if targets in (Targets.ATTENTION_FF, Targets.LOCON):
            suffixes += _FEED_FORWARD
        if targets is Targets.LOCON:
            suffixes += _CONVS
        out = []
        for name, module in denoiser.named_modules():
            if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                continue
            if not name.startswith(("down_blocks.", "mid_block.", "up_blocks.")):
                continue
            linear = isinstance(module, torch.nn.Linear)
            if (targets is Targets.ALL_LINEAR and linear) or any(name == s or name.endswith("." + s) for s in suffixes):
                out.append(name)
        return out

    def encode_for_training(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """What the text cache keeps per caption: every tensor has the batch as its first axis."""
        return self.encode_prompts(pipe, captions, device)

    def noise_schedule(self, pipe: Any, prediction: str | None) -> Any:
        """The training noise schedule (DDPM over the pipeline's betas; ``prediction`` overrides
        the scheduler's prediction type when given)."""
        from diffusers import DDPMScheduler

        sched = DDPMScheduler.from_config(pipe.scheduler.config)
        if prediction:
            sched.register_to_config(prediction_type=prediction)
        return sched

    def sample_timesteps(self, sched: Any, config: Any, latents: Any, gen: Any) -> Any:
        """One training timestep per picture, uniform in the ``[loss]`` range (min_timestep ...
        max_timestep - 1 of [0, num_train_timesteps)), drawn from ``gen``."""
        from app.engine.training.losses import draw_timesteps

        return draw_timesteps(config.loss, sched, latents.shape[0], gen)

    def noisy_and_target(self, sched: Any, latents: Any, noise: Any, timesteps: Any) -> tuple[Any, Any]:
        """The denoiser's input at ``timesteps`` and what it should predict (noise or velocity)."""
        noisy = sched.add_noise(latents, noise, timesteps)
        if sched.config.prediction_type == "v_prediction":
            return noisy, sched.get_velocity(latents, noise, timesteps)
        return noisy, noise

    def predict(self, denoiser: Any, noisy: Any, timesteps: Any, cond: dict[str, Any], guidance: float) -> Any:
        """The denoiser's prediction, shaped like ``noisy`` (``guidance``: a distilled-guidance
        input, for the models that take one)."""
        return denoiser(noisy, timesteps, **cond).sample

    def loss_weights(self, sched: Any, config: Any, timesteps: Any) -> Any:
        """min-SNR-gamma loss weights (Hang et al. 2023); 1 when off."""
        gamma = config.min_snr_gamma
        if gamma <= 0:
            return 1.0
        import torch
        from diffusers.training_utils import compute_snr

        snr = compute_snr(sched, timesteps)
        clipped = torch.clamp(snr, max=gamma)
        return clipped / (snr + 1) if sched.config.prediction_type == "v_prediction" else clipped / snr

    def vae_latents(self, vae: Any, pixels: Any) -> tuple[Any, Any]:
        """Latent distribution (mean, std), each (B, C, h, w), of pixels (B, 3, H, W) in [-1, 1]."""
        dist = vae.encode(pixels).latent_dist
        return dist.mean, dist.std

    def scale_latents(self, vae_config: Any, latents: Any) -> Any:
        """VAE latents in the denoiser's range (the shift and scale of the VAE's config)."""
        return (latents - (getattr(vae_config, "shift_factor", None) or 0.0)) * vae_config.scaling_factor

    def latent_channels(self, vae_config: Any) -> int:
        return int(vae_config.latent_channels)

    def kohya_layout(self, denoiser: Any, module_paths: list[str]) -> dict[str, tuple[str, ...]]:
        """kohya name (without prefix) -> the denoiser modules it holds, fused in this order
        (one each for the UNet: ``mid_block_attentions_0_proj_in``); ``module_paths`` are the
        trained ones."""
        return {path.replace(".", "_"): (path,) for path in module_paths}

    def adapter_architecture(self, denoiser: Any, v_prediction: bool) -> str:
        """The adapter's ``modelspec.architecture``."""
        return self.spec.architecture_for(v_prediction)

    def adapter_base_version(self, denoiser: Any) -> str:
        """The adapter's ``ss_base_model_version`` (the table's; SD 3 writes its model's type)."""
        return self.spec.base_version

    def sample_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """Pipeline-call keywords of a sample render beyond prompt, steps, guidance, size and seed."""
        return {"negative_prompt": negative or None}

    def prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        """A cached caption's encoding as pipeline-call keywords (when the text encoders are gone)."""
        return {"prompt_embeds": encoded["embeds"][None]}

    def negative_prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        """A cached negative prompt's encoding as pipeline-call keywords (when the text encoders are
        gone); none for families whose encoders stay or that take no negative prompt."""
        return {}

    # ------------------------------------------------------------ tiny test model
    def tiny_unet_config(self) -> dict[str, Any]:
        """UNet2DConditionModel kwargs: the real layout, tiny widths, 8x8 latents (64 px)."""
        cfg = dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=8,
            cross_attention_dim=32,
            use_linear_projection=False,
            norm_num_groups=8,  # >= 4 channels a group (real SD: 10)
        )
        cfg.update(self.tiny_unet)
        return cfg

    def tiny_pipeline_kwargs(self) -> dict[str, Any]:
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
