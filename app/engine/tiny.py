"""Tiny offline Stable Diffusion models for tests (DESIGN.md section 6).

``write_tiny_model`` writes a complete diffusers folder with seeded random weights
whose *structure* follows the real models (module and key names, projection kinds,
two text encoders and ``text_time`` conditioning for SDXL) at a size that renders a
64x64 picture in a fraction of a second on a CPU. The CLIP BPE tokenizer is built
here from a fixed word list; nothing is downloaded.

``pretrained_tiny_path`` points at the committed pre-trained fixtures made by
``scripts/pretrain_tiny.py`` (a random VAE cannot return a colour).

Engine code: never import this module from the GUI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from app.core import families
from app.core.families import Family
from app.core.files import make_ordinary
from app.engine.families import engine

FAMILIES = tuple(f.value for f in Family)
MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

#: Written into each tiny folder (diffusers ignores unknown files at the root).
INFO_FILE = "loraloom_tiny.json"
_TOKENIZERS = ("tokenizer", "tokenizer_2")  # pipeline component names, in encoder order
_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")

_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

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
def _text_config(
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


def unet_config(family: str) -> dict:
    """UNet2DConditionModel kwargs: the real layout, tiny widths, 8x8 latents (64 px)."""
    _check_family(family)
    return engine(family).tiny_unet_config()


def vae_config() -> dict:
    """AutoencoderKL kwargs: four blocks like the real VAE (scale factor 8), tiny widths."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,  # >= 4 channels a group, or GroupNorm erases flat colours
        sample_size=64,
        scaling_factor=0.18215,
    )


def scheduler_config() -> dict:
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def _pad_token(family: str, name: str) -> str:
    """The pad token of tokenizer ``name`` ("tokenizer", "tokenizer_2"…) of the family's tiny model."""
    encoders = engine(family).tiny_text_encoders
    return encoders[_TOKENIZERS.index(name)].pad


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}: expected one of {', '.join(FAMILIES)}")


# ---------------------------------------------------------------------------- building
def quiet_libraries() -> None:
    """Turn off the loading progress bars of diffusers and transformers (process-wide)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def build_tiny_pipeline(family: str = "sd1", seed: int = 0):
    """Return an in-memory tiny pipeline with seeded random weights (CPU, fp32)."""
    _check_family(family)
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    quiet_libraries()
    fam = engine(family)
    encoders = fam.tiny_text_encoders
    parts: dict = {}
    with tempfile.TemporaryDirectory(prefix="tiny-tok-") as tok_dir:
        for i, enc in enumerate(encoders):
            vocab = write_tokenizer(Path(tok_dir) / _TOKENIZERS[i], pad_token=enc.pad)
            parts[_TOKENIZERS[i]] = CLIPTokenizer.from_pretrained(Path(tok_dir) / _TOKENIZERS[i])

    def seeded(offset: int):
        torch.manual_seed(seed * 1000 + offset)

    with torch.random.fork_rng(devices=[]):
        seeded(1)
        unet = UNet2DConditionModel(**unet_config(family))
        seeded(2)
        vae = AutoencoderKL(**vae_config())
        scheduler = EulerDiscreteScheduler(**scheduler_config())
        for i, enc in enumerate(encoders):
            seeded(3 + i)
            cls = CLIPTextModel if enc.projection is None else CLIPTextModelWithProjection
            config = _text_config(vocab, enc.width, projection=enc.projection, pad_token=enc.pad, act=enc.act)
            parts[_TEXT_ENCODERS[i]] = cls(CLIPTextConfig(**config))

    for m in (unet, vae) + tuple(parts[name] for name in _TEXT_ENCODERS[: len(encoders)]):
        m.eval()
    return fam.pipeline_class()(vae=vae, unet=unet, scheduler=scheduler, **parts, **fam.tiny_pipeline_kwargs())


def save_pipeline(pipe, out_dir, family: str, *, overwrite: bool = False, info: dict | None = None) -> Path:
    """Save ``pipe`` as a diffusers folder (fp32 safetensors), atomically: written into a
    temp folder beside ``out_dir``, then renamed into place."""
    out = Path(out_dir)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        make_ordinary(tmp, folder=True)  # mkdtemp makes it private; the result is an ordinary folder
        pipe.save_pretrained(tmp, safe_serialization=True)
        # transformers 5 saves tokenizer.json only; keep the CLIP files real models ship.
        for name in _TOKENIZERS:
            if (tmp / name).is_dir():
                shutil.rmtree(tmp / name)
                write_tokenizer(tmp / name, pad_token=_pad_token(family, name))
        meta = {"family": family, "format": 1}
        meta.update(info or {})
        (tmp / INFO_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another folder or replace it (--overwrite)")


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    _check_target(out, overwrite)  # again: someone may have written there meanwhile
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_tiny_model(out_dir, family: str = "sd1", seed: int = 0, *, overwrite: bool = False) -> Path:
    """Write a complete tiny diffusers folder with seeded random weights; return its path.

    ``family``: "sd1" (StableDiffusionPipeline, text width 32, conv proj_in/out),
    "sd2" (StableDiffusionPipeline, text width 48, linear proj_in/out, epsilon) or
    "sdxl" (StableDiffusionXLPipeline, two text encoders, width 64, ``text_time``).
    Raises FileExistsError when ``out_dir`` is a non-empty folder unless ``overwrite``.
    """
    _check_family(family)
    out = Path(out_dir)
    _check_target(out, overwrite)
    pipe = build_tiny_pipeline(family, seed)
    return save_pipeline(pipe, out, family, overwrite=overwrite, info={"seed": seed, "pretrained": False})


def pretrained_tiny_path(family: str = "sd1") -> Path:
    """Folder of the committed pre-trained tiny model (``tests/fixtures/tiny-<family>-pretrained``)."""
    _check_family(family)
    path = _FIXTURES / f"tiny-{family}-pretrained"
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"pre-trained tiny {family} model not found at {path}; make it with "
            f"`python scripts/pretrain_tiny.py --family {family} --out {path}`"
        )
    return path


def load_tiny_pipeline(path, family: str | None = None):
    """Load a tiny folder with the right pipeline class, offline, progress bars off."""
    quiet_libraries()
    path = Path(path)
    if family is None:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        family = (families.by_pipeline_class(index.get("_class_name", "")) or (families.FALLBACK,))[0]
    cls = engine(family).pipeline_class()
    pipe = cls.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe
