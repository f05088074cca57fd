"""Which backend a model id or folder needs, and loading it onto a device."""

from __future__ import annotations

import json
from collections.abc import Callable

from app.core.dataset.caption_config import CaptionBackend, CaptionRequest
from app.engine.captioning.base import Captioner, CaptionerError, local_folder
from app.engine.models import pick_device, pick_dtype


def _load_blip(source: str, request: CaptionRequest) -> Captioner:
    from app.engine.captioning.blip import BlipCaptioner

    device = pick_device(request.device)
    return BlipCaptioner(source, device, pick_dtype(request.dtype, device))


def _load_florence(source: str, request: CaptionRequest) -> Captioner:
    from app.engine.captioning.florence import FlorenceCaptioner

    device = pick_device(request.device)
    return FlorenceCaptioner(source, device, pick_dtype(request.dtype, device))


def _load_wd14(source: str, request: CaptionRequest) -> Captioner:
    from app.engine.captioning.wd_tagger import WdTagger

    return WdTagger(source, use_gpu=pick_device(request.device).type == "cuda")


def _load_vlm(source: str, request: CaptionRequest) -> Captioner:
    from app.engine.captioning.vlm import VlmCaptioner

    device = pick_device(request.device)
    return VlmCaptioner(source, device, pick_dtype(request.dtype, device), load_in_4bit=request.load_in_4bit)


# How to load each backend; what they are called is core's (caption_config.BACKEND_LABELS).
BACKENDS: dict[CaptionBackend, Callable[[str, CaptionRequest], Captioner]] = {
    CaptionBackend.BLIP: _load_blip,
    CaptionBackend.FLORENCE: _load_florence,
    CaptionBackend.WD14: _load_wd14,
    CaptionBackend.VLM: _load_vlm,
}

# config.json model_type of the vision-language chat models (JoyCaption is a LLaVA).
VLM_MODEL_TYPES = ("llava", "qwen2_5_vl", "qwen2_vl")


def detect_backend(model: str, backend: CaptionBackend | str = CaptionBackend.AUTO) -> CaptionBackend:
    """The backend for a model: explicit choice, else the local folder's files, else the Hub id's name."""
    backend = CaptionBackend(backend)
    if backend is not CaptionBackend.AUTO:
        return backend
    if not model.strip():
        return CaptionBackend.BLIP
    folder = local_folder(model)
    if folder is not None:
        if (folder / "model.onnx").is_file() and (folder / "selected_tags.csv").is_file():
            return CaptionBackend.WD14
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        model_type = str(config.get("model_type", "")).lower()
        if model_type.startswith("blip"):
            return CaptionBackend.BLIP
        if model_type.startswith("florence"):
            return CaptionBackend.FLORENCE
        if model_type in VLM_MODEL_TYPES:
            return CaptionBackend.VLM
        raise CaptionerError(
            f"{folder}: not a known captioning model (expected a BLIP, Florence-2, LLaVA or Qwen2.5-VL "
            "transformers folder, or a WD tagger with model.onnx and selected_tags.csv)"
        )
    name = model.lower()
    if "florence" in name:
        return CaptionBackend.FLORENCE
    if "tagger" in name or "wd-" in name or "wd14" in name:
        return CaptionBackend.WD14
    if "blip" in name:
        return CaptionBackend.BLIP
    if any(word in name for word in ("joycaption", "llava", "qwen2.5-vl", "qwen2-vl")):
        return CaptionBackend.VLM
    choices = ", ".join(b.value for b in CaptionBackend if b is not CaptionBackend.AUTO)
    raise CaptionerError(f"{model}: cannot tell which captioner this is; choose the backend ({choices}) explicitly")


def load_captioner(request: CaptionRequest) -> Captioner:
    """Load the request's model (Hub id via the huggingface_hub cache, or a local folder)."""
    backend = detect_backend(request.model, request.backend)
    source = request.model_id(backend)
    return BACKENDS[backend](source, request)


def captioner_key(request: CaptionRequest) -> tuple[str, ...]:
    """What identifies a loaded captioner (the worker reuses it while this stays the same)."""
    backend = detect_backend(request.model, request.backend)
    four_bit = "4bit" if backend is CaptionBackend.VLM and request.load_in_4bit else ""
    return (backend.value, request.model_id(backend), request.device.value, request.dtype.value, four_bit)
