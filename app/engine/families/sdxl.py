"""SDXL: two text encoders (CLIP ViT-L + OpenCLIP ViT-bigG), pooled text and size/crop
"time ids" as added conditioning, no safety checker in the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.families import Family
from app.engine.families.base import StableDiffusion, TinyTextEncoder


@dataclass(frozen=True)
class StableDiffusionXL(StableDiffusion):
    def pipeline_class(self):
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline

    def load_kwargs(self) -> dict[str, Any]:
        return {}

    def encode_prompts(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """captions -> {"embeds": (B, 77, D), "pooled": (B, D2)}, as the pipeline encodes prompts."""
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return {"embeds": embeds, "pooled": pooled}

    def added_conditioning(
        self, encoded: dict[str, Any], time_ids: list[list[int]], device: Any, dtype: Any
    ) -> dict[str, Any]:
        """The pooled second-encoder output and the (original size, crop, target size) ids."""
        import torch

        return {
            "added_cond_kwargs": {
                "text_embeds": encoded["pooled"].to(dtype),
                "time_ids": torch.tensor(time_ids, device=device, dtype=dtype),
            }
        }

    def tiny_unet_config(self) -> dict[str, Any]:
        return dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 2),
            cross_attention_dim=64,  # text_encoder 32 + text_encoder_2 32
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,  # pooled te2 + 6 time ids
            norm_num_groups=8,
        )

    def tiny_pipeline_kwargs(self) -> dict[str, Any]:
        return {"force_zeros_for_empty_prompt": True}


ENGINE = StableDiffusionXL(
    Family.SDXL,
    tiny_text_encoders=(TinyTextEncoder(width=32), TinyTextEncoder(width=32, act="gelu", pad="!", projection=32)),
)
