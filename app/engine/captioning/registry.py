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


# How to load each backend; what they are called is core's (caption_config.BACKEND_LABELS).
BACKENDS: dict[CaptionBackend, Callable[[str, CaptionRequest], Captioner]] = {
    CaptionBackend.BLIP: _load_blip,
    CaptionBackend.FLORENCE: _load_florence,
    CaptionBackend.WD14: _load_wd14,
}


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
        raise CaptionerError(
            f"{folder}: not a known captioning model (expected a BLIP or Florence-2 "
            "transformers folder, or a WD14 tagger with model.onnx and selected_tags.csv)"
        )
    name = model.lower()
    if "florence" in name:
        return CaptionBackend.FLORENCE
    if "tagger" in name or "wd-" in name or "wd14" in name:
        return CaptionBackend.WD14
    if "blip" in name:
        return CaptionBackend.BLIP
    raise CaptionerError(
        f"{model}: cannot tell which captioner this is; choose the backend (blip, florence or wd14) explicitly"
    )


def load_captioner(request: CaptionRequest) -> Captioner:
    """Load the request's model (Hub id via the huggingface_hub cache, or a local folder)."""
    backend = detect_backend(request.model, request.backend)
    source = request.model_id(backend)
    return BACKENDS[backend](source, request)


def captioner_key(request: CaptionRequest) -> tuple[str, str, str, str]:
    """What identifies a loaded captioner (the worker reuses it while this stays the same)."""
    backend = detect_backend(request.model, request.backend)
    return (backend.value, request.model_id(backend), request.device.value, request.dtype.value)
