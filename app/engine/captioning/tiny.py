"""Tiny offline stand-ins for the captioning models, with the real models' file layouts.

- :func:`write_tiny_blip`: a random BLIP saved with ``save_pretrained`` (config, safetensors,
  a WordPiece tokenizer, the image processor), loaded by the same code as
  ``Salesforce/blip-image-captioning-large``.
- :func:`write_tiny_florence`: a random Florence-2 (DaViT vision tower + BART text) with a
  byte-level BPE tokenizer and the CLIP image processor, in transformers' native layout
  (``florence-community/Florence-2-*``).
- :func:`write_tiny_wd_tagger`: ``model.onnx`` exported from a small torch model plus
  ``selected_tags.csv``, the ``SmilingWolf/wd-vit-tagger-v3`` layout. Its tags are not
  random: ``red``/``green``/``blue`` fire for the dominant colour, so tests can check that
  the right tags come out. Exporting needs the ``onnx`` package (a test extra).

The vision-language stand-ins (LLaVA, Qwen2.5-VL) are in :mod:`tiny_vlm`.

Used by the tests and ``bench/captioning.py``; nothing here touches the network.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

BLIP_WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[DEC]",
    "a",
    "photo",
    "of",
    "red",
    "green",
    "blue",
    "square",
    "cat",
    "dog",
    "on",
    "the",
    "table",
    "small",
    "big",
    "picture",
    "with",
    "and",
    "bright",
]

# (name, category): category 9 rating, 0 general, 4 character — as in selected_tags.csv.
WD_TAGS = [
    ("general", 9),
    ("sensitive", 9),
    ("questionable", 9),
    ("explicit", 9),
    ("red", 0),
    ("green", 0),
    ("blue", 0),
    ("simple_background", 0),
    ("no_humans", 0),
    ("^_^", 0),
    ("tiny_character", 4),
]


def write_tiny_blip(out: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """A random-weight BLIP captioner folder (about 250 kB)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip import BlipImageProcessor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(BLIP_WORDS)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        bos_token="[DEC]",
        model_max_length=64,
    )
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(BLIP_WORDS),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=vocab["[DEC]"],
            pad_token_id=vocab["[PAD]"],
            sep_token_id=vocab["[SEP]"],
            eos_token_id=vocab["[SEP]"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8,
        ),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=tokenizer
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def write_tiny_florence(out: str | Path, *, seed: int = 0, image_size: int = 64) -> Path:
    """A random-weight Florence-2 folder (about 200 kB) that answers the caption tasks."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import BartTokenizerFast, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
    from transformers.models.clip import CLIPImageProcessor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words = ["<s>", "<pad>", "</s>", "<unk>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words += ["Ġ" + w for w in ("a", "photo", "of", "red", "green", "blue", "cat", "square", "with", "the")]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words + ["Ġ", "."]))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = BartTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    vision = dict(
        depths=[1, 1, 1, 1],
        embed_dim=[8, 16, 16, 32],
        num_heads=[1, 1, 1, 1],
        num_groups=[1, 1, 1, 1],
        window_size=2,
        projection_dim=32,
        max_position_embeddings=8,
        max_temporal_embeddings=4,
        drop_path_rate=0.0,
    )
    text = dict(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=0,
        forced_eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(
        Florence2Config(text_config=text, vision_config=vision, image_token_id=tokenizer.image_token_id)
    ).eval()
    model.generation_config.min_new_tokens = 4  # a random model would otherwise stop at once
    image_processor = CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
    )
    # DaViT strides 4·2·2·2: (size/32)² spatial tokens + 1 temporal token.
    image_processor.image_seq_length = (image_size // 32) ** 2 + 1
    processor = Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config={"pure_text": {}}
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


class _TinyTagger(torch.nn.Module):
    """Mean colour of an N×H×W×3 BGR 0-255 batch -> tag probabilities (sigmoid), like a WD tagger."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = torch.nn.AvgPool2d(4)  # a real (if trivial) image layer in the graph
        n = len(WD_TAGS)
        weight = torch.zeros(n, 3)
        bias = torch.full((n,), -6.0)
        names = [t for t, _c in WD_TAGS]
        # BGR channel order: index 2 is red, 1 green, 0 blue.
        for tag, channel in (("red", 2), ("green", 1), ("blue", 0)):
            i = names.index(tag)
            weight[i] = -6.0
            weight[i, channel] = 12.0
            bias[i] = -3.0
        for always in ("general", "simple_background", "no_humans"):
            bias[names.index(always)] = 4.0  # p ≈ 0.98
        bias[names.index("^_^")] = 0.2  # p ≈ 0.55: above 0.35, below 0.85
        bias[names.index("tiny_character")] = 0.0  # p = 0.5: under the character threshold
        self.fc = torch.nn.Linear(3, n)
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x.permute(0, 3, 1, 2) / 255.0).mean(dim=(2, 3))
        return torch.sigmoid(self.fc(x))


def write_tiny_wd_tagger(
    out: str | Path,
    *,
    size: int = 32,
    fixed_batch: int | None = None,
    input_name: str = "input",
    output_name: str = "output",
) -> Path:
    """``model.onnx`` + ``selected_tags.csv`` in ``out`` (a dynamic batch unless ``fixed_batch``).

    The v3 taggers (vit, swinv2, convnext, vit-large, eva02-large) take a dynamic batch of
    448×448 images; v2 ones were exported by Keras with a name such as ``input_1:0``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = _TinyTagger().eval()
    example = torch.full((fixed_batch or 2, size, size, 3), 128.0)
    dynamic = None if fixed_batch else {input_name: {0: "batch"}, output_name: {0: "batch"}}
    try:
        torch.onnx.export(
            model,
            (example,),
            str(out / "model.onnx"),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes=dynamic,
            dynamo=False,
            opset_version=17,
        )
    except Exception as exc:  # the legacy exporter needs the onnx package
        raise RuntimeError(f"could not export the tiny tagger to ONNX ({exc}); install the 'onnx' package") from None
    with open(out / "selected_tags.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category) in enumerate(WD_TAGS):
            writer.writerow([1000 + i, name, category, 100 - i])
    (out / "config.json").write_text(json.dumps({"architecture": "tiny-test-tagger", "num_classes": len(WD_TAGS)}))
    return out
