"""What a running job reports, as types: the one vocabulary of the engine, the worker and the GUI.

Pure Python (no Qt, no torch). The engine reports through these (a trainer calls
``on_event(Progress(...))``), the worker sends them on unchanged, and
:mod:`app.worker.protocol` is the only place that turns them into JSON lines and back. A
reader compares enums and reads fields; nobody parses a sentence such as "caching latents 3/8".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ArtifactKind(str, Enum):
    """What a saved file is."""

    RUN = "run"  # a training run folder (resume from it)
    CHECKPOINT = "checkpoint"  # an intermediate adapter file of a training run
    ADAPTER = "adapter"  # a finished adapter file (end of training, bake, convert)
    CAPTION = "caption"  # a caption sidecar was written
    MASK = "mask"  # a loss-mask sidecar (name.mask.png) was written
    IMAGE = "image"  # a picture file that is not a render of this job (e.g. a copied sample)
    GRID = "grid"  # an X/Y grid picture


class Phase(str, Enum):
    """Which part of a job a :class:`Progress` counts."""

    LOADING = "loading"  # loading a model: step/total are 0/1 or 0/0
    CACHING = "caching"  # training: encoding latents and prompts, step/total count pictures
    TRAINING = "training"  # training steps
    RENDERING = "rendering"  # denoising steps of one picture
    BAKING = "baking"  # layers merged into one adapter
    CAPTIONING = "captioning"  # pictures captioned
    MASKING = "masking"  # pictures given an automatic loss mask


class LogLevel(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Progress:
    """``step`` of ``total`` done in ``phase`` (total 0 = unknown); loss/lr only while training;
    ``val_loss`` at the steps the validation loss was measured ([validation] of a train job)."""

    step: int
    total: int
    phase: Phase | None = None
    eta_s: float | None = None
    loss: float | None = None
    lr: float | None = None
    message: str = ""  # for people only; never parsed
    val_loss: float | None = None


@dataclass(frozen=True)
class ImageReady:
    """A picture this job rendered (a generated image, a training sample)."""

    path: str
    step: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactSaved:
    """A file or folder this job wrote. ``details`` holds what is particular to the kind:
    caption: {"image", "caption", "previous"}; mask: {"image"}; a baked adapter: {"rank", "exact", "relative_error", "layers"}."""

    path: str
    kind: ArtifactKind
    step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogLine:
    """A sentence for the log panel. ``details``: machine-readable companions (e.g. the skipped image)."""

    message: str
    level: LogLevel = LogLevel.INFO
    details: dict[str, Any] = field(default_factory=dict)


JobEvent = Progress | ImageReady | ArtifactSaved | LogLine
