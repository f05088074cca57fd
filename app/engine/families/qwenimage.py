"""Qwen-Image: a QwenImageTransformer2DModel denoiser (60 dual-stream MMDiT blocks with image and
text streams, ``transformer_blocks.N.{img,txt}_{mod,mlp}``), Qwen2.5-VL-7B as the text encoder
(the last hidden layer of its language model over a prompt template, the template's 34 tokens
dropped), a 16-channel Wan-style VAE with a frames axis and per-channel latent mean / std, flow
matching with a resolution-dependent shift and real classifier-free guidance (``true_cfg_scale``).

Qwen-Image's original code is diffusers itself, so kohya / musubi-tuner (``lora_unet_…``) and
ComfyUI (``diffusion_model.…``) files name the transformer's layers by diffusers' own paths.

The tiny test model keeps every component class and module name of the real one (a tiny
Qwen2.5-VL, vision tower included but never run, and a byte-level BPE ``Qwen2Tokenizer`` built
here offline, that splits the prompt template's prefix into the same 34 tokens as the real one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.families import Family
from app.core.train_config import Targets
from app.engine.families.flow import FlowMatchingTransformer

#: Text tokens a prompt may keep (the pipeline's max_sequence_length default; 1024 at most).
MAX_SEQUENCE = 512
#: The tiny tokenizer's model_max_length (the real one's: 131072): the tiny model's prompts and
#: cached captions stay short.
TINY_MAX_SEQUENCE = 128
#: The real tokenizer's special tokens (ids 151643-151645 there).
_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# LoRA targets inside the blocks (``transformer_blocks.N.``): the joint attention of both
# streams, the two MLPs, the two modulation layers.
_ATTENTION = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
)  # fmt: skip
_MLP = ("img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2")
_MODULATION = ("img_mod.1", "txt_mod.1")


@dataclass(frozen=True)
class QwenImage(FlowMatchingTransformer):
    dora_training = True  # diffusers names, nothing fused: DoRA's magnitude has its place

    def pipeline_class(self):
        from diffusers import QwenImagePipeline

        return QwenImagePipeline

    @staticmethod
    def max_sequence(pipe: Any) -> int:
        """Text tokens kept: the pipeline's 512, or the tokenizer's own limit when lower (tiny)."""
        return min(MAX_SEQUENCE, int(getattr(pipe.tokenizer, "model_max_length", MAX_SEQUENCE)))

    def encode_prompts(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """captions -> {"embeds": (B, L, 3584) Qwen2.5-VL features, "mask": (B, L) 1 for a real
        token}, exactly as QwenImagePipeline encodes prompts (its mask is None when no caption is
        padded: then all ones)."""
        import torch

        embeds, mask = pipe.encode_prompt(
            prompt=captions, device=device, num_images_per_prompt=1, max_sequence_length=self.max_sequence(pipe)
        )
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return {"embeds": embeds, "mask": mask}

    def encode_for_training(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """Each caption padded (zeros, mask 0) to the kept length, so that cached captions stack;
        ``added_conditioning`` cuts a batch back to its longest caption."""
        import torch

        encoded = self.encode_prompts(pipe, captions, device)
        embeds, mask = encoded["embeds"], encoded["mask"]
        pad = self.max_sequence(pipe) - embeds.shape[1]
        if pad > 0:
            embeds = torch.cat([embeds, embeds.new_zeros(embeds.shape[0], pad, embeds.shape[2])], dim=1)
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], dim=1)
        return {"embeds": embeds, "mask": mask}

    def added_conditioning(
        self, encoded: dict[str, Any], time_ids: list[list[int]], device: Any, dtype: Any
    ) -> dict[str, Any]:
        """The text mask beside the features, both cut to the batch's longest caption (padding
        past it is masked out anyway: the transformer's text positions start at 0)."""
        mask = encoded["mask"].to(device)
        keep = max(int(mask.sum(dim=1).max().item()), 1)
        return {
            "encoder_hidden_states": encoded["embeds"][:, :keep].to(device, dtype),
            "encoder_hidden_states_mask": mask[:, :keep],
        }

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """A negative prompt always (" " when empty, as Qwen's own example: the pipeline runs CFG
        only with one), prompts kept to the tokenizer's length."""
        return {"negative_prompt": negative or " ", "max_sequence_length": self.max_sequence(pipe)}

    def guidance_kwargs(self, guidance: float) -> dict[str, Any]:
        """Real CFG is ``true_cfg_scale``; ``guidance_scale`` is for guidance-distilled models only."""
        return {"true_cfg_scale": guidance}

    def sample_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """A training sample: with the text encoder released there is no negative to encode,
        so CFG is off (the prompt's cached encoding alone)."""
        if getattr(pipe, "text_encoder", None) is None:
            return {"max_sequence_length": self.max_sequence(pipe)}
        return self.call_kwargs(pipe, negative)

    def prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        keep = max(int(encoded["mask"].sum().item()), 1)
        return {"prompt_embeds": encoded["embeds"][None, :keep], "prompt_embeds_mask": encoded["mask"][None, :keep]}

    def adapter_names(self, part: Any, root: Any) -> dict[str, tuple[Any, ...]]:
        """kohya / musubi-tuner (``lora_unet_`` + the diffusers path with "_") and ComfyUI
        (``diffusion_model.`` + the diffusers path) names of the transformer's layers: Qwen-Image's
        original module names are diffusers' own, nothing fused."""
        if not part.denoiser:
            return {}
        import torch

        from app.engine.layer_delta import Piece

        out: dict[str, tuple[Any, ...]] = {}
        for path, module in root.named_modules():
            if (
                isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm))
                and getattr(module, "weight", None) is not None
            ):
                piece = (Piece(path, ((0, int(module.weight.shape[0])),)),)
                out["lora_unet_" + path.replace(".", "_")] = piece
                out["diffusion_model." + path] = piece
        return out

    # ------------------------------------------------------------ latents
    def vae_latents(self, vae: Any, pixels: Any) -> tuple[Any, Any]:
        """The VAE takes (B, C, frames, H, W): one frame in, the frames axis dropped out."""
        dist = vae.encode(pixels[:, :, None]).latent_dist
        return dist.mean[:, :, 0], dist.std[:, :, 0]

    def scale_latents(self, vae_config: Any, latents: Any) -> Any:
        """(latents - mean) / std per channel, the inverse of what the pipeline does before decoding."""
        import torch

        view = (1, -1) + (1,) * (latents.dim() - 2) if latents.dim() == 4 else (-1, 1, 1)
        mean = torch.tensor(vae_config.latents_mean, dtype=latents.dtype, device=latents.device).view(*view)
        std = torch.tensor(vae_config.latents_std, dtype=latents.dtype, device=latents.device).view(*view)
        return (latents - mean) / std

    def latent_channels(self, vae_config: Any) -> int:
        return int(vae_config.z_dim)

    # ------------------------------------------------------------ training
    def lora_target_names(self, denoiser: Any, targets: Targets) -> list[str]:
        """attention: q/k/v/out of both streams; attention_ff: + both MLPs; all_linear (or locon):
        + the blocks' modulation layers."""
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

    def predict(self, denoiser: Any, noisy: Any, timesteps: Any, cond: dict[str, Any], guidance: float) -> Any:
        """Pack the latents into 2x2 patch tokens, call the transformer as QwenImagePipeline does
        (timestep as sigma, one frame of h/2 x w/2 patches), unpack its velocity."""
        from diffusers import QwenImagePipeline

        b, c, h, w = noisy.shape
        out = denoiser(
            hidden_states=QwenImagePipeline._pack_latents(noisy, b, c, h, w),
            timestep=(timesteps.float() / 1000.0).to(noisy.dtype),
            encoder_hidden_states=cond["encoder_hidden_states"],
            encoder_hidden_states_mask=cond.get("encoder_hidden_states_mask"),
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0]
        return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    def adapter_architecture(self, denoiser: Any, v_prediction: bool) -> str:
        return self.spec.architecture

    # ------------------------------------------------------------ tiny test model
    def tiny_transformer_config(self) -> dict[str, Any]:
        """QwenImageTransformer2DModel kwargs: the real block kind, tiny widths."""
        return dict(
            patch_size=2,
            in_channels=64,  # 16 latent channels packed 2x2, as in the real model
            out_channels=16,
            num_layers=2,  # real: 60
            attention_head_dim=16,  # real: 128
            num_attention_heads=2,  # real: 24
            joint_attention_dim=32,  # the tiny Qwen2.5-VL width (real: 3584)
            guidance_embeds=False,
            axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim (real: 16, 56, 56)
        )

    def tiny_vae_config(self) -> dict[str, Any]:
        """AutoencoderKLQwenImage kwargs: the real 16-channel latent space (its mean / std), three
        spatial downsamplings (8x) as the real one, tiny widths."""
        return dict(
            base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True]
        )

    def tiny_scheduler_config(self) -> dict[str, Any]:
        """FlowMatchEulerDiscreteScheduler as Qwen/Qwen-Image ships it: exponential time shift,
        resolution-dependent between 256 and 8192 image tokens, terminal sigma 0.02."""
        return dict(
            num_train_timesteps=1000,
            shift=1.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=0.9,
            base_image_seq_len=256,
            max_image_seq_len=8192,
            shift_terminal=0.02,
            time_shift_type="exponential",
        )

    def tiny_text_config(self, tokenizer: Any) -> dict[str, Any]:
        """Qwen2_5_VLConfig kwargs: a 2-layer language model 32 wide (real: 28 layers, 3584) and
        a 1-block vision tower (present as in the real class; prompts never reach it)."""
        vocab_size = len(tokenizer)
        text = dict(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3]},  # sums to head_dim / 2
            rope_theta=1000000.0,
            max_position_embeddings=256,
        )
        vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32)
        ids = dict(bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tokenizer.eos_token_id)
        text.update(ids, pad_token_id=tokenizer.pad_token_id)
        return dict(text_config=text, vision_config=vision, vocab_size=vocab_size, **ids)

    def build_tiny(self, seed: int = 0):
        """An in-memory tiny QwenImagePipeline with seeded random weights (CPU, fp32)."""
        import torch
        from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        from app.engine import tiny_text

        tiny_text.quiet_libraries()
        tokenizer = tiny_qwen_tokenizer(tiny_text.tokenizer_words())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + 1)
            transformer = QwenImageTransformer2DModel(**self.tiny_transformer_config())
            torch.manual_seed(seed * 1000 + 2)
            vae = AutoencoderKLQwenImage(**self.tiny_vae_config())
            torch.manual_seed(seed * 1000 + 3)
            text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**self.tiny_text_config(tokenizer)))
        for m in (transformer, vae, text_encoder):
            m.eval()
        return self.pipeline_class()(
            scheduler=FlowMatchEulerDiscreteScheduler(**self.tiny_scheduler_config()),
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
        )


#: The prompt template's system part (QwenImagePipeline.prompt_template_encode): its words are
#: whole tokens of the tiny vocabulary, so that its prefix is 34 tokens as in the real one.
_TEMPLATE_WORDS = (
    "system user assistant Describe the image by detailing the color, shape, size, texture, quantity, "
    "text, spatial relationships of the objects and background:"
)


def tiny_qwen_tokenizer(words: list[str]):
    """A byte-level BPE ``Qwen2Tokenizer`` (as Qwen's: any text tokenizes, the three special
    tokens are whole) trained here offline on ``words`` and the prompt template's words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=list(_SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = " ".join(dict.fromkeys(words)) + " " + _TEMPLATE_WORDS
    model.train_from_iterator([text, text.replace(" ", "\n")] * 4, trainer)
    return Qwen2Tokenizer(
        tokenizer_object=model,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=TINY_MAX_SEQUENCE,
    )


ENGINE = QwenImage(Family.QWENIMAGE, tiny_text_encoders=())
