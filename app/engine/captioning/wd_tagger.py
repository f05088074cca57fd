"""WD14 tagger (SmilingWolf's ``wd-*-tagger-v3`` layout) through onnxruntime.

The layout: ``model.onnx`` (input N×H×W×3 float32, BGR, 0-255, white-padded square;
output N×tags probabilities) and ``selected_tags.csv`` (``tag_id,name,category,count``;
category 9 = rating, 0 = general, 4 = character). Tags above the general / character
thresholds, characters first, then by probability; excluded tags dropped; at most
``max_tags``; underscores become spaces except in kaomoji such as ``^_^``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.core.dataset.caption_config import CaptionRequest
from app.core.dataset.captions import join_tags
from app.core.dataset.scan import to_rgb
from app.core.errors import clip_words
from app.engine.captioning.base import Captioner, CaptionerError, hub_file, local_folder

MODEL_FILE = "model.onnx"
TAGS_FILE = "selected_tags.csv"
CATEGORY_GENERAL = 0
CATEGORY_CHARACTER = 4
CATEGORY_RATING = 9
KAOMOJI = {
    "0_0",
    "(o)_(o)",
    "+_+",
    "+_-",
    "._.",
    "<o>_<o>",
    "<|>_<|>",
    "=_=",
    ">_<",
    "3_3",
    "6_9",
    ">_o",
    "@_@",
    "^_^",
    "o_o",
    "u_u",
    "x_x",
    "|_|",
    "||_||",
}


@dataclass(frozen=True)
class TagInfo:
    name: str
    category: int


def read_tags(path: Path) -> list[TagInfo]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CaptionerError(f"{path}: cannot read the tag list ({exc})") from None
    if not rows or "name" not in rows[0] or "category" not in rows[0]:
        raise CaptionerError(f"{path}: the tag list needs 'name' and 'category' columns")
    try:
        return [TagInfo(r["name"], int(r["category"])) for r in rows]
    except (TypeError, ValueError):
        raise CaptionerError(f"{path}: a 'category' value is not a number") from None


class WdTagger(Captioner):
    name = "WD14 tagger"

    def __init__(self, source: str, use_gpu: bool) -> None:
        super().__init__(source)
        folder = local_folder(source)
        if folder is not None:
            model_path, tags_path = folder / MODEL_FILE, folder / TAGS_FILE
            for p in (model_path, tags_path):
                if not p.is_file():
                    raise CaptionerError(f"{folder}: not a WD14 tagger folder (no {p.name})")
        else:
            model_path, tags_path = hub_file(source, MODEL_FILE), hub_file(source, TAGS_FILE)
        self.tags = read_tags(tags_path)
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if use_gpu and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(model_path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CaptionerError(
                f"{model_path}: not a loadable ONNX model ({clip_words(str(exc), 200)})",
                detail=f"{type(exc).__name__}: {exc}",
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) != 4 or not isinstance(shape[1], int) or shape[3] != 3:
            raise CaptionerError(f"{model_path}: expected an N×H×W×3 image input, found {shape}")
        self.size = int(shape[1])
        self.max_batch = shape[0] if isinstance(shape[0], int) else None
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.tags):
            raise CaptionerError(f"{tags_path}: lists {len(self.tags)} tags but the model has {n_out} outputs")

    def _prepare(self, image: Image.Image) -> np.ndarray:
        image = to_rgb(image)
        side = max(image.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        if side != self.size:
            square = square.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return np.asarray(square, dtype=np.float32)[:, :, ::-1]  # RGB -> BGR

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        batch = np.stack([self._prepare(im) for im in images])
        step = self.max_batch or len(images)
        parts = [self.session.run(None, {self.input_name: batch[i : i + step]})[0] for i in range(0, len(images), step)]
        return np.concatenate(parts, axis=0)

    def caption_batch(
        self, images: list[Image.Image], request: CaptionRequest, existing: list[str] | None = None
    ) -> list[str]:
        probs = self.probabilities(images)
        return [join_tags(self.select(row, request), request.separator) for row in probs]

    def select(self, row: np.ndarray, request: CaptionRequest) -> list[str]:
        excluded = request.excluded()
        characters, general = [], []
        for info, p in zip(self.tags, row.tolist()):
            if info.category == CATEGORY_CHARACTER and p >= request.character_threshold:
                characters.append((p, info.name))
            elif info.category == CATEGORY_GENERAL and p >= request.general_threshold:
                general.append((p, info.name))
        ordered = [n for _p, n in sorted(characters, reverse=True)] + [n for _p, n in sorted(general, reverse=True)]
        out = []
        for name in ordered:
            label = name if (name in KAOMOJI or not request.underscores_to_spaces) else name.replace("_", " ")
            if name.replace("_", " ") in excluded or name in excluded:
                continue
            out.append(label)
        return out[: request.max_tags] if request.max_tags else out
