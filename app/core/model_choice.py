"""One model choice made of several files: a Flux.1 transformer file as ComfyUI and Forge keep
it, with its CLIP-L and T5-XXL text encoders and its VAE in files of their own.

The choice travels as one string wherever a base model does (configs, the recent-models list,
PNG parameters, the worker protocol): the transformer file first, then ``|key=path`` for each
companion, e.g. ``/m/flux1-dev.safetensors|clip_l=/m/clip_l.safetensors|t5=/m/t5xxl_fp16.safetensors|vae=/m/ae.safetensors``.
``|`` is in no Windows path and in hardly any other. Plain strings (a Hub id, a folder, a single
checkpoint) are a choice without companions. Imports no torch (the GUI uses it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

SEPARATOR = "|"
#: companion key -> what it is, for sentences
COMPANIONS = {
    "clip_l": "the CLIP-L text encoder file (clip_l.safetensors)",
    "t5": "the T5-XXL text encoder file (t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors)",
    "vae": "the VAE file (ae.safetensors)",
    "t5_tokenizer": "a T5 tokenizer folder (tokenizer_2 of black-forest-labs/FLUX.1-schnell)",
    "config": "a diffusers folder whose configs describe the files (default: the bundled Flux.1 configs)",
}
#: the files a transformer-only file needs
REQUIRED = ("clip_l", "t5", "vae")
# Usual file names (ComfyUI's and Forge's downloads), tried in this order.
_USUAL = {
    "clip_l": ("clip_l.safetensors", "clip_l*.safetensors"),
    "t5": ("t5xxl_fp16.safetensors", "t5xxl*.safetensors"),
    "vae": ("ae.safetensors", "ae*.safetensors", "flux*vae*.safetensors"),
}
# Where ComfyUI (models/unet|diffusion_models, clip|text_encoders, vae) and Forge
# (models/Stable-diffusion, text_encoder, VAE) keep them, relative to the transformer's folder.
_SIBLING_DIRS = {
    "clip_l": ("clip", "text_encoders", "text_encoder"),
    "t5": ("clip", "text_encoders", "text_encoder"),
    "vae": ("vae", "VAE"),
}


class ModelChoiceError(ValueError):
    """The model string is not a well-formed choice; the message says what is wrong."""


@dataclass(frozen=True)
class ModelChoice:
    main: str  # Hub id, folder or file (a Flux transformer file when companions are given)
    clip_l: str = ""
    t5: str = ""
    vae: str = ""
    t5_tokenizer: str = ""
    config: str = ""

    @property
    def companions(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "main" and getattr(self, f.name)}

    def text(self) -> str:
        return SEPARATOR.join([self.main] + [f"{k}={v}" for k, v in self.companions.items()])

    def files(self) -> list[str]:
        """The weight files of the choice: the main one and the companion files."""
        return [self.main] + [v for k, v in self.companions.items() if k in REQUIRED]


def parse(text: str) -> ModelChoice:
    """``text`` (as :meth:`ModelChoice.text` writes it) -> the choice; unknown keys are refused."""
    main, *parts = [p.strip() for p in text.strip().split(SEPARATOR)]
    values: dict[str, str] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in COMPANIONS:
            known = ", ".join(f"{k}=" for k in COMPANIONS)
            raise ModelChoiceError(f"{part!r} in the model {main!r} is no companion file ({known})")
        values[key] = str(Path(value.strip()).expanduser()) if value.strip() else ""
    return ModelChoice(main, **values)


def has_companions(text: str) -> bool:
    return SEPARATOR in text


def display_name(text: str) -> str:
    """A short name for the choice: the main file's name (or the id/folder) and its companions."""
    choice = parse(text) if has_companions(text) else ModelChoice(text.strip())
    if not choice.companions:
        return choice.main
    names = [Path(p).name for k, p in choice.companions.items() if k in REQUIRED]
    return f"{Path(choice.main).name} + {' + '.join(names)}"


def usual_companions(transformer: str | Path) -> dict[str, str]:
    """The companion files beside a transformer file (or in the sibling folders ComfyUI and Forge
    keep them in), by their usual names: key -> path, only the ones found."""
    folder = Path(transformer).expanduser().parent
    found: dict[str, str] = {}
    for key, patterns in _USUAL.items():
        dirs = [folder] + [folder.parent / d for d in _SIBLING_DIRS[key]]
        for d in dirs:
            hit = _first_match(d, patterns)
            if hit is not None:
                found[key] = str(hit)
                break
    return found


def _first_match(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    try:
        if not folder.is_dir():
            return None
        for pattern in patterns:
            hits = sorted(p for p in folder.glob(pattern) if p.is_file())
            if hits:
                return hits[0]
    except OSError:
        return None
    return None


# BFL's first double block (bare or as in an all-in-one checkpoint), and what only an all-in-one
# checkpoint has beside it: the same names ``app.engine.single_file.detect_checkpoint`` reads.
_FLUX_BLOCK = "double_blocks.0.img_attn.qkv.weight"
_FLUX_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.")
_WHOLE = ("text_encoders.", "vae.", "first_stage_model.")
FAMILY = "flux1"  # the family whose files come as a model with companions


def needs_companions(path: str | Path) -> bool:
    """Whether a ``.safetensors`` file is a Flux.1 transformer alone (it needs clip_l, t5 and vae
    files), from its header; False for anything else or an unreadable file."""
    from app.core.safetensors_header import SafetensorsError, read_header

    try:
        names = read_header(path, check_offsets=False).tensors.keys()
    except (SafetensorsError, OSError):
        return False
    if not any(p + _FLUX_BLOCK in names for p in _FLUX_PREFIXES):
        return False
    return not any(k.startswith(_WHOLE) for k in names)


def missing_files(text: str) -> list[str]:
    """Sentences for the files of a choice that are not there (the GUI checks before it submits)."""
    if not has_companions(text):
        return []
    choice = parse(text)
    out = [] if Path(choice.main).is_file() else [f"{choice.main}: no such file (the model file)"]
    for key, path in choice.companions.items():
        exists = Path(path).is_dir() if key in ("t5_tokenizer", "config") else Path(path).is_file()
        if not exists:
            out.append(f"{path}: not there ({COMPANIONS[key]})")
    return out
