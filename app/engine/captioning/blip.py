"""BLIP captions through transformers (default ``Salesforce/blip-image-captioning-large``)."""

from __future__ import annotations

import re

import torch
from PIL import Image

from app.core.dataset.caption_config import CaptionRequest
from app.engine.captioning.base import Captioner, load_processor_and_model
from app.engine.models import quiet_loading

# BLIP-large likes to start with a made-up word ("arafed", "araffe" ...): drop it.
_JUNK_START = re.compile(r"^(?:ara+f+e?d?|arafed|araffe)\s+", re.IGNORECASE)


class BlipCaptioner(Captioner):
    name = "BLIP"

    def __init__(self, source: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(source)
        quiet_loading()
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.processor, self.model = load_processor_and_model(
            source, BlipProcessor, BlipForConditionalGeneration, "BLIP captioning model", device, dtype
        )
        self.device, self.dtype = device, dtype

    def caption_batch(
        self, images: list[Image.Image], request: CaptionRequest, existing: list[str] | None = None
    ) -> list[str]:
        inputs = self.processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model.generate(
                pixel_values=pixel_values, max_new_tokens=request.max_new_tokens, num_beams=request.num_beams
            )
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [_JUNK_START.sub("", t.strip()).strip() for t in texts]

    def close(self) -> None:
        del self.model
