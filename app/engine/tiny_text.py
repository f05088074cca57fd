"""The text side of the tiny offline models: a CLIP BPE tokenizer built from a fixed word list,
CLIP text-encoder configs, and the switch that silences loading progress bars.

Shared by every family's tiny model (``app.engine.tiny`` and the family engine files) and by
the bundled real-size tokenizer (``app.engine.single_file``); imports no family code.
"""

from __future__ import annotations

import json
from pathlib import Path

MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


# Words that become single tokens; anything else still tokenizes (byte pieces). Editing
# this list changes token ids of newly written models (committed fixtures keep theirs).
_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "or",
    "to",
    "at",
    "by",
    "for",
    "from",
    "is",
    "are",
    "this",
    "that",
    "it",
    "its",
    "photo",
    "picture",
    "image",
    "painting",
    "drawing",
    "render",
    "illustration",
    "portrait",
    "close",
    "up",
    "square",
    "squares",
    "circle",
    "circles",
    "stripe",
    "stripes",
    "striped",
    "triangle",
    "shape",
    "shapes",
    "dot",
    "dots",
    "line",
    "lines",
    "grid",
    "checker",
    "checkered",
    "background",
    "foreground",
    "left",
    "right",
    "top",
    "bottom",
    "center",
    "middle",
    "half",
    "big",
    "small",
    "large",
    "tiny",
    "flat",
    "plain",
    "solid",
    "simple",
    "two",
    "one",
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
    "cyan",
    "magenta",
    "violet",
    "gold",
    "silver",
    "dark",
    "light",
    "bright",
    "pale",
    "colour",
    "color",
    "colours",
    "colors",
    "cat",
    "cats",
    "dog",
    "dogs",
    "bird",
    "car",
    "tree",
    "house",
    "man",
    "woman",
    "person",
    "face",
    "sky",
    "sea",
    "mountain",
    "flower",
    "apple",
    "ball",
    "box",
    "cup",
    "chair",
    "table",
    "room",
    "street",
    "city",
    "forest",
    "field",
    "water",
    "style",
    "art",
    "sks",
    "ohwx",
    "token",
    "trigger",
    "lora",
    "high",
    "quality",
    "best",
    "detailed",
    "blurry",
    "low",
    "sharp",
    "soft",
    "noise",
    "noisy",
    "smooth",
    "warm",
    "cold",
    "sunny",
    "night",
    "day",
]


# ---------------------------------------------------------------------------- tokenizer
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode mapping."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE learning until every word is one symbol (ties broken by pair order)."""
    b2u = _bytes_to_unicode()
    seqs = []
    for w in dict.fromkeys(words):  # unique, order kept
        chars = [b2u[b] for b in w.encode("utf-8")]
        chars[-1] += "</w>"
        seqs.append(chars)
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for s in seqs:
            for pair in zip(s, s[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for i, s in enumerate(seqs):
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and (s[j], s[j + 1]) == best:
                    out.append(joined)
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            seqs[i] = out


def _tokenizer_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-ordered vocab: 256 byte chars, their ``</w>`` forms, merges, then specials."""
    chars = list(_bytes_to_unicode().values())
    merges = _learn_merges(_WORDS)
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    return vocab, merges


def write_tokenizer(folder: Path, pad_token: str = EOS) -> dict[str, int]:
    """Write vocab.json, merges.txt and the configs of a CLIP tokenizer; return the vocab."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _tokenizer_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2 - tiny CLIP BPE written by LoRA Loom"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def tok(content: str) -> dict:
        return {
            "content": content,
            "lstrip": False,
            "normalized": True,
            "rstrip": False,
            "single_word": False,
            "__type": "AddedToken",
        }

    config = {
        "add_prefix_space": False,
        "bos_token": tok(BOS),
        "eos_token": tok(EOS),
        "unk_token": tok(EOS),
        "pad_token": pad_token if pad_token != EOS else tok(EOS),
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": MAX_LENGTH,
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return vocab


# ---------------------------------------------------------------------------- configs
def text_config(
    vocab: dict[str, int], hidden: int, projection: int | None = None, pad_token: str = EOS, act: str = "quick_gelu"
) -> dict:
    cfg = dict(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_LENGTH,
        hidden_act=act,
        layer_norm_eps=1e-5,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[pad_token],
    )
    if projection is not None:
        cfg["projection_dim"] = projection
    return cfg


# ---------------------------------------------------------------------------- progress bars
def quiet_libraries() -> None:
    """Turn off the loading progress bars of diffusers and transformers (process-wide)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def tokenizer_words() -> list[str]:
    """The words the tiny tokenizers know as single tokens."""
    return list(_WORDS)
