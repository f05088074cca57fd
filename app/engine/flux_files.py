"""Flux.1 from the files ComfyUI and Forge users keep: a transformer-only ``flux1-dev.safetensors``
(bf16 or fp8, BFL names bare or under ``model.diffusion_model.``) with ``clip_l``, ``t5xxl`` and
``ae`` files beside it, or one all-in-one checkpoint holding all four.

Each part is loaded by its library's own loader with the bundled configs (no network): the
transformer and the VAE by diffusers' ``from_single_file`` (the transformer's BFL names are read
at the config's widths first, :mod:`app.engine.flux_state`), CLIP-L and T5 by transformers'
``from_pretrained`` given the file's tensors (its missing/unexpected keys become a sentence).
Tensors come memory-mapped from the files; an fp8 transformer keeps fp8 storage (computed in the
run dtype by diffusers' layerwise casting), and so does an fp8 T5.

T5's sentencepiece vocabulary is in no installed package: it is fetched once from the non-gated
``black-forest-labs/FLUX.1-schnell`` (``tokenizer_2/``) into huggingface_hub's cache, unless a
tokenizer folder is given (``t5_tokenizer=``) or the config folder holds one.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from app.core.errors import ErrorKind
from app.core.model_choice import COMPANIONS, REQUIRED, ModelChoice, usual_companions
from app.engine import flux_state
from app.engine.single_file import _ALONE, CheckpointInfo, CheckpointProblem, config_folder

log = logging.getLogger(__name__)

TOKENIZER_REPO = "black-forest-labs/FLUX.1-schnell"
TOKENIZER_FOLDER = "tokenizer_2"
FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
# Where the parts sit in an all-in-one checkpoint (ComfyUI's "Save Checkpoint" names).
_IN_ONE = {
    "clip_l": ("text_encoders.clip_l.transformer.",),
    "t5": ("text_encoders.t5xxl.transformer.",),
    "vae": ("vae.", "first_stage_model."),
}
# A tensor each companion file must have (after its prefix), and the tensors of a CLIP-L file
# that CLIPTextModel has no place for (the projection of CLIP's joint space; not used by Flux).
_MARKER = {"clip_l": "text_model.encoder.layers.0.", "t5": "encoder.block.0.", "vae": "decoder.conv_in."}
_CLIP_EXTRAS = ("text_projection.weight", "logit_scale", "text_model.embeddings.position_ids")


@contextmanager
def _quiet():
    """No "modules that should be kept in float32: []" notice per loaded part (diffusers logs it
    when ``from_single_file`` casts to the dtype asked for)."""
    logger = logging.getLogger("diffusers.models.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class FluxFilesError(CheckpointProblem):
    """A Flux file set could not be loaded; the message names the file and says why."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.BAD_INPUT):
        super().__init__(message)
        self.kind = kind


def companion_problem(choice: ModelChoice, info: CheckpointInfo) -> str | None:
    """Why the files cannot make a Flux model (a missing companion), or None."""
    if not info.denoiser_only:
        return None
    missing = [k for k in REQUIRED if not getattr(choice, k)]
    if not missing:
        return None
    found = usual_companions(choice.main)
    hint = "; beside it: " + ", ".join(f"{k}={v}" for k, v in found.items()) if found else ""
    names = [COMPANIONS[k] for k in missing]
    what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    label = "Flux.1 [dev]" if info.variant.value.endswith("dev") else "Flux.1 [schnell]"
    stored = " (fp8)" if info.fp8 else ""
    return (
        f"a {label} transformer file{stored} alone needs {what}: pick them with the model picker, "
        f"or give --clip-l, --t5 and --vae{hint}"
    )


def load_pipeline(choice: ModelChoice, info: CheckpointInfo, dtype: torch.dtype):
    """A FluxPipeline from the files of ``choice``. Raises :class:`FluxFilesError`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from safetensors import safe_open

    root = _config_root(choice, info)
    main = Path(choice.main)
    with safe_open(str(main), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    parts = {k: _part(choice, k, tensors, main) for k in REQUIRED}
    transformer = load_transformer(flux_state.strip_prefix(tensors), main, root, dtype, info.fp8)
    del tensors
    clip_l, t5 = (_text_encoder(k, *parts[k], root, dtype) for k in ("clip_l", "t5"))
    vae = _vae(*parts["vae"], root, dtype)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(str(root), subfolder="scheduler"),
        vae=vae,
        text_encoder=clip_l,
        tokenizer=_clip_tokenizer(root, info),
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer(choice, root),
        transformer=transformer,
    )


def _config_root(choice: ModelChoice, info: CheckpointInfo) -> Path:
    if not choice.config:
        return config_folder(info.variant)
    root = Path(choice.config)
    if not (root / "transformer" / "config.json").is_file():
        raise FluxFilesError(f"{root}: config= must be a diffusers Flux folder (with transformer/config.json)")
    return root


def _part(choice: ModelChoice, key: str, tensors: dict, main: Path) -> tuple[dict, Path]:
    """(tensors, file) of one companion: its own file, or its share of an all-in-one checkpoint."""
    path = getattr(choice, key)
    if not path:
        prefix = next((p for p in _IN_ONE[key] if any(k.startswith(p) for k in tensors)), None)
        if prefix is None:
            raise FluxFilesError(f"{main}: {COMPANIONS[key]} is not in this checkpoint; give it as its own file")
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, main
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            own = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise FluxFilesError(f"{path}: not a readable .safetensors file ({exc})") from None
    prefix = next((p for p in _IN_ONE[key] if any(k.startswith(p) for k in own)), "")
    own = {k[len(prefix) :]: v for k, v in own.items() if k.startswith(prefix)}
    if not any(k.startswith(_MARKER[key]) for k in own):
        alone = next((what for p, what in _ALONE.items() if any(k.startswith(p) for k in own)), "no part of Flux")
        raise FluxFilesError(f"{path}: this is {alone}, not {COMPANIONS[key]}")
    return own, Path(path)


def load_transformer(bfl: dict, path: Path, root: Path, dtype: torch.dtype, fp8: bool):
    """diffusers' ``from_single_file`` on the BFL tensors read at the config's widths; fp8 stays fp8."""
    from diffusers import FluxTransformer2DModel

    config = json.loads((root / "transformer" / "config.json").read_text(encoding="utf-8"))
    missing = flux_state.missing(bfl, config)
    if missing:
        raise FluxFilesError(
            f"{path}: not the Flux.1 transformer its config describes ({len(missing)} tensors missing, "
            f"first {missing[0]})"
        )
    try:
        state = flux_state.from_bfl(bfl, config)
    except RuntimeError as exc:
        raise FluxFilesError(f"{path}: its layers do not have the config's widths ({exc})") from None
    load_dtype = torch.float8_e4m3fn if fp8 else dtype
    try:
        with _quiet():
            model = FluxTransformer2DModel.from_single_file(
                state, config=str(root), subfolder="transformer", torch_dtype=load_dtype, local_files_only=True
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise FluxFilesError(f"{path}: could not load the Flux.1 transformer ({exc})") from None
    if fp8:
        keep_fp8_storage(model, state, dtype)
    return model.eval()


def keep_fp8_storage(model: torch.nn.Module, state: dict, dtype: torch.dtype) -> None:
    """Linear (and embedding) layers keep fp8 storage and compute in ``dtype`` (diffusers' layerwise
    casting hooks); every other parameter (the q/k norms) is put back in ``dtype`` from the file."""
    from diffusers.hooks import apply_layerwise_casting
    from diffusers.hooks.layerwise_casting import _LAYERWISE_CASTING_HOOK

    apply_layerwise_casting(model, storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype, skip_modules_pattern=())
    for name, module in model.named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(_LAYERWISE_CASTING_HOOK) is not None:
            continue
        for pname, param in module.named_parameters(recurse=False):
            if param.dtype in FP8:
                source = state.get(f"{name}.{pname}" if name else pname, param)
                param.data = source.to(dtype)


def _text_encoder(key: str, state: dict, path: Path, root: Path, dtype: torch.dtype):
    """CLIP-L or T5-XXL by transformers' own loader, given the file's tensors and the bundled config."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    cls, config_cls, sub = (
        (CLIPTextModel, CLIPTextConfig, "text_encoder")
        if key == "clip_l"
        else (T5EncoderModel, T5Config, "text_encoder_2")
    )
    fp8 = any(t.dtype in FP8 for t in state.values())
    if key == "clip_l":
        state = {k: v for k, v in state.items() if k not in _CLIP_EXTRAS}
    config = config_cls.from_pretrained(str(root / sub))
    try:
        model, info = cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise FluxFilesError(f"{path}: could not load {COMPANIONS[key]} ({exc})") from None
    bad = [("missing", info.get("missing_keys")), ("unexpected", info.get("unexpected_keys"))]
    bad += [("of another shape", [m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys") or ()])]
    for what, names in bad:
        if names:
            names = sorted(names)
            raise FluxFilesError(
                f"{path}: not {COMPANIONS[key]} of this model ({len(names)} tensors {what}, first {names[0]})"
            )
    if fp8:
        from diffusers.hooks import apply_layerwise_casting

        apply_layerwise_casting(model, storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype, skip_modules_pattern=())
    return model.eval()


def _vae(state: dict, path: Path, root: Path, dtype: torch.dtype):
    from diffusers import AutoencoderKL

    try:
        with _quiet():
            vae = AutoencoderKL.from_single_file(
                state, config=str(root), subfolder="vae", torch_dtype=dtype, local_files_only=True
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise FluxFilesError(f"{path}: could not load {COMPANIONS['vae']} ({exc})") from None
    if any(p.is_meta for p in vae.parameters()):
        raise FluxFilesError(f"{path}: not {COMPANIONS['vae']} of this model (tensors missing)")
    return vae.eval()


def _clip_tokenizer(root: Path, info: CheckpointInfo):
    from transformers import CLIPTokenizer

    folder = root / "tokenizer"
    if not (folder / "vocab.json").is_file():
        folder = config_folder(info.variant) / "tokenizer"
    return CLIPTokenizer.from_pretrained(str(folder))


def t5_tokenizer(choice: ModelChoice, root: Path):
    """The T5 tokenizer: ``t5_tokenizer=`` folder, the config folder's, or FLUX.1-schnell's from the Hub."""
    from transformers import T5TokenizerFast

    for folder in ([Path(choice.t5_tokenizer)] if choice.t5_tokenizer else []) + [root / TOKENIZER_FOLDER]:
        if (folder / "tokenizer.json").is_file() or (folder / "spiece.model").is_file():
            return T5TokenizerFast.from_pretrained(str(folder))
        if folder == Path(choice.t5_tokenizer):
            raise FluxFilesError(f"{folder}: no T5 tokenizer here (tokenizer.json or spiece.model)")
    return T5TokenizerFast.from_pretrained(str(fetch_t5_tokenizer()))


def fetch_t5_tokenizer() -> Path:
    """FLUX.1-schnell's ``tokenizer_2/`` in huggingface_hub's cache (downloaded once; offline it
    must be there already)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from app.engine.models import check_hub_available

    what = (
        f"the T5 tokenizer ({TOKENIZER_FOLDER}/ of {TOKENIZER_REPO}, about 2.4 MB) is not downloaded and "
        "the Hub cannot be reached: connect once, or give a local tokenizer folder as t5_tokenizer="
    )
    try:
        check_hub_available(TOKENIZER_REPO)
        snapshot = snapshot_download(TOKENIZER_REPO, allow_patterns=[f"{TOKENIZER_FOLDER}/*"])
    except LocalEntryNotFoundError:
        raise FluxFilesError(what, kind=ErrorKind.MODEL_NOT_FOUND) from None
    except Exception as exc:  # noqa: BLE001 - ModelError (offline) or any Hub failure: one sentence
        if type(exc).__name__ == "ModelError" or "offline" in str(exc).lower():
            raise FluxFilesError(what, kind=ErrorKind.MODEL_NOT_FOUND) from None
        raise FluxFilesError(
            f"the T5 tokenizer could not be fetched from {TOKENIZER_REPO} ({exc})", kind=ErrorKind.MODEL_NOT_FOUND
        ) from None
    folder = Path(snapshot) / TOKENIZER_FOLDER
    if not any(folder.glob("*")):
        raise FluxFilesError(f"{TOKENIZER_REPO} has no {TOKENIZER_FOLDER}/ folder", kind=ErrorKind.MODEL_NOT_FOUND)
    return folder


def describe(choice: ModelChoice) -> dict[str, Any]:
    return {"transformer": choice.main, **choice.companions}
