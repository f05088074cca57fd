"""Chroma (lodestones/Chroma1-HD, Chroma1-Base): FLUX.1 [schnell] pruned to 8.9 B parameters and
de-distilled. A ChromaTransformer2DModel denoiser keeps Flux's double- and single-stream blocks
but takes every block's modulation from one ``distilled_guidance_layer`` approximator (no
``norm1.linear`` / ``img_mod``), T5-XXL is the only text encoder (its padding masked out of
the joint attention), Flux's 16-channel VAE, flow matching with real classifier-free guidance.

Its LoRAs use Flux.1's layer names (kohya ``lora_unet_double_blocks_…``, diffusers
``transformer.transformer_blocks…``), so the name mapping is :mod:`app.engine.flux_keys`'s; the
approximator's own layers (BFL ``layers.N.in_layer`` = diffusers ``layers.N.linear_1``) are added here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.families import Family
from app.core.train_config import Targets
from app.engine.families.flux1 import Flux, tiny_t5_tokenizer

# LoRA targets inside the double- and single-stream blocks (Flux's, without its modulation layers).
_ATTENTION = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
)  # fmt: skip
_MLP = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out")
# The approximator's layers: BFL name -> diffusers name (diffusers'
# convert_chroma_transformer_checkpoint_to_diffusers renames them so).
_APPROXIMATOR = {"in_layer": "linear_1", "out_layer": "linear_2"}
_GUIDANCE = "distilled_guidance_layer"


@dataclass(frozen=True)
class Chroma(Flux):
    def pipeline_class(self):
        from diffusers import ChromaPipeline

        return ChromaPipeline

    @staticmethod
    def max_sequence(pipe: Any) -> int:
        """T5 length for prompts: the tokenizer's own limit (512 for the real model)."""
        return min(512, int(getattr(pipe.tokenizer, "model_max_length", 512)))

    def encode_prompts(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """captions -> {"embeds": T5 features (B, L, 4096), "mask": (B, L)}, exactly as
        ChromaPipeline encodes prompts (the mask keeps the tokens and the first padding token)."""
        embeds, _, mask, *_ = pipe.encode_prompt(
            prompt=captions,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence(pipe),
        )
        return {"embeds": embeds, "mask": mask}

    # ------------------------------------------------------------ training
    trainable_text_encoders = 0  # T5-XXL stays frozen (as sd-scripts and ai-toolkit train Chroma)

    def lora_target_names(self, denoiser: Any, targets: Targets) -> list[str]:
        """attention: q/k/v/out of both streams; attention_ff (and wider): + the MLPs (single
        blocks: the MLP input and the output). Chroma's blocks have no modulation layers."""
        import torch

        suffixes = _ATTENTION if targets is Targets.ATTENTION else _ATTENTION + _MLP
        return [
            name
            for name, module in denoiser.named_modules()
            if isinstance(module, torch.nn.Linear)
            and name.startswith(("transformer_blocks.", "single_transformer_blocks."))
            and name.split(".", 2)[2] in suffixes
        ]

    def encode_for_training(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        return self.encode_prompts(pipe, captions, device)

    def added_conditioning(
        self, encoded: dict[str, Any], time_ids: list[list[int]], device: Any, dtype: Any
    ) -> dict[str, Any]:
        """The text position ids (zeros, one row per T5 token, as ChromaPipeline makes them) and
        the text part of the attention mask (the image part depends on the latents: ``predict``)."""
        import torch

        length = encoded["embeds"].shape[1]
        return {"txt_ids": torch.zeros(length, 3, device=device, dtype=dtype), "text_mask": encoded["mask"].to(dtype)}

    def distilled(self, denoiser_config: Any) -> bool:
        return False  # Chroma1-HD and -Base are de-distilled: real CFG, no few-step variant here

    def single_file_problem(self, info: Any) -> str | None:
        return (
            "a Chroma single file; LoRA Loom does not load Chroma from single files yet: "
            "pick a diffusers folder of it or the Hub id lodestones/Chroma1-HD"
        )

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """Real classifier-free guidance: the negative prompt; T5 padded to the tokenizer's length."""
        return {"negative_prompt": negative or None, "max_sequence_length": self.max_sequence(pipe)}

    def sample_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        return self.call_kwargs(pipe, negative)

    def prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {"prompt_embeds": encoded["embeds"][None], "prompt_attention_mask": encoded["mask"][None]}

    def negative_prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        return {
            "negative_prompt_embeds": encoded["embeds"][None],
            "negative_prompt_attention_mask": encoded["mask"][None],
        }

    def adapter_names(self, part: Any, root: Any) -> dict[str, tuple[Any, ...]]:
        """Flux's kohya / BFL / ComfyUI names (``flux_keys``) plus the approximator's BFL names."""
        if not part.denoiser:
            return {}
        from app.engine import flux_keys
        from app.engine.layer_delta import Piece

        out = flux_keys.file_names(root)
        modules = dict(root.named_modules())
        for path, module in modules.items():
            head, _, last = path.rpartition(".")
            if not path.startswith(_GUIDANCE + ".") or not hasattr(module, "weight") or module.weight.ndim != 2:
                continue
            bfl = f"{head}.{next((b for b, d in _APPROXIMATOR.items() if d == last), last)}"
            pieces = (Piece(path, ((0, int(module.weight.shape[0])),)),)
            for name in ("lora_unet_" + bfl.replace(".", "_"), "diffusion_model." + bfl, bfl):
                out.setdefault(name, pieces)
        return out

    def predict(self, denoiser: Any, noisy: Any, timesteps: Any, cond: dict[str, Any], guidance: float) -> Any:
        """Pack the latents into 2x2 patch tokens, call the transformer as ChromaPipeline does
        (timestep as sigma; the text mask extended by the image tokens), unpack its velocity."""
        import torch
        from diffusers import ChromaPipeline

        b, c, h, w = noisy.shape
        tokens = ChromaPipeline._pack_latents(noisy, b, c, h, w)
        img_ids = ChromaPipeline._prepare_latent_image_ids(b, h // 2, w // 2, noisy.device, noisy.dtype)
        image_part = torch.ones(b, tokens.shape[1], device=noisy.device, dtype=torch.bool)
        out = denoiser(
            hidden_states=tokens,
            timestep=(timesteps.float() / 1000.0).to(noisy.dtype),
            encoder_hidden_states=cond["encoder_hidden_states"],
            txt_ids=cond["txt_ids"],
            img_ids=img_ids,
            attention_mask=torch.cat([cond["text_mask"], image_part], dim=1),
            return_dict=False,
        )[0]
        return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    def adapter_architecture(self, denoiser: Any, v_prediction: bool) -> str:
        return self.spec.architecture

    # ------------------------------------------------------------ tiny test model
    def tiny_transformer_config(self) -> dict[str, Any]:
        """ChromaTransformer2DModel kwargs: the real block kinds and approximator, tiny widths."""
        return dict(
            patch_size=1,
            in_channels=64,  # 16 latent channels packed 2x2, as in the real model
            num_layers=2,  # double-stream blocks (real: 19)
            num_single_layers=2,  # single-stream blocks (real: 38)
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=32,  # T5 width (real: 4096)
            axes_dims_rope=(2, 2, 4),  # sums to attention_head_dim
            approximator_num_channels=16,  # real: 64
            approximator_hidden_dim=32,  # real: 5120
            approximator_layers=2,  # real: 5
        )

    def tiny_scheduler_config(self) -> dict[str, Any]:
        """FlowMatchEulerDiscreteScheduler as the bundled Chroma1-HD config (resolution-dependent shift)."""
        return dict(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )

    def build_tiny(self, seed: int = 0):
        """An in-memory tiny ChromaPipeline with seeded random weights (CPU, fp32)."""
        import torch
        from diffusers import AutoencoderKL, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
        from transformers import T5Config, T5EncoderModel

        from app.engine import tiny_text

        tiny_text.quiet_libraries()
        tokenizer = tiny_t5_tokenizer(tiny_text.tokenizer_words())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + 1)
            transformer = ChromaTransformer2DModel(**self.tiny_transformer_config())
            torch.manual_seed(seed * 1000 + 2)
            vae = AutoencoderKL(**self.tiny_vae_config())
            torch.manual_seed(seed * 1000 + 4)
            t5 = T5EncoderModel(T5Config(**self.tiny_t5_config(len(tokenizer))))
        for m in (transformer, vae, t5):
            m.eval()
        return self.pipeline_class()(
            scheduler=FlowMatchEulerDiscreteScheduler(**self.tiny_scheduler_config()),
            vae=vae,
            text_encoder=t5,
            tokenizer=tokenizer,
            transformer=transformer,
        )


ENGINE = Chroma(Family.CHROMA, tiny_text_encoders=())
