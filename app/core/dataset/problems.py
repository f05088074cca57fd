"""What can be wrong with a dataset image or its caption, in words.

Shared by :mod:`app.core.dataset.scan` (which re-exports both names) and
:mod:`app.core.dataset.captions`, so neither has to import the other at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ProblemKind(str, Enum):
    UNREADABLE = "unreadable"  # cannot be opened at all (permissions, a folder, a dangling link)
    CORRUPT = "corrupt"  # an image signature, but the header is damaged
    TRUNCATED = "truncated"  # the file stops before the image data ends
    ZERO_BYTES = "zero_bytes"
    NOT_AN_IMAGE = "not_an_image"  # an image suffix, but no image inside
    TOO_SMALL = "too_small"  # short side below the min_side setting
    DECOMPRESSION_BOMB = "decompression_bomb"  # over Pillow's pixel limit
    UNUSUAL_MODE = "unusual_mode"  # CMYK, 16-bit, palette, alpha, grayscale: converted at training
    EXIF_ROTATED = "exif_rotated"  # EXIF orientation applied
    WRONG_SUFFIX = "wrong_suffix"  # e.g. a PNG named .jpg: usable, noted
    ANIMATED = "animated"  # several frames: the first one is used
    CAPTION_NOT_UTF8 = "caption_not_utf8"
    CAPTION_UNREADABLE = "caption_unreadable"
    CAPTION_SHARED = "caption_shared"  # a.jpg and a.png both use a.txt
    DUPLICATE = "duplicate"  # same bytes as another image
    EXCLUDED = "excluded"  # the user excluded it from training (app/core/dataset/exclusions.py)
    NO_MASK = "no_mask"  # masked loss is on and the picture has no mask (app/core/dataset/masks.py)
    MASK_UNUSABLE = "mask_unusable"  # its mask is not an image, the wrong size, or a link out of the folder


# Human labels for badges, filters and reports.
PROBLEM_LABELS: dict[ProblemKind, str] = {
    ProblemKind.UNREADABLE: "unreadable",
    ProblemKind.CORRUPT: "corrupt",
    ProblemKind.TRUNCATED: "truncated",
    ProblemKind.ZERO_BYTES: "empty file",
    ProblemKind.NOT_AN_IMAGE: "not an image",
    ProblemKind.TOO_SMALL: "too small",
    ProblemKind.DECOMPRESSION_BOMB: "too many pixels",
    ProblemKind.UNUSUAL_MODE: "converted colours",
    ProblemKind.EXIF_ROTATED: "EXIF rotated",
    ProblemKind.WRONG_SUFFIX: "wrong suffix",
    ProblemKind.ANIMATED: "animated",
    ProblemKind.CAPTION_NOT_UTF8: "caption not UTF-8",
    ProblemKind.CAPTION_UNREADABLE: "caption unreadable",
    ProblemKind.CAPTION_SHARED: "shared caption",
    ProblemKind.DUPLICATE: "duplicate",
    ProblemKind.EXCLUDED: "excluded",
    ProblemKind.NO_MASK: "no mask",
    ProblemKind.MASK_UNUSABLE: "mask unusable",
}


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str  # one sentence, names the problem
    blocking: bool  # True: the image cannot be used for training

    @property
    def label(self) -> str:
        return PROBLEM_LABELS.get(self.kind, self.kind.value)
