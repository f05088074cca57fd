"""MaskRequest: the settings of one automatic-masking run (worker job ``mask``).

CLIPSeg finds what a text prompt names ("person", "the cat") in every picture; the answer
is saved as the picture's ``name.mask.png`` sidecar (:mod:`app.core.dataset.masks`), which
the user can then edit in any paint program. A picture that already has a sidecar keeps it
unless ``overwrite`` is set: an edited mask is never replaced by surprise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.configs import ConfigError, DevicePref, DtypePref, _Config
from app.core.dataset.caption_config import Skip, requested_items, unusable
from app.core.dataset.masks import sidecar_path
from app.core.dataset.scan import Dataset, ImageItem

DEFAULT_MASK_MODEL = "CIDAS/clipseg-rd64-refined"


@dataclass
class MaskRequest(_Config):
    folder: str = ""
    prompt: str = "subject"  # what to keep: "person", "the dog", "a red car"
    model: str = ""  # Hub id or local folder; "" = CIDAS/clipseg-rd64-refined
    threshold: float = 0.4  # probability above which a pixel is kept (white); 0: save the soft mask
    overwrite: bool = False  # replace existing name.mask.png files (edited masks are kept otherwise)
    batch_size: int = 4
    min_side: int = 256  # pictures the scan calls too small are skipped
    files: list = field(default_factory=list)  # only these pictures (a selection); empty: all
    device: DevicePref = DevicePref.AUTO
    dtype: DtypePref = DtypePref.AUTO

    def validate(self, prefix: str = "") -> None:
        if not self.folder.strip():
            raise ConfigError(f"{prefix}folder is empty: pick a dataset folder")
        if not self.prompt.strip() or len(self.prompt) > 200:
            raise ConfigError(f"{prefix}prompt must name what to keep in 1 to 200 characters")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"{prefix}threshold = {self.threshold} must be at least 0 and below 1")
        if not 1 <= self.batch_size <= 256:
            raise ConfigError(f"{prefix}batch_size = {self.batch_size} must be between 1 and 256")
        if not isinstance(self.files, list) or not all(isinstance(f, str) for f in self.files):
            raise ConfigError(f"{prefix}files must be a list of image paths")

    def model_id(self) -> str:
        return self.model.strip() or DEFAULT_MASK_MODEL


def mask_targets(ds: Dataset, request: MaskRequest) -> tuple[list[ImageItem], list[Skip], int]:
    """(pictures to mask, skipped with a reason, pictures left alone because they have a sidecar)."""
    targets: list[ImageItem] = []
    skipped: list[Skip] = []
    kept = 0
    for item in requested_items(ds, request.files):
        if not item.usable:
            skipped.append(unusable(item))
        elif sidecar_path(item.path).is_symlink() or sidecar_path(item.path).is_dir():
            skipped.append(Skip(item.path, f"skipped: {sidecar_path(item.path)} is not a plain file; it is left alone"))
        elif sidecar_path(item.path).exists() and not request.overwrite:
            kept += 1
        else:
            targets.append(item)
    return targets, skipped, kept
