"""SD 3 / 3.5 (Medium, Large, Large Turbo): an SD3Transformer2DModel denoiser (MMDiT: joint
attention of a text and an image stream in every block; 3.5 with q/k RMS norm, 3.5 Medium with a
second image-only attention in its first 13 blocks), CLIP ViT-L and OpenCLIP ViT-bigG (both with
projection: their pooled outputs, concatenated, are the pooled vector; their token features,
concatenated and padded, precede T5-XXL's), a 16-channel VAE with a shift and scale, flow matching
with the fixed shift 3.0, real classifier-free guidance with a negative prompt.

The tiny test model keeps every component class and module name of SD 3.5 Medium (dual attention
in its first block, q/k norm) at widths that render 64x64 on a CPU in a fraction of a second.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.families import Family
from app.core.train_config import Targets
from app.engine.families.base import TinyTextEncoder
from app.engine.families.flow import FlowMatchingTransformer

#: T5 token features a prompt is padded to: the pipeline's default 256, the tiny model's fewer.
MAX_SEQUENCE = 256
TINY_MAX_SEQUENCE = 16

# LoRA targets inside a joint block (``transformer_blocks.N.``): both streams' attention, 3.5
# Medium's second image attention (attn2), the MLPs, the modulations.
_ATTENTION = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
)  # fmt: skip
_MLP = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")
_MODULATION = ("norm1.linear", "norm1_context.linear")


def _model_type(config: Any) -> str:
    """sd-scripts' MMDiT model type (its ``sd3_utils.analyze_state_dict_state``): no q/k norm is
    SD 3 Medium; with it, dual attention layers make 3.5 Medium, none 3.5 Large."""
    if not config.get("qk_norm"):
        return "medium"
    return "5-medium" if config.get("dual_attention_layers") else "5-large"


@dataclass(frozen=True)
class StableDiffusion3(FlowMatchingTransformer):
    def pipeline_class(self):
        from diffusers import StableDiffusion3Pipeline

        return StableDiffusion3Pipeline

    @staticmethod
    def max_sequence(pipe: Any) -> int:
        """T5 length for prompts: the pipeline's 256, or the tokenizer's own limit when shorter."""
        tokenizer = getattr(pipe, "tokenizer_3", None)
        return min(MAX_SEQUENCE, int(getattr(tokenizer, "model_max_length", MAX_SEQUENCE) or MAX_SEQUENCE))

    def encode_prompts(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """captions -> {"embeds": CLIP-L+G features padded to T5's width then T5's (B, 77 + L, 4096),
        "pooled": CLIP-L+G pooled (B, 2048)}, exactly as StableDiffusion3Pipeline encodes prompts."""
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=captions,
            prompt_2=None,
            prompt_3=None,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence(pipe),
        )
        return {"embeds": embeds, "pooled": pooled}

    # ------------------------------------------------------------ training
    trainable_text_encoders = 0  # CLIP-L/G LoRAs are read; training trains the transformer only
    dora_training = False  # q/k/v are saved fused, as sd-scripts writes them

    def lora_target_names(self, denoiser: Any, targets: Targets) -> list[str]:
        """attention: q/k/v/out of both streams (and attn2); attention_ff: + the MLPs;
        all_linear (or locon): + the blocks' modulation layers."""
        import torch

        suffixes = _ATTENTION
        if targets is not Targets.ATTENTION:
            suffixes += _MLP
        if targets in (Targets.ALL_LINEAR, Targets.LOCON):
            suffixes += _MODULATION
        return [
            name
            for name, module in denoiser.named_modules()
            if isinstance(module, torch.nn.Linear)
            and name.startswith("transformer_blocks.")
            and name.split(".", 2)[2] in suffixes
        ]

    def added_conditioning(
        self, encoded: dict[str, Any], time_ids: list[list[int]], device: Any, dtype: Any
    ) -> dict[str, Any]:
        """The transformer's other input beside the token features: the pooled CLIP-L+G vector."""
        return {"pooled_projections": encoded["pooled"].to(dtype)}

    def predict(self, denoiser: Any, noisy: Any, timesteps: Any, cond: dict[str, Any], guidance: float) -> Any:
        """The transformer called as StableDiffusion3Pipeline calls it: latents as they are (it
        patches them itself), the timestep as sigma * 1000; its output is the velocity noise - x0."""
        return denoiser(
            hidden_states=noisy,
            timestep=timesteps.to(noisy.dtype),
            encoder_hidden_states=cond["encoder_hidden_states"],
            pooled_projections=cond["pooled_projections"],
            return_dict=False,
        )[0]

    def kohya_layout(self, denoiser: Any, module_paths: list[str]) -> dict[str, tuple[str, ...]]:
        """sd-scripts' SD 3 names (Stability's layers, q/k/v fused; ``app.engine.sd3_keys``); a fused
        layer lists all its modules in row order, trained or not (an untrained one gets zero rows)."""
        from app.engine import sd3_keys

        places = sd3_keys.kohya_places(denoiser)
        rows: dict[str, list[tuple[int, str]]] = {}
        for path, place in places.items():
            rows.setdefault(place.name, []).append((place.rows[0][0], path))
        names = dict.fromkeys(places[p].name for p in module_paths)
        return {name.removeprefix("lora_unet_"): tuple(p for _, p in sorted(rows[name])) for name in names}

    def kohya_places(self, part: Any, root: Any) -> dict[str, Any]:
        if not part.denoiser:
            return {}
        from app.engine import sd3_keys

        return sd3_keys.kohya_places(root)

    def adapter_names(self, part: Any, root: Any) -> dict[str, tuple[Any, ...]]:
        """kohya and ComfyUI (Stability) names of the transformer's layers, fused q/k/v included."""
        if not part.denoiser:
            return {}
        from app.engine import sd3_keys

        return sd3_keys.file_names(root)

    def adapter_architecture(self, denoiser: Any, v_prediction: bool) -> str:
        """sd-scripts' modelspec architecture: "stable-diffusion-3-" + its model type + "/lora"."""
        return f"stable-diffusion-3-{_model_type(denoiser.config)}/lora"

    def adapter_base_version(self, denoiser: Any) -> str:
        return _model_type(denoiser.config)

    def single_file_problem(self, info: Any) -> str | None:
        return (
            "an SD 3 single-file checkpoint; LoRA Loom does not load SD 3 from single files yet: pick a "
            "diffusers folder of it or a Hub id such as stabilityai/stable-diffusion-3.5-medium"
        )

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """Real CFG with the negative prompt; T5 padded to the pipeline's length (the tokenizer's
        when shorter)."""
        return {"negative_prompt": negative or None, "max_sequence_length": self.max_sequence(pipe)}

    def sample_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        return self.call_kwargs(pipe, negative)

    def prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {"prompt_embeds": encoded["embeds"][None], "pooled_prompt_embeds": encoded["pooled"][None]}

    def negative_prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {
            "negative_prompt_embeds": encoded["embeds"][None],
            "negative_pooled_prompt_embeds": encoded["pooled"][None],
        }

    # ------------------------------------------------------------ tiny test model
    def tiny_transformer_config(self) -> dict[str, Any]:
        """SD3Transformer2DModel kwargs: 3.5 Medium's block kinds (dual attention in block 0, q/k
        RMS norm, a pre-only text stream in the last block), tiny widths."""
        return dict(
            sample_size=8,  # 64 px / the VAE's 8
            patch_size=2,
            in_channels=16,
            num_layers=2,  # real: 24 (Medium), 38 (Large)
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=64,  # T5 width (real: 4096)
            caption_projection_dim=16,  # = heads x head dim (real: 1536 / 2432)
            pooled_projection_dim=64,  # CLIP-L + CLIP-G projections (real: 768 + 1280)
            out_channels=16,
            pos_embed_max_size=16,  # up to 256 px (real: 384 / 192 patches)
            dual_attention_layers=(0,),  # real Medium: 0-12; Large: none
            qk_norm="rms_norm",
        )

    def tiny_vae_config(self) -> dict[str, Any]:
        """AutoencoderKL kwargs: SD 3's 16-channel latent space with its scale and shift."""
        return dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(16, 32, 32, 32),
            layers_per_block=1,
            latent_channels=16,
            norm_num_groups=4,
            sample_size=64,
            scaling_factor=1.5305,
            shift_factor=0.0609,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )

    def tiny_scheduler_config(self) -> dict[str, Any]:
        """FlowMatchEulerDiscreteScheduler as the SD 3 / 3.5 repos ship it (fixed shift 3.0)."""
        return dict(num_train_timesteps=1000, shift=3.0)

    def tiny_t5_config(self, vocab_size: int) -> dict[str, Any]:
        return dict(
            vocab_size=vocab_size,
            d_model=64,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            feed_forward_proj="gated-gelu",  # T5 v1.1 XXL (what SD 3 uses)
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )

    def build_tiny(self, seed: int = 0):
        """An in-memory tiny StableDiffusion3Pipeline with seeded random weights (CPU, fp32)."""
        import torch
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel

        from app.engine import tiny_text
        from app.engine.families.flux1 import tiny_t5_tokenizer

        tiny_text.quiet_libraries()
        tokenizers, clips = [], []
        with tempfile.TemporaryDirectory(prefix="tiny-tok-") as tok_dir:
            for i, enc in enumerate(self.tiny_text_encoders):
                folder = Path(tok_dir) / f"tokenizer_{i}"
                vocab = tiny_text.write_tokenizer(folder, pad_token=enc.pad)
                tokenizers.append(CLIPTokenizer.from_pretrained(folder))
        t5_tokenizer = tiny_t5_tokenizer(tiny_text.tokenizer_words())
        t5_tokenizer.model_max_length = TINY_MAX_SEQUENCE

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + 1)
            transformer = SD3Transformer2DModel(**self.tiny_transformer_config())
            torch.manual_seed(seed * 1000 + 2)
            vae = AutoencoderKL(**self.tiny_vae_config())
            for i, enc in enumerate(self.tiny_text_encoders):
                torch.manual_seed(seed * 1000 + 3 + i)
                config = tiny_text.text_config(
                    vocab, enc.width, projection=enc.projection, pad_token=enc.pad, act=enc.act
                )
                clips.append(CLIPTextModelWithProjection(CLIPTextConfig(**config)))
            torch.manual_seed(seed * 1000 + 5)
            t5 = T5EncoderModel(T5Config(**self.tiny_t5_config(len(t5_tokenizer))))
        for m in (transformer, vae, *clips, t5):
            m.eval()
        return self.pipeline_class()(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(**self.tiny_scheduler_config()),
            vae=vae,
            text_encoder=clips[0],
            tokenizer=tokenizers[0],
            text_encoder_2=clips[1],
            tokenizer_2=tokenizers[1],
            text_encoder_3=t5,
            tokenizer_3=t5_tokenizer,
        )


ENGINE = StableDiffusion3(
    Family.SD3,
    tiny_text_encoders=(
        TinyTextEncoder(width=32, projection=32),  # CLIP ViT-L (with projection, as SD 3 loads it)
        TinyTextEncoder(width=32, act="gelu", pad="!", projection=32),  # OpenCLIP ViT-bigG
    ),
)
