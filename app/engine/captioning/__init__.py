"""Auto-captioning backends (BLIP, Florence-2, WD14 tagger) behind one small interface.

``load_captioner(request)`` picks and loads a backend; ``run_captioning`` captions a
dataset folder in batches with progress, cancel and per-image failure reports.
"""

from app.engine.captioning.base import Captioner, CaptionerError
from app.engine.captioning.registry import BACKENDS, detect_backend, load_captioner
from app.engine.captioning.runner import CaptionCancelled, CaptionSummary, run_captioning

__all__ = [
    "BACKENDS",
    "CaptionCancelled",
    "CaptionSummary",
    "Captioner",
    "CaptionerError",
    "detect_backend",
    "load_captioner",
    "run_captioning",
]
