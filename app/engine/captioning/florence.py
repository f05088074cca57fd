"""Florence-2 detailed captions through transformers' native Florence2 classes.

The default is ``florence-community/Florence-2-large`` (the layout transformers loads
without remote code). The task prompt is a setting (``<DETAILED_CAPTION>`` by default; the
list is core's ``FLORENCE_TASKS``). PromptGen fine-tunes (MiaoshouAI's v2.0) add prompts such
as ``<GENERATE_TAGS>`` that the stock processor does not know: those reach the model as
written (as PromptGen's own processor sends them) and come back as plain text.
"""

from __future__ import annotations

import torch
from PIL import Image

from app.core.dataset.caption_config import FLORENCE_TASKS, CaptionRequest
from app.engine.captioning.base import Captioner, CaptionerError, load_processor_and_model
from app.engine.models import quiet_loading


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

    def caption_batch(
        self, images: list[Image.Image], request: CaptionRequest, existing: list[str] | None = None
    ) -> list[str]:
        task = request.florence_task
        if task not in FLORENCE_TASKS:  # a request made without validate()
            raise CaptionerError(f"florence_task {task!r} is not one of {', '.join(FLORENCE_TASKS)}")
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
