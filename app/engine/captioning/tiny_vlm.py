"""A tiny offline stand-in for the vision-language captioner, in the real model's layout.

- :func:`write_tiny_llava`: a random ``LlavaForConditionalGeneration`` (CLIP vision tower +
  Llama text model), the architecture of ``fancyfeast/llama-joycaption-beta-one-hf-llava``,
  with a Llama-3-style chat template.

No Qwen2.5-VL stand-in: its processor needs a video processor, which needs torchvision
(not a dependency here); the backend loads Qwen2.5-VL where torchvision is installed.

It gets a small byte-level BPE tokenizer built here (letters and a few whole words, so
even random weights write words a test can ban) and is saved with ``save_pretrained``,
loaded by the same code as the real model. Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path

import torch

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

WORDS = ("a", "photo", "of", "red", "green", "blue", "cat", "square", "with", "the", "bright", "dog")


def _word_tokenizer(special: list[str], **tokens):
    """A byte-level BPE tokenizer over letters and a few words: a random model writes readable words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "Ġ", ",", "."] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    merges = []
    for word in WORDS:  # merges up to each whole word, so encoding " red" gives the model's "Ġred"
        left = "Ġ"
        for ch in word:
            merges.append((left, ch))
            left += ch
            pieces.append(left)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(pieces))}
    merges = list(dict.fromkeys(merges))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=4096, unk_token="<unk>", **tokens)
    tokenizer.add_special_tokens({"additional_special_tokens": special})
    return tokenizer


def write_tiny_llava(out: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """A random-weight LLaVA (JoyCaption's architecture) folder, under 1 MB."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    special = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<image>", "<pad>"]
    tokenizer = _word_tokenizer(special, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<pad>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    patch = 8
    config = LlavaConfig(
        vision_config=dict(
            model_type="clip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
            projection_dim=32,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=ids["<|begin_of_text|>"],
            eos_token_id=ids["<|eot_id|>"],
            pad_token_id=ids["<pad>"],
        ),
        image_token_index=ids["<image>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.min_new_tokens = 4  # a random model would otherwise stop at once
    model.generation_config.eos_token_id = ids["<|eot_id|>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    image_processor = CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,  # CLIP's class token
        chat_template=LLAMA3_TEMPLATE,
        image_token="<image>",
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
