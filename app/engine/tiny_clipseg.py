"""A tiny offline stand-in for CLIPSeg (``CIDAS/clipseg-rd64-refined``): the real architecture
(``CLIPSegForImageSegmentation``, a CLIP text and vision tower and the FiLM decoder) with random
weights, a word-level CLIP tokenizer and the ViT image processor, saved with ``save_pretrained``
so it loads through the same code as the real model. About 300 kB; used by the tests.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a", "the", "person", "cat", "dog", "subject", "red", "square", "on", "beach")


def write_tiny_clipseg(out: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, CLIPTokenizerFast
    from transformers.models.vit import ViTImageProcessor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = ["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters] + [w + "</w>" for w in WORDS]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tokenizer = CLIPTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
    )
    config = CLIPSegConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=16,
        reduce_dim=16,
        extract_layers=[1],
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        conditional_layer=0,
    )
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(config).eval()
    image_processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    model.save_pretrained(out)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out
