"""Load a base model from a Hub repo id, a local diffusers folder or a single file.

Also: which family it is (sd1, sd2, sdxl), and which device and dtype to run it on.
Every failure is a :class:`ModelError` whose message names the path or repo and says
what is wrong, so the worker can send it to the GUI as one sentence.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from app.core import families, model_choice
from app.core.configs import DevicePref, DtypePref, ModelSpec
from app.core.errors import ErrorKind, clip_words, not_downloaded_message
from app.core.families import Family
from app.core.hub.errors import gated_sentence
from app.core.safetensors_header import SafetensorsError, read_header
from app.engine.families import engine
from app.engine.single_file import (
    CheckpointInfo,
    CheckpointProblem,
    config_folder,
    detect_checkpoint,
    read_sidecar_yaml,
)

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class ModelError(Exception):
    """A base model could not be loaded. ``kind`` is a protocol ErrorKind."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.BAD_INPUT, detail: str = ""):
        super().__init__(message)
        self.kind = kind
        self.detail = detail


@dataclass
class LoadedModel:
    pipe: Any  # a diffusers pipeline
    source: str
    family: Family
    device: torch.device
    dtype: torch.dtype
    distilled: bool = False  # the family's timestep-distilled model (Flux.1 [schnell]): no guidance input

    def describe(self) -> dict[str, Any]:
        return {
            "base": self.source,
            "family": self.family.value,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "distilled": self.distilled,
        }


# ---------------------------------------------------------------- device and dtype


def pick_device(pref: DevicePref | str = DevicePref.AUTO) -> torch.device:
    pref = DevicePref(pref)
    if pref is DevicePref.AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref is DevicePref.CUDA and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA GPU is available")
    if pref is DevicePref.MPS and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("device 'mps' was asked for but Apple's MPS is not available")
    return torch.device(pref.value)


def pick_dtype(pref: DtypePref | str, device: torch.device) -> torch.dtype:
    """fp32 on CPU; bf16 on GPUs that support it, else fp16; explicit choices win."""
    pref = DtypePref(pref)
    explicit = {DtypePref.FP32: torch.float32, DtypePref.FP16: torch.float16, DtypePref.BF16: torch.bfloat16}
    if pref is not DtypePref.AUTO:
        return explicit[pref]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


# ---------------------------------------------------------------- family detection


def family_from_folder(folder: Path) -> Family:
    """Family of a diffusers folder, from model_index.json and the text encoder's width."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelError(
            f"{folder}: not a diffusers model folder (no model_index.json); "
            "pick the folder that contains model_index.json, or a .safetensors checkpoint"
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{index_path}: unreadable model_index.json ({exc})") from None
    return _family_from_index(index, lambda name: _read_json(folder / name), str(folder))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _family_from_index(index: dict, read_config, where: str) -> Family:
    cls = index.get("_class_name", "")
    candidates = families.by_pipeline_class(cls)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        # One pipeline class for several families (SD 1.x and 2.x): the text width tells.
        te = read_config("text_encoder/config.json") or {}
        width = te.get("hidden_size") or te.get("projection_dim")
        if (family := families.by_text_width(width, among=candidates)) is not None:
            return family
        unet = read_config("unet/config.json") or {}
        if (family := families.by_cross_width(unet.get("cross_attention_dim"), among=candidates)) is not None:
            return family
        # Small test models (and odd fine-tunes) have other widths.
        return families.FALLBACK if families.FALLBACK in candidates else candidates[0]
    raise ModelError(
        f"{where}: unsupported model family ({cls or 'unknown pipeline'}); "
        f"LoRA Loom supports {families.supported_labels()}"
    )


def family_from_checkpoint(path: Path) -> Family:
    """Family of an original-layout (A1111/ComfyUI) checkpoint, from tensor names and shapes."""
    if path.suffix.lower() == ".ckpt":
        # Pickle files cannot be inspected without unpickling; diffusers detects them itself.
        return families.FALLBACK
    return checkpoint_info(path).family


def checkpoint_info(path: Path) -> CheckpointInfo:
    """Family and variant of a ``.safetensors`` checkpoint, read from its header alone."""
    try:
        header = read_header(path)
    except SafetensorsError as exc:
        raise ModelError(str(exc)) from None
    shapes = {k: v.get("shape") or [] for k, v in header.tensors.items()}
    dtypes = {k: str(v.get("dtype", "")) for k, v in header.tensors.items()}
    try:
        return detect_checkpoint(shapes, header.metadata, read_sidecar_yaml(path), dtypes)
    except CheckpointProblem as exc:
        raise ModelError(f"{path}: {exc}") from None


# ---------------------------------------------------------------- loading


def _pipeline_class(family: Family):
    quiet_loading()
    return engine(family).pipeline_class()


def quiet_loading() -> None:
    """No per-load progress bars or torchvision notices in the worker log or the CLI."""
    # Read by transformers when it is first imported (diffusers imports it).
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    for name in _PROMPT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ShortLogLines) for f in logger.filters):
            logger.addFilter(ShortLogLines())


# The pipelines whose encode_prompt logs the whole part of a prompt or caption that CLIP cut off.
_PROMPT_LOGGERS = (
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl",
)


class ShortLogLines(logging.Filter):
    """Cut a log message to its first MAX characters (a long caption made one 40 MB line per step)."""

    MAX = 1000

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > self.MAX:
            record.msg, record.args = f"{message[: self.MAX]}… ({len(message) - self.MAX:,} more characters)", None
        return True


def _common_kwargs(family: Family, dtype: torch.dtype) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": dtype}
    kwargs.update(engine(family).load_kwargs())
    return kwargs


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from, checked before anything heavy is loaded."""

    text: str
    kind: str  # "folder" | "file" | "hub"
    family: Family | None  # known up front for local models; read from the Hub later


def check_source(base: str) -> ModelSource:
    """Cheap checks (existence, layout, header) so a bad path fails before any unload/load."""
    source = base.strip()
    if model_choice.has_companions(source):
        return _check_files(source)
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir():
            return ModelSource(str(path), "folder", family_from_folder(path))
        if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
            family = family_from_checkpoint(path)
            if path.suffix.lower() == ".safetensors":
                info = checkpoint_info(path)
                if problem := engine(family).companion_problem(model_choice.ModelChoice(str(path)), info):
                    raise ModelError(f"{path}: {problem}")
            return ModelSource(str(path), "file", family)
        raise ModelError(f"{path}: not a model (expected a diffusers folder or a .safetensors/.ckpt file)")
    if _looks_like_path(source):
        raise ModelError(f"{path}: no such file or folder", kind=ErrorKind.MODEL_NOT_FOUND)
    if _REPO_ID.match(source):
        return ModelSource(source, "hub", None)
    raise ModelError(
        f"{source!r}: neither an existing path nor a Hub repo id like 'owner/name'",
        kind=ErrorKind.MODEL_NOT_FOUND,
    )


def _check_files(source: str) -> ModelSource:
    """A file with companion files (a Flux.1 transformer with its text encoders and VAE)."""
    try:
        choice = model_choice.parse(source)
    except model_choice.ModelChoiceError as exc:
        raise ModelError(str(exc)) from None
    for key, path in [("main", choice.main)] + list(choice.companions.items()):
        p = Path(path)
        if key in ("t5_tokenizer", "config"):
            if not p.is_dir():
                raise ModelError(
                    f"{p}: no such folder ({model_choice.COMPANIONS[key]})", kind=ErrorKind.MODEL_NOT_FOUND
                )
        elif not p.is_file():
            what = "the model file" if key == "main" else model_choice.COMPANIONS[key]
            raise ModelError(f"{p}: no such file ({what})", kind=ErrorKind.MODEL_NOT_FOUND)
        elif p.suffix.lower() != ".safetensors":
            raise ModelError(f"{p}: companion files and their model must be .safetensors files")
    info = checkpoint_info(Path(choice.main))
    if problem := engine(info.family).companion_problem(choice, info):
        raise ModelError(f"{choice.main}: {problem}")
    return ModelSource(choice.text(), "file", info.family)


def source_distilled(source: ModelSource) -> bool:
    """Whether a local diffusers folder holds its family's timestep-distilled model (Flux.1
    [schnell]), read from the denoiser's config before anything loads (False when unknown)."""
    if source.kind != "folder" or source.family is None:
        return False
    folder = Path(source.text)
    config = _read_json(folder / "transformer" / "config.json") or _read_json(folder / "unet" / "config.json")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    return isinstance(config, dict) and engine(source.family).model_distilled(config, scheduler)


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load ``spec.base`` onto the chosen device. Raises :class:`ModelError`."""
    source = check_source(spec.base)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    if source.kind == "folder":
        pipe, family = _load_folder(Path(source.text), source.family, dtype)
    elif source.kind == "file":
        pipe, family = _load_single_file(source.text, source.family, dtype)
    else:
        pipe, family = _load_hub(source.text, dtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    log.info("loaded %s (%s) on %s as %s", source.text, family.value, device, dtype)
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    scheduler = getattr(getattr(pipe, "scheduler", None), "config", None)
    distilled = engine(family).model_distilled(denoiser.config, scheduler)
    return LoadedModel(
        pipe=pipe, source=spec.base.strip(), family=family, device=device, dtype=dtype, distilled=distilled
    )


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith(("/", "~", ".", "\\"))
        or (len(source) > 1 and source[1] == ":")
        or source.lower().endswith(SINGLE_FILE_SUFFIXES)
        or source.count("/") > 1
    )


def _load_folder(folder: Path, family: Family, dtype: torch.dtype):
    cls = _pipeline_class(family)
    try:
        pipe = cls.from_pretrained(str(folder), local_files_only=True, **_common_kwargs(family, dtype))
    except _LOAD_ERRORS as exc:
        raise ModelError(
            f"{folder}: the model folder is incomplete or damaged ({_first_line(exc)})", detail=repr(exc)
        ) from None
    return pipe, family


def _load_single_file(text: str, family: Family, dtype: torch.dtype):
    """Load with the bundled config of the detected variant: nothing is fetched from the Hub
    (but Flux's T5 tokenizer, once). ``text`` is the file, or the file with its companions."""
    choice = model_choice.parse(text)
    path = Path(choice.main)
    kwargs = _common_kwargs(family, dtype)
    if path.suffix.lower() == ".safetensors":
        info = checkpoint_info(path)
        if info.refiner or info.inpainting:
            kind = "an SDXL refiner" if info.refiner else f"an inpainting {family.value} model"
            raise ModelError(f"{path}: this checkpoint is {kind}; LoRA Loom loads base text-to-image models")
        eng = engine(family)
        if problem := eng.single_file_problem(info) or eng.companion_problem(choice, info):
            raise ModelError(f"{path}: {problem}")
        try:
            pipe = eng.load_files(choice, info, dtype)
        except CheckpointProblem as exc:  # the family's loader names the file in its sentence
            raise ModelError(str(exc), kind=getattr(exc, "kind", ErrorKind.BAD_INPUT)) from None
        if pipe is not None:
            return pipe, family
        kwargs.update(config=str(config_folder(info.variant)), local_files_only=True)
    # .ckpt files are pickles: diffusers' own detection decides (and may need the Hub once).
    cls = _pipeline_class(family)
    try:
        pipe = cls.from_single_file(str(path), **kwargs)
    except _LOAD_ERRORS as exc:
        raise ModelError(
            f"{path}: could not load this checkpoint as {family.value} ({_first_line(exc)})",
            detail=repr(exc),
        ) from None
    return pipe, family


def hub_cached(repo_id: str) -> bool:
    """Whether any snapshot of the Hub model is in huggingface_hub's cache (no network)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    snapshots = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots"
    try:
        return snapshots.is_dir() and any(snapshots.iterdir())
    except OSError:
        return False


def _hub_unreachable(exc: BaseException) -> bool:
    """Whether a loader's exception (or one it wraps) says the Hub could not be contacted."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: BaseException | None = exc
    for _ in range(8):  # a short walk down __cause__/__context__
        if seen is None:
            return False
        name = type(seen).__name__
        if isinstance(seen, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)) or name in (
            "ConnectError",
            "ConnectTimeout",
            "ProxyError",
            "NameResolutionError",
        ):
            return True
        text = str(seen).lower()
        if "offline" in text or "cannot reach" in text or "connection" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _hub_answers(timeout: float = 5.0) -> bool:
    """One small request to the Hub's endpoint: some loaders (transformers) hide the connection
    error behind "Can't load …", so after a failure on an uncached model we ask directly."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # noqa: BLE001 - any transport failure means "cannot be reached"
        return False
    return True


def check_hub_available(repo_id: str, error: type[ModelError] | None = None) -> None:
    """Before loading a Hub id that is not in the cache: offline (HF_HUB_OFFLINE, or the Hub does
    not answer) is one clear sentence at once, instead of minutes of the loaders' retries."""
    from huggingface_hub import constants

    if hub_cached(repo_id):
        return
    if constants.HF_HUB_OFFLINE or not _hub_answers():
        raise (error or ModelError)(not_downloaded_message(repo_id), kind=ErrorKind.MODEL_NOT_FOUND)


def hub_load_error(repo_id: str, exc: BaseException, what: str, error: type[ModelError] | None = None) -> ModelError:
    """A Hub loader's failure as one sentence; not on disk and unreachable reads as such."""
    cls = error or ModelError
    if not hub_cached(repo_id) and (_hub_unreachable(exc) or not _hub_answers()):
        return cls(not_downloaded_message(repo_id), kind=ErrorKind.MODEL_NOT_FOUND, detail=repr(exc))
    return cls(
        f"{repo_id}: could not load {what} ({_first_line(exc)})",
        kind=ErrorKind.MODEL_NOT_FOUND,
        detail=f"{type(exc).__name__}: {exc}",
    )


def _load_hub(repo_id: str, dtype: torch.dtype):
    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
    )

    check_hub_available(repo_id)
    try:
        index = DiffusionPipeline.load_config(repo_id)
        family = _family_from_index(index, lambda name: _hub_json(repo_id, name), repo_id)
        pipe = _pipeline_class(family).from_pretrained(repo_id, **_common_kwargs(family, dtype))
    except GatedRepoError as exc:  # huggingface_hub sends the saved token; this says what is missing
        raise ModelError(gated_sentence(repo_id, exc, repo_id), kind=ErrorKind.MODEL_NOT_FOUND) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"{repo_id}: no such model repo on the Hugging Face Hub", kind=ErrorKind.MODEL_NOT_FOUND
        ) from None
    except (OSError, ValueError) as exc:  # LocalEntryNotFoundError is an OSError
        raise hub_load_error(repo_id, exc, "from the Hub") from None
    return pipe, family


def _hub_json(repo_id: str, name: str) -> dict | None:
    from huggingface_hub import hf_hub_download

    try:
        return _read_json(Path(hf_hub_download(repo_id, name)))
    except Exception:  # a missing sub-config just means "decide by the pipeline class"
        return None


def _first_line(exc: BaseException) -> str:
    return clip_words(str(exc)) or type(exc).__name__


# What a damaged or incomplete model makes the loaders raise (safetensors has its own type).
_LOAD_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)
