"""Vision-language chat models as captioners: JoyCaption beta-one (LLaVA) and Qwen2.5-VL.

Both load through transformers' ``AutoModelForImageTextToText`` + ``AutoProcessor``; the
prompt is a taggui-style template (``{tags}``: the image's caption now, ``{trigger}``: the
prefix) sent as one user turn through the processor's chat template. Discouraged words
are banned during generation (each as written and after a space, as the tokenizer sees
it mid-sentence). ``load_in_4bit`` loads bitsandbytes 4-bit weights on a CUDA GPU.
"""

from __future__ import annotations

import torch
from PIL import Image

from app.core.dataset.caption_config import CaptionRequest, fill_prompt
from app.core.errors import ErrorKind
from app.engine.captioning.base import Captioner, CaptionerError, load_processor_and_model
from app.engine.models import quiet_loading

# JoyCaption's model card sends this system turn; Qwen2.5-VL's template adds its own when absent.
SYSTEM_PROMPT = "You are a helpful image captioner."


def four_bit_config(device: torch.device):
    """bitsandbytes' 4-bit NF4 config, or one sentence saying why 4-bit cannot be used here."""
    if device.type != "cuda":
        raise CaptionerError(
            "4-bit loading needs a CUDA GPU; turn 4-bit off to caption on this device",
            kind=ErrorKind.BAD_INPUT,
        )
    try:
        import bitsandbytes  # noqa: F401 - transformers needs it importable for 4-bit weights
    except ImportError:
        raise CaptionerError(
            "4-bit loading needs the bitsandbytes package (pip install bitsandbytes); turn 4-bit off or install it",
            kind=ErrorKind.BAD_INPUT,
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


class VlmCaptioner(Captioner):
    name = "vision-language model"

    def __init__(self, source: str, device: torch.device, dtype: torch.dtype, load_in_4bit: bool = False) -> None:
        super().__init__(source)
        quiet_loading()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        extra = {"quantization_config": four_bit_config(device)} if load_in_4bit else {}
        self.processor, self.model = load_processor_and_model(
            source, AutoProcessor, AutoModelForImageTextToText, "vision-language model", device, dtype, **extra
        )
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None or getattr(self.processor, "chat_template", None) is None:
            raise CaptionerError(
                f"{source}: the vision-language model has no tokenizer or chat template to write a prompt with",
                kind=ErrorKind.MODEL_NOT_FOUND,
            )
        tokenizer.padding_side = "left"  # batched generation continues every prompt at its end
        self.tokenizer = tokenizer
        self.device, self.dtype = device, dtype

    def _prompts(self, count: int, request: CaptionRequest, existing: list[str] | None) -> list[str]:
        captions = existing or [""] * count
        prompts = []
        for caption in captions:
            messages = [
                {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "text", "text": fill_prompt(request.vlm_prompt, caption, request.prefix)},
                    ],
                },
            ]
            prompts.append(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        return prompts

    def _banned(self, request: CaptionRequest) -> list[list[int]] | None:
        """Token sequences of the discouraged words, as written and after a space."""
        banned: list[list[int]] = []
        for word in request.discouraged():
            for form in dict.fromkeys((word, " " + word, word.capitalize(), " " + word.capitalize())):
                ids = self.tokenizer(form, add_special_tokens=False).input_ids
                if ids and ids not in banned:
                    banned.append(ids)
        return banned or None

    def caption_batch(
        self, images: list[Image.Image], request: CaptionRequest, existing: list[str] | None = None
    ) -> list[str]:
        prompts = self._prompts(len(images), request, existing)
        inputs = self.processor(text=prompts, images=images, padding=True, return_tensors="pt")
        inputs = {
            k: (v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device))
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=request.max_new_tokens,
                num_beams=request.num_beams,
                do_sample=False,
                bad_words_ids=self._banned(request),
            )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]

    def close(self) -> None:
        del self.model
