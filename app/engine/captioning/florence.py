"""Florence-2 detailed captions through transformers' native Florence2 classes.

The default is ``florence-community/Florence-2-large`` (the layout transformers loads
without remote code). The task prompt is a setting (``<DETAILED_CAPTION>`` by default;
``<CAPTION>`` and ``<MORE_DETAILED_CAPTION>`` also work).
"""

from __future__ import annotations

import torch
from PIL import Image

from app.core.dataset.caption_config import CaptionRequest
from app.engine.captioning.base import Captioner, CaptionerError, load_processor_and_model
from app.engine.models import quiet_loading

TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>")


class FlorenceCaptioner(Captioner):
    name = "Florence-2"

    def __init__(self, source: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(source)
        quiet_loading()
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.processor, self.model = load_processor_and_model(
            source, AutoProcessor, Florence2ForConditionalGeneration, "Florence-2 captioning model", device, dtype
        )
        self.device, self.dtype = device, dtype

    def caption_batch(self, images: list[Image.Image], request: CaptionRequest) -> list[str]:
        task = request.florence_task
        if task not in TASKS:
            raise CaptionerError(f"florence_task {task!r} is not one of {', '.join(TASKS)}")
        inputs = self.processor(text=[task] * len(images), images=images, return_tensors="pt")
        inputs = {
            k: (v.to(self.device, self.dtype) if k == "pixel_values" else v.to(self.device)) for k, v in inputs.items()
        }
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=request.max_new_tokens, num_beams=request.num_beams)
        texts = self.processor.batch_decode(out, skip_special_tokens=False)
        results = []
        for text, ids, image in zip(texts, out, images):
            try:
                parsed = self.processor.post_process_generation(text, task=task, image_size=image.size)
                value = parsed.get(task, "") if isinstance(parsed, dict) else parsed
            except ValueError:  # a processor saved without post-processing rules: plain decoding
                value = self.processor.decode(ids, skip_special_tokens=True)
            results.append(str(value).replace("<pad>", "").strip())
        return results

    def close(self) -> None:
        del self.model
