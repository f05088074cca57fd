"""Flux.1 ([dev] and [schnell]): a FluxTransformer2DModel denoiser (double- and single-stream
blocks, joint attention over T5 text and image tokens), CLIP ViT-L for the pooled text vector,
T5-XXL for the token features, a 16-channel VAE with a shift and scale, flow matching.

The tiny test model keeps every component class and module name of the real one at widths
that render 64x64 on a CPU in a fraction of a second; both tokenizers are built here offline.
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

#: T5 token features a prompt is padded to. The real pipeline uses 512 ([dev]) / 256
#: ([schnell]); the tiny model uses fewer so that its renders stay cheap.
TINY_MAX_SEQUENCE = 32

_T5_SPECIAL = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in the real T5 vocabulary
_SPIECE = "\u2581"  # sentencepiece's word-start marker

# LoRA targets inside the double- (``transformer_blocks.N.``) and single-stream
# (``single_transformer_blocks.N.``) blocks.
_FLUX_ATTENTION = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
)  # fmt: skip
_FLUX_MLP = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out")
_FLUX_MODULATION = ("norm1.linear", "norm1_context.linear", "norm.linear")


@dataclass(frozen=True)
class Flux(FlowMatchingTransformer):
    def pipeline_class(self):
        from diffusers import FluxPipeline

        return FluxPipeline

    def encode_prompts(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """captions -> {"embeds": T5 features (B, L, 4096), "pooled": CLIP pooled (B, 768),
        "text_ids": (L, 3)}, exactly as FluxPipeline encodes prompts."""
        embeds, pooled, text_ids = pipe.encode_prompt(
            prompt=captions,
            prompt_2=None,
            device=device,
            num_images_per_prompt=1,
            max_sequence_length=self.max_sequence(pipe),
        )
        return {"embeds": embeds, "pooled": pooled, "text_ids": text_ids}

    @staticmethod
    def max_sequence(pipe: Any) -> int:
        """T5 length for prompts: the tokenizer's own limit (512 for the real model)."""
        return min(512, int(getattr(pipe.tokenizer_2, "model_max_length", 512)))

    # ------------------------------------------------------------ training
    trainable_text_encoders = 1  # CLIP-L only; T5-XXL stays frozen (as sd-scripts and ai-toolkit)
    dora_training = False  # q/k/v are saved fused, as sd-scripts writes them

    def lora_target_names(self, denoiser: Any, targets: Targets) -> list[str]:
        """attention: q/k/v/out of both streams; attention_ff: + the MLPs (single blocks: the fused
        MLP input and the output); all_linear (or locon): + the blocks' modulation layers."""
        import torch

        suffixes = _FLUX_ATTENTION
        if targets is not Targets.ATTENTION:
            suffixes += _FLUX_MLP
        if targets in (Targets.ALL_LINEAR, Targets.LOCON):
            suffixes += _FLUX_MODULATION
        return [
            name
            for name, module in denoiser.named_modules()
            if isinstance(module, torch.nn.Linear)
            and name.startswith(("transformer_blocks.", "single_transformer_blocks."))
            and name.split(".", 2)[2] in suffixes
        ]

    def encode_for_training(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        encoded = self.encode_prompts(pipe, captions, device)
        encoded.pop("text_ids")  # one (L, 3) table of zeros for any batch: rebuilt from the length
        return encoded

    def added_conditioning(
        self, encoded: dict[str, Any], time_ids: list[list[int]], device: Any, dtype: Any
    ) -> dict[str, Any]:
        """The transformer's other inputs beside the T5 features: the pooled CLIP vector and
        the text position ids (image ids and guidance depend on the latents; the caller adds them)."""
        import torch

        text_ids = encoded.get("text_ids")
        if text_ids is None:  # FluxPipeline's text ids are zeros, one row per T5 token
            text_ids = torch.zeros(encoded["embeds"].shape[1], 3, device=device, dtype=dtype)
        return {"pooled_projections": encoded["pooled"].to(dtype), "txt_ids": text_ids}

    def distilled(self, denoiser_config: Any) -> bool:
        """[schnell]'s transformer has no guidance embedding; [dev]'s has."""
        return not denoiser_config.get("guidance_embeds", True)

    def single_file_problem(self, info: Any) -> str | None:
        """Flux single files load (``load_files``): a transformer file with its companions, or an
        all-in-one checkpoint."""
        return None

    def companion_problem(self, choice: Any, info: Any) -> str | None:
        """A transformer file alone needs its CLIP-L, T5 and VAE files (named in the sentence)."""
        from app.engine import flux_files

        return flux_files.companion_problem(choice, info)

    def load_files(self, choice: Any, info: Any, dtype: Any) -> Any:
        """FluxPipeline from ComfyUI/Forge's files (:mod:`app.engine.flux_files`)."""
        from app.engine import flux_files

        return flux_files.load_pipeline(choice, info, dtype)

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """No negative prompt (guidance is distilled, not CFG); T5 padded to the tokenizer's length."""
        return {"max_sequence_length": self.max_sequence(pipe)}

    def adapter_names(self, part: Any, root: Any) -> dict[str, tuple[Any, ...]]:
        """kohya, BFL/ComfyUI and XLabs names of the transformer's layers, fused q/k/v included;
        for T5-XXL (``text_encoder_2``) sd-scripts' ``lora_te3_`` and ComfyUI's ``text_encoders.t5xxl.``."""
        from app.engine import flux_keys

        if part.denoiser:
            return flux_keys.file_names(root)
        if part.value != "text_encoder_2":
            return {}
        return flux_keys.t5_names(root)

    def kohya_places(self, part: Any, root: Any) -> dict[str, Any]:
        """sd-scripts' Flux names (BFL's layers, q/k/v fused) for the transformer's layers."""
        if not part.denoiser:
            return {}
        from app.engine import flux_keys

        return flux_keys.kohya_places(root)

    def predict(self, denoiser: Any, noisy: Any, timesteps: Any, cond: dict[str, Any], guidance: float) -> Any:
        """Pack the latents into 2x2 patch tokens, call the transformer as FluxPipeline does
        (timestep as sigma, [dev]'s guidance input), unpack its velocity."""
        import torch
        from diffusers import FluxPipeline

        b, c, h, w = noisy.shape
        tokens = FluxPipeline._pack_latents(noisy, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, noisy.device, noisy.dtype)
        guidance_input = None
        if denoiser.config.guidance_embeds:  # [dev]; [schnell] has none
            guidance_input = torch.full((b,), float(guidance), device=noisy.device, dtype=noisy.dtype)
        out = denoiser(
            hidden_states=tokens,
            timestep=(timesteps.float() / 1000.0).to(noisy.dtype),
            guidance=guidance_input,
            pooled_projections=cond["pooled_projections"],
            encoder_hidden_states=cond["encoder_hidden_states"],
            txt_ids=cond["txt_ids"],
            img_ids=img_ids,
            return_dict=False,
        )[0]
        return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    def kohya_layout(self, denoiser: Any, module_paths: list[str]) -> dict[str, tuple[str, ...]]:
        """kohya sd-scripts' Flux names (what ComfyUI and Forge load): BFL's module names, with
        q/k/v (and a single block's MLP input) fused into one layer as in BFL's model
        (``app.engine.flux_keys``); a fused layer lists all its modules in row order, trained
        or not (an untrained one gets zero rows)."""
        from app.engine import flux_keys

        places = flux_keys.kohya_places(denoiser)
        rows: dict[str, list[tuple[int, str]]] = {}
        for path, place in places.items():
            rows.setdefault(place.name, []).append((place.rows[0][0], path))
        names = dict.fromkeys(places[p].name for p in module_paths)
        return {name.removeprefix("lora_unet_"): tuple(p for _, p in sorted(rows[name])) for name in names}

    def adapter_architecture(self, denoiser: Any, v_prediction: bool) -> str:
        """[schnell] has no guidance input: its adapters say flux-1-schnell/lora."""
        if getattr(denoiser.config, "guidance_embeds", True):
            return self.spec.architecture
        return "flux-1-schnell/lora"

    def sample_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        return {"max_sequence_length": self.max_sequence(pipe)}  # or the tiny model pads to 512

    def prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {"prompt_embeds": encoded["embeds"][None], "pooled_prompt_embeds": encoded["pooled"][None]}

    # ------------------------------------------------------------ tiny test model
    def tiny_transformer_config(self) -> dict[str, Any]:
        """FluxTransformer2DModel kwargs: the real block kinds, tiny widths."""
        return dict(
            patch_size=1,
            in_channels=64,  # 16 latent channels packed 2x2, as in the real model
            num_layers=2,  # double-stream blocks (real: 19)
            num_single_layers=2,  # single-stream blocks (real: 38)
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=32,  # T5 width (real: 4096)
            pooled_projection_dim=32,  # CLIP width (real: 768)
            guidance_embeds=True,  # [dev]: distilled guidance is an input
            axes_dims_rope=(2, 2, 4),  # sums to attention_head_dim
        )

    def tiny_vae_config(self) -> dict[str, Any]:
        """AutoencoderKL kwargs: Flux's 16-channel latent space with its scale and shift."""
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
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )

    def tiny_scheduler_config(self) -> dict[str, Any]:
        """FlowMatchEulerDiscreteScheduler as FLUX.1-dev ships it (resolution-dependent shift)."""
        return dict(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )

    def tiny_t5_config(self, vocab_size: int) -> dict[str, Any]:
        return dict(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            feed_forward_proj="gated-gelu",  # T5 v1.1 (what Flux uses)
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )

    def build_tiny(self, seed: int = 0):
        """An in-memory tiny FluxPipeline with seeded random weights (CPU, fp32)."""
        import torch
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

        from app.engine import tiny_text

        tiny_text.quiet_libraries()
        with tempfile.TemporaryDirectory(prefix="tiny-tok-") as tok_dir:
            clip_vocab = tiny_text.write_tokenizer(Path(tok_dir) / "tokenizer")
            clip_tokenizer = CLIPTokenizer.from_pretrained(Path(tok_dir) / "tokenizer")
        t5_tokenizer = tiny_t5_tokenizer(tiny_text.tokenizer_words())

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + 1)
            transformer = FluxTransformer2DModel(**self.tiny_transformer_config())
            torch.manual_seed(seed * 1000 + 2)
            vae = AutoencoderKL(**self.tiny_vae_config())
            torch.manual_seed(seed * 1000 + 3)
            clip = CLIPTextModel(CLIPTextConfig(**tiny_text.text_config(clip_vocab, self.tiny_text_encoders[0].width)))
            torch.manual_seed(seed * 1000 + 4)
            t5 = T5EncoderModel(T5Config(**self.tiny_t5_config(len(t5_tokenizer))))
        for m in (transformer, vae, clip, t5):
            m.eval()
        return self.pipeline_class()(
            scheduler=FlowMatchEulerDiscreteScheduler(**self.tiny_scheduler_config()),
            vae=vae,
            text_encoder=clip,
            tokenizer=clip_tokenizer,
            text_encoder_2=t5,
            tokenizer_2=t5_tokenizer,
            transformer=transformer,
        )


def tiny_t5_tokenizer(words: list[str]):
    """A T5TokenizerFast (sentencepiece-style unigram) over ``words`` plus single characters,
    so any prompt tokenizes; built offline, saved as the ``tokenizer.json`` real repos ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    pieces = [(s, 0.0) for s in _T5_SPECIAL] + [(_SPIECE + w, -1.0) for w in dict.fromkeys(words)]
    pieces += [(_SPIECE, -2.0)] + [(c, -5.0) for c in chars]
    model = Tokenizer(models.Unigram(pieces, unk_id=_T5_SPECIAL.index("<unk>"), byte_fallback=False))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPIECE, prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement=_SPIECE, prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=model,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=TINY_MAX_SEQUENCE,
    )


ENGINE = Flux(Family.FLUX1, tiny_text_encoders=(TinyTextEncoder(width=32),))
