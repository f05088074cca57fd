"""Z-Image (Tongyi-MAI's Z-Image and Z-Image-Turbo): a single-stream S3-DiT denoiser
(``ZImageTransformer2DModel``: ``noise_refiner`` / ``context_refiner`` blocks, then ``layers.N``
over the joint sequence of image and caption tokens), Qwen3-4B as the text encoder (its
second-to-last hidden state, padding dropped), the Flux 16-channel VAE, flow matching with a
fixed shift (Turbo 3, the base 6).

The transformer takes lists (one latent and one caption of its own length per picture), its time
input is ``1 - sigma`` and its output the negative velocity: :meth:`ZImage.predict` calls it as
``ZImagePipeline`` does. The tiny test model keeps every component class and module name; its
Qwen2 byte-level BPE tokenizer (with the Qwen3 chat template the pipeline applies) is built here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.core.families import Family
from app.core.train_config import Targets
from app.engine.families.flow import FlowMatchingTransformer
from app.engine.layer_delta import Piece

#: Qwen3 features a prompt is padded to: the pipeline's 512, or the tokenizer's smaller limit
#: (the tiny model's, so that its renders stay cheap).
MAX_SEQUENCE = 512
TINY_MAX_SEQUENCE = 64

# Qwen's special tokens (ids after the BPE vocabulary, as in the real one) and the part of the
# Qwen3 chat template that ZImagePipeline uses (one user turn, generation prompt, thinking on).
_QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)

# LoRA targets inside each block (``layers.N.``, ``noise_refiner.N.``, ``context_refiner.N.``).
_ATTENTION = ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0")
_MLP = ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
_MODULATION = ("adaLN_modulation.0",)

# The original code's (and ComfyUI's) names where diffusers' differ: q/k/v fused into one
# ``attention.qkv``, ``attention.out``, and the one patch size's embedder and final layer.
_ORIGINAL_GLOBAL = {
    "x_embedder": "all_x_embedder.2-1",
    "final_layer.linear": "all_final_layer.2-1.linear",
    "final_layer.adaLN_modulation.1": "all_final_layer.2-1.adaLN_modulation.1",
}
_BLOCK_ROOTS = ("layers", "noise_refiner", "context_refiner")


@dataclass(frozen=True)
class ZImage(FlowMatchingTransformer):
    def pipeline_class(self):
        from diffusers import ZImagePipeline

        return ZImagePipeline

    @staticmethod
    def max_sequence(pipe: Any) -> int:
        return min(MAX_SEQUENCE, int(getattr(pipe.tokenizer, "model_max_length", MAX_SEQUENCE)))

    def encode_prompts(self, pipe: Any, captions: list[str], device: Any) -> dict[str, Any]:
        """captions -> {"embeds": (B, L, 2560) Qwen3 features padded with zeros to the pipeline's
        length L, "mask": (B, L) 1 for a real token}: ``ZImagePipeline.encode_prompt``'s
        per-caption features (chat template, second-to-last hidden state, padding dropped)."""
        import torch

        length = self.max_sequence(pipe)
        feats, _ = pipe.encode_prompt(
            list(captions), device=device, do_classifier_free_guidance=False, max_sequence_length=length
        )
        embeds = torch.zeros(len(feats), length, feats[0].shape[-1], device=feats[0].device, dtype=feats[0].dtype)
        mask = torch.zeros(len(feats), length, device=feats[0].device, dtype=feats[0].dtype)
        for i, f in enumerate(feats):
            embeds[i, : f.shape[0]] = f
            mask[i, : f.shape[0]] = 1
        return {"embeds": embeds, "mask": mask}

    def added_conditioning(
        self, encoded: dict[str, Any], time_ids: list[list[int]], device: Any, dtype: Any
    ) -> dict[str, Any]:
        """How many of each caption's features are real (the rest is padding)."""
        return {"caption_lengths": encoded["mask"].sum(dim=-1).round().long().tolist()}

    def model_distilled(self, denoiser_config: Any, scheduler_config: Any) -> bool:
        """Z-Image-Turbo's transformer config equals the base's; its scheduler does not: Turbo
        ships shift 3.0, Z-Image 6.0 (both fixed, no resolution-dependent shift)."""
        if not scheduler_config:
            return False
        return float(scheduler_config.get("shift", 6.0)) < 4.5

    def call_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        """The base's negative prompt (real CFG; Turbo renders at guidance 0, which skips it);
        Qwen3 padded to the pipeline's length (or the tiny tokenizer's)."""
        return {"negative_prompt": negative or None, "max_sequence_length": self.max_sequence(pipe)}

    def sample_kwargs(self, pipe: Any, negative: str) -> dict[str, Any]:
        if getattr(pipe, "text_encoder", None) is None:  # cached prompts: prompt_kwargs has both
            return {"max_sequence_length": self.max_sequence(pipe)}
        return self.call_kwargs(pipe, negative)

    def prompt_kwargs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        """A cached caption as the pipeline's list of per-prompt features (padding dropped); the
        unconditional side (for CFG) is the same features' empty-prompt stand-in: none cached
        here, so a sample render with CFG uses the prompt's own (guidance then has no effect)."""
        feats = encoded["embeds"][encoded["mask"] > 0.5]
        return {"prompt_embeds": [feats], "negative_prompt_embeds": [feats]}

    def adapter_names(self, part: Any, root: Any) -> dict[str, tuple[Any, ...]]:
        """kohya/musubi (``lora_unet_`` + the diffusers path with ``_``), ComfyUI
        (``diffusion_model.`` + diffusers or original paths) and the original code's names,
        its fused ``attention.qkv`` included."""
        if not part.denoiser:
            return {}
        return file_names(root)

    # ------------------------------------------------------------ training
    dora_training = False  # musubi/ComfyUI files carry no per-layer magnitude for a fused qkv

    def lora_target_names(self, denoiser: Any, targets: Targets) -> list[str]:
        """attention: q/k/v/out of the main ``layers``; attention_ff: + their SwiGLU MLPs (what
        musubi-tuner trains: it leaves out the refiners and modulation); all_linear (or locon):
        + the refiner blocks and every block's adaLN modulation."""
        import torch

        suffixes = _ATTENTION if targets is Targets.ATTENTION else _ATTENTION + _MLP
        roots: tuple[str, ...] = ("layers.",)
        if targets in (Targets.ALL_LINEAR, Targets.LOCON):
            suffixes += _MODULATION
            roots = tuple(r + "." for r in _BLOCK_ROOTS)
        return [
            name
            for name, module in denoiser.named_modules()
            if isinstance(module, torch.nn.Linear) and name.startswith(roots) and name.split(".", 2)[2] in suffixes
        ]

    def predict(self, denoiser: Any, noisy: Any, timesteps: Any, cond: dict[str, Any], guidance: float) -> Any:
        """As ZImagePipeline calls the transformer: one (C, 1, H, W) latent and one caption (its
        real tokens) per picture, time ``1 - sigma``; its output is minus the velocity."""
        import torch

        feats = cond["encoder_hidden_states"]
        lengths = cond.get("caption_lengths") or [feats.shape[1]] * feats.shape[0]
        out = denoiser(
            list(noisy.unsqueeze(2).unbind(0)),
            ((1000.0 - timesteps.float()) / 1000.0).to(noisy.dtype),
            [feats[i, :n] for i, n in enumerate(lengths)],
            return_dict=False,
        )[0]
        return -torch.stack(out).squeeze(2)

    # ------------------------------------------------------------ tiny test model
    def tiny_transformer_config(self) -> dict[str, Any]:
        """ZImageTransformer2DModel kwargs: the real block kinds and patch size, tiny widths."""
        return dict(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=32,  # real: 3840
            n_layers=2,  # real: 30
            n_refiner_layers=1,  # real: 2
            n_heads=2,
            n_kv_heads=2,
            qk_norm=True,
            cap_feat_dim=32,  # the tiny Qwen3's width (real: 2560)
            axes_dims=[4, 6, 6],  # sums to the head width 16 (real: 32, 48, 48)
            axes_lens=[256, 64, 64],
        )

    def tiny_scheduler_config(self) -> dict[str, Any]:
        """FlowMatchEulerDiscreteScheduler as Z-Image-Turbo ships it (a fixed shift of 3)."""
        return dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)

    def tiny_qwen3_config(self, vocab_size: int, pad_id: int) -> dict[str, Any]:
        return dict(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,  # the pipeline reads the second-to-last hidden state
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=256,
            rms_norm_eps=1e-6,
            rope_theta=1_000_000.0,
            tie_word_embeddings=True,
            pad_token_id=pad_id,
        )

    def build_tiny(self, seed: int = 0):
        """An in-memory tiny ZImagePipeline with seeded random weights (CPU, fp32)."""
        import torch
        from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
        from transformers import Qwen3Config, Qwen3Model

        from app.engine import tiny_text
        from app.engine.families.flux1 import ENGINE as FLUX

        tiny_text.quiet_libraries()
        tokenizer = tiny_qwen_tokenizer(tiny_text.tokenizer_words())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + 1)
            transformer = ZImageTransformer2DModel(**self.tiny_transformer_config())
            torch.manual_seed(seed * 1000 + 2)
            vae = AutoencoderKL(**FLUX.tiny_vae_config())  # the Flux VAE's 16 channels, scale and shift
            torch.manual_seed(seed * 1000 + 3)
            text_encoder = Qwen3Model(Qwen3Config(**self.tiny_qwen3_config(len(tokenizer), tokenizer.pad_token_id)))
        for m in (transformer, vae, text_encoder):
            m.eval()
        return self.pipeline_class()(
            scheduler=FlowMatchEulerDiscreteScheduler(**self.tiny_scheduler_config()),
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
        )


def file_names(transformer: Any) -> dict[str, tuple[Piece, ...]]:
    """Every module key other tools' Z-Image files use for this transformer -> its pieces (row
    ranges of the file layer's ΔW; several for the fused q/k/v)."""
    import torch

    modules = dict(transformer.named_modules())

    def whole(path: str) -> tuple[Piece, ...]:
        return (Piece(path, ((0, int(modules[path].weight.shape[0])),)),)

    original: dict[str, tuple[Piece, ...]] = {}
    for path, module in modules.items():
        if isinstance(module, torch.nn.Linear):
            original[path] = whole(path)  # diffusers' name, which ComfyUI and musubi also read
    for name, path in _ORIGINAL_GLOBAL.items():
        if path in modules:
            original[name] = whole(path)
    for root in _BLOCK_ROOTS:
        for i in range(len(getattr(transformer, root, None) or ())):
            block = f"{root}.{i}.attention"
            paths = [f"{block}.to_q", f"{block}.to_k", f"{block}.to_v"]
            start, pieces = 0, []
            for p in paths:
                n = int(modules[p].weight.shape[0])
                pieces.append(Piece(p, ((start, start + n),)))
                start += n
            original[f"{block}.qkv"] = tuple(pieces)
            original[f"{block}.out"] = whole(f"{block}.to_out.0")
    out: dict[str, tuple[Piece, ...]] = {}
    for name, pieces in original.items():
        out["lora_unet_" + name.replace(".", "_")] = pieces  # musubi-tuner / kohya
        out["diffusion_model." + name] = pieces  # ComfyUI
        out.setdefault(name, pieces)  # the original code's bare names
    return out


def tiny_qwen_tokenizer(words: list[str]):
    """A Qwen2Tokenizer (byte-level BPE over ``words``, Qwen's special tokens after the vocabulary,
    the chat template the pipeline applies), built offline; any text tokenizes (all 256 bytes
    are in the vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=256 + 2 * len(words),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([" ".join(words)] * 4 + words, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=TINY_MAX_SEQUENCE,
    )
    tok.add_special_tokens({"additional_special_tokens": list(_QWEN_SPECIAL)})
    tok.chat_template = _CHAT_TEMPLATE
    return tok


ENGINE = ZImage(Family.ZIMAGE, tiny_text_encoders=())
