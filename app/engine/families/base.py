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

    def single_file_problem(self, info: Any) -> str | None:
        """Why a detected single-file checkpoint (``single_file.CheckpointInfo``) cannot be loaded
        as this family; None: ``from_single_file`` with the bundled config loads it."""
        return None

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """Pipeline call arguments beyond prompt, steps, guidance, size and generator."""
        return {"negative_prompt": negative or None}

    def adapter_names(self, part: Any, root: Any) -> dict[str, tuple[Any, ...]]:
        """Module keys of adapter files for layers of ``part`` (module ``root``) beyond the
        generic naming schemes of ``app.engine.layer_index``: key -> the
        ``app.engine.layer_delta.Piece`` s it changes (several for a layer other tools fuse)."""
        return {}

    def kohya_places(self, part: Any, root: Any) -> dict[str, Any]:
        """Layer path -> its place (``name``, ``rows``, ``total_rows``) in the family's kohya layout
        where that is not ``lora_<part>_<path>``: layers kohya fuses (Flux's q/k/v). Empty here."""
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
