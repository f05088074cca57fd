"""Single-file (A1111/ComfyUI) checkpoints: which model they are, and loading them offline.

diffusers' ``from_single_file`` fetches each model's config from the Hub; the public configs
of the supported models are bundled in ``resources/model_configs/<family>/<variant>/`` instead
and materialized once (with the CLIP BPE tokenizer files) into the cache folder, so a
checkpoint loads with no network at all.

``detect_checkpoint`` is the one place that tells family and variant (v-prediction,
inpainting, refiner) from a checkpoint's tensor names and shapes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

from app.core import families, paths
from app.core.families import Family

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "resources" / "model_configs"
_BPE_FILE = CONFIGS_DIR / "clip" / "bpe_simple_vocab_16e6.txt.gz"


class _VariantBase(str, Enum):
    """A model whose diffusers config is bundled (the public configs of the base releases):
    each family's ``variants`` (``resources/model_configs/<family>/<variant>/``)."""

    @property
    def family(self) -> Family:
        return families.by_variant(self.value)

    @property
    def config_source(self) -> Path:
        return CONFIGS_DIR / self.family.value / self.value


# SD15 = "sd15" (runwayml/stable-diffusion-v1-5), SD21 (v-prediction, 768 px), SD21_BASE
# (epsilon, 512 px), SDXL, FLUX1_DEV (guidance-distilled, 28 steps), FLUX1_SCHNELL (4 steps)...
Variant = _VariantBase("Variant", [(v.upper().replace("-", "_"), v) for v in families.all_variants()])


class CheckpointProblem(ValueError):
    """The checkpoint is readable but not a model LoRA Loom can load; the message says why."""


@dataclass(frozen=True)
class CheckpointInfo:
    variant: Variant
    inpainting: bool = False
    refiner: bool = False
    denoiser_only: bool = False  # the transformer alone (Flux files as ComfyUI/Forge keep them)
    fp8: bool = False  # weights stored as float8 (e4m3fn / e5m2)

    @property
    def family(self) -> Family:
        return self.variant.family


# Tensors whose presence or shape tells the model apart (the same ones diffusers reads).
_XL_BASE = "conditioner.embedders.1.model."
_XL_REFINER = "conditioner.embedders.0.model."
_OPEN_CLIP = "cond_stage_model.model."
_CLIP = "cond_stage_model.transformer."
_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
# Flux.1 in Black Forest Labs' names, bare (a transformer file) or as in an all-in-one checkpoint.
_FLUX_BLOCK = "double_blocks.0.img_attn.qkv.weight"
_FLUX_GUIDANCE = "guidance_in.in_layer.weight"  # [dev] only: [schnell] has no guidance input
_FLUX_PREFIXES = ("", "model.diffusion_model.", "diffusion_model.")
# Parts of a model that are no base model alone (ComfyUI keeps Flux's in separate files).
_ALONE = {
    "text_model.encoder.layers.0.": "a CLIP text encoder alone (like clip_l.safetensors)",
    "encoder.block.0.layer.0.SelfAttention.": "a T5 text encoder alone (like t5xxl_fp16.safetensors)",
    "decoder.conv_in.": "a VAE alone (like ae.safetensors)",
}


def detect_checkpoint(
    shapes: dict[str, list[int]],
    metadata: dict[str, str] | None = None,
    sidecar_yaml: str | None = None,
    dtypes: dict[str, str] | None = None,
) -> CheckpointInfo:
    """Family and variant from tensor names -> shapes (a safetensors header is enough).

    SD2 weights do not say whether they predict v or epsilon: the SAI model-spec metadata
    (``modelspec.prediction_type``), a ``v_pred`` marker tensor, or A1111's sidecar
    ``<name>.yaml`` (``parameterization: "v"``) decide; without any, SD 2.x is v-prediction
    like 2.0-v/2.1, the releases nearly all SD2 fine-tunes start from.
    Flux.1 files carry BFL's names (``double_blocks.N…``), bare or under ``model.diffusion_model.``;
    [dev] has a guidance input, [schnell] none. ``dtypes`` (name -> safetensors dtype) tells fp8.
    Raises :class:`CheckpointProblem` when it is not a model LoRA Loom knows.
    """
    names = shapes.keys()

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in names)

    if (flux := _flux_checkpoint(names, has, dtypes or {})) is not None:
        return flux
    inpainting = (shapes.get(_CONV_IN) or [0, 0])[1:2] == [9]
    if has(_XL_BASE):
        return CheckpointInfo(Variant.SDXL, inpainting=inpainting)
    if has(_XL_REFINER):
        return CheckpointInfo(Variant.SDXL, inpainting=inpainting, refiner=True)
    if has(_OPEN_CLIP):
        return CheckpointInfo(_sd2_variant(names, metadata or {}, sidecar_yaml), inpainting=inpainting)
    if has(_CLIP):
        return CheckpointInfo(Variant.SD15, inpainting=inpainting)
    if any(k.startswith("lora_") or ".lora_" in k or "lora_A" in k for k in names):
        raise CheckpointProblem("this is a LoRA adapter, not a base model; add it to the Generate tab's adapter stack")
    if not has("model.diffusion_model."):
        alone = next((what for prefix, what in _ALONE.items() if has(prefix)), None)
        if alone is not None:
            raise CheckpointProblem(f"this is {alone}, not a base model; pick the model's folder or its Hub id")
        raise CheckpointProblem("not a Stable Diffusion checkpoint (no UNet weights inside)")
    raise CheckpointProblem("unsupported model family (no known text encoder inside)")


def _flux_checkpoint(names, has, dtypes: dict[str, str]) -> CheckpointInfo | None:
    prefix = next((p for p in _FLUX_PREFIXES if p + _FLUX_BLOCK in names), None)
    if prefix is None:
        return None
    variant = Variant.FLUX1_DEV if prefix + _FLUX_GUIDANCE in names else Variant.FLUX1_SCHNELL
    # A Flux-derived family's file (Chroma's approximator) is that family's first variant.
    marked = next((f for f in families.FAMILIES if f.checkpoint_marker and prefix + f.checkpoint_marker in names), None)
    if marked is not None:
        variant = Variant(marked.variants[0])
    alone = not has("text_encoders.") and not has("vae.") and not has("first_stage_model.")
    fp8 = dtypes.get(prefix + _FLUX_BLOCK, "").startswith("F8")
    return CheckpointInfo(variant, denoiser_only=alone, fp8=fp8)


def _sd2_variant(names, metadata: dict[str, str], sidecar_yaml: str | None) -> Variant:
    prediction = metadata.get("modelspec.prediction_type", "").lower()
    if prediction:
        return Variant.SD21 if prediction.startswith("v") else Variant.SD21_BASE
    if "v_pred" in names:
        return Variant.SD21
    if sidecar_yaml is not None:
        v = re.search(r"^\s*parameterization:\s*['\"]?v['\"]?\s*$", sidecar_yaml, re.MULTILINE)
        return Variant.SD21 if v else Variant.SD21_BASE
    return Variant.SD21


def read_sidecar_yaml(checkpoint: Path) -> str | None:
    """A1111's ``<name>.yaml`` beside the checkpoint, if it is a plain small file there."""
    yaml = checkpoint.with_suffix(".yaml")
    try:
        if yaml.is_symlink() or not yaml.is_file() or yaml.stat().st_size > 64 * 1024:
            return None
        return yaml.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# ---------------------------------------------------------------- bundled configs


@lru_cache(maxsize=1)
def clip_bpe() -> tuple[dict[str, int], list[str]]:
    """CLIP's 49408-token vocab and its merges, built from OpenAI's BPE file (as open_clip does)."""
    from app.engine.tiny_text import BOS, EOS, _bytes_to_unicode

    lines = gzip.decompress(_BPE_FILE.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def config_folder(variant: Variant | str) -> Path:
    """A complete diffusers config folder (no weights) for ``variant``, made once in the cache.

    Its name carries a hash of the bundled files, so an updated bundle is never shadowed by
    an old copy; it is built in a temp folder and renamed into place (never half-written).
    """
    variant = Variant(variant)
    source = variant.config_source
    files = sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in files + [_BPE_FILE]:
        digest.update(p.relative_to(CONFIGS_DIR).as_posix().encode() + b"\0" + p.read_bytes())
    root = paths.cache_dir() / "model_configs"
    target = root / f"{variant.value}-{digest.hexdigest()[:12]}"
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        vocab, merges = clip_bpe()
        for tok_dir in (d for d in tmp.iterdir() if d.name.startswith("tokenizer") and _is_clip_tokenizer(d)):
            (tok_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
            (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        try:
            tmp.rename(target)
        except OSError:  # another process made it meanwhile: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _is_clip_tokenizer(folder: Path) -> bool:
    """Only CLIP tokenizers get the BPE files (Flux's tokenizer_2 is T5's sentencepiece)."""
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    return config.get("tokenizer_class", "CLIPTokenizer").startswith("CLIP")


def component_config(variant: Variant | str, component: str) -> dict:
    """The bundled config.json of one component (``unet``, ``vae``, ``text_encoder``...)."""
    source = Variant(variant).config_source / component
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((source / name).read_text(encoding="utf-8"))


def components(variant: Variant | str) -> list[str]:
    """Model components with weights, in model_index order."""
    index = json.loads((Variant(variant).config_source / "model_index.json").read_text(encoding="utf-8"))
    return [
        k
        for k, v in index.items()
        if isinstance(v, list) and v[0] and k not in ("scheduler",) and not k.startswith("tokenizer")
    ]
