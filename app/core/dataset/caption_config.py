"""CaptionRequest: the settings of one auto-captioning run (GUI, worker job ``caption``, CLI).

Also the pure-Python rules shared by every backend: which images a run touches
(:func:`caption_targets`) and how a generated caption is combined with the existing one,
the prefix (trigger word) and the suffix (:func:`compose_caption`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from app.core.configs import ConfigError, DevicePref, DtypePref, _Config
from app.core.dataset.captions import DEFAULT_SEPARATOR, is_read_only, join_tags, split_tags
from app.core.dataset.problems import ProblemKind
from app.core.dataset.scan import Dataset, ImageItem


class CaptionMode(str, Enum):
    FILL = "fill"  # only images without a caption
    REPLACE = "replace"  # every image; the old caption is replaced
    APPEND = "append"  # every image; new tags are added after the old ones


class CaptionBackend(str, Enum):
    AUTO = "auto"  # from the model id or the folder's files
    BLIP = "blip"
    FLORENCE = "florence"
    WD14 = "wd14"
    VLM = "vlm"  # a vision-language chat model (JoyCaption = LLaVA, Qwen2.5-VL) answering a prompt


# What each backend writes, in the words the Caption dialog and ``loraloom caption --help`` show.
BACKEND_LABELS: dict[CaptionBackend, str] = {
    CaptionBackend.BLIP: "BLIP — a sentence",
    CaptionBackend.FLORENCE: "Florence-2 — a detailed description (PromptGen: tags too)",
    CaptionBackend.WD14: "WD tagger (v2, v3, EVA02) — booru tags",
    CaptionBackend.VLM: "Vision-language model (JoyCaption, Qwen2.5-VL) — answers your prompt",
}

# Whether each backend captions on a CPU in reasonable time: the Caption dialog shows one line each.
CPU_NOTES: dict[CaptionBackend, str] = {
    CaptionBackend.BLIP: "BLIP: fine on a CPU (seconds an image).",
    CaptionBackend.FLORENCE: "Florence-2: base models fine on a CPU; large ones slow.",
    CaptionBackend.WD14: "WD tagger: fast on a CPU (under a second an image).",
    CaptionBackend.VLM: "Vision-language model: needs a GPU; on a CPU each image takes minutes.",
}

DEFAULT_MODELS: dict[CaptionBackend, str] = {
    CaptionBackend.BLIP: "Salesforce/blip-image-captioning-large",
    CaptionBackend.FLORENCE: "florence-community/Florence-2-large",
    CaptionBackend.WD14: "SmilingWolf/wd-vit-tagger-v3",
    CaptionBackend.VLM: "fancyfeast/llama-joycaption-beta-one-hf-llava",
}

# Models offered by name in the dialog's model field (any other Hub id or folder works too).
KNOWN_MODELS: dict[CaptionBackend, tuple[str, ...]] = {
    CaptionBackend.BLIP: ("Salesforce/blip-image-captioning-large", "Salesforce/blip-image-captioning-base"),
    CaptionBackend.FLORENCE: (
        "florence-community/Florence-2-large",
        "florence-community/Florence-2-base",
        "MiaoshouAI/Florence-2-base-PromptGen-v2.0",
        "MiaoshouAI/Florence-2-large-PromptGen-v2.0",
    ),
    # SmilingWolf's v3 taggers: model.onnx (N×448×448×3 BGR 0-255) + selected_tags.csv, like v2.
    CaptionBackend.WD14: (
        "SmilingWolf/wd-eva02-large-tagger-v3",
        "SmilingWolf/wd-vit-large-tagger-v3",
        "SmilingWolf/wd-vit-tagger-v3",
        "SmilingWolf/wd-swinv2-tagger-v3",
        "SmilingWolf/wd-convnext-tagger-v3",
        "SmilingWolf/wd-v1-4-moat-tagger-v2",
    ),
    CaptionBackend.VLM: ("fancyfeast/llama-joycaption-beta-one-hf-llava", "Qwen/Qwen2.5-VL-3B-Instruct"),
}

# Florence-2 task prompts: the base model's three, then those MiaoshouAI's PromptGen v2.0 documents.
FLORENCE_TASKS: dict[str, str] = {
    "<CAPTION>": "a short caption",
    "<DETAILED_CAPTION>": "a detailed caption",
    "<MORE_DETAILED_CAPTION>": "a very detailed caption",
    "<GENERATE_TAGS>": "booru tags (PromptGen)",
    "<ANALYZE>": "the image's composition (PromptGen)",
    "<MIXED_CAPTION>": "tags and a caption mixed (PromptGen)",
    "<MIXED_CAPTION_PLUS>": "tags, caption and analysis (PromptGen)",
}

DEFAULT_VLM_PROMPT = "Write a descriptive caption for this image in a formal tone."


@dataclass
class CaptionRequest(_Config):
    folder: str = ""
    model: str = ""  # Hub id or local folder; "" = the backend's default
    backend: CaptionBackend = CaptionBackend.AUTO
    mode: CaptionMode = CaptionMode.FILL
    prefix: str = ""  # e.g. the trigger word: put first
    suffix: str = ""
    batch_size: int = 8
    separator: str = DEFAULT_SEPARATOR
    min_side: int = 256  # images the scan calls too small are skipped
    files: list = field(default_factory=list)  # only these images (a selection); empty: all
    device: DevicePref = DevicePref.AUTO
    dtype: DtypePref = DtypePref.AUTO
    # text generators (BLIP, Florence-2)
    max_new_tokens: int = 60
    num_beams: int = 1
    florence_task: str = "<DETAILED_CAPTION>"
    # WD14 tagger
    general_threshold: float = 0.35
    character_threshold: float = 0.85
    max_tags: int = 0  # 0: no limit
    exclude_tags: str = ""  # separated by commas
    underscores_to_spaces: bool = True
    # vision-language model: a prompt template ({tags}: the image's caption now, {trigger}: the prefix)
    vlm_prompt: str = DEFAULT_VLM_PROMPT
    discouraged_words: str = ""  # separated by commas: never generated
    load_in_4bit: bool = False  # bitsandbytes 4-bit weights (a CUDA GPU)

    def validate(self, prefix: str = "") -> None:
        if not self.folder.strip():
            raise ConfigError(f"{prefix}folder is empty: pick a dataset folder")
        if not 1 <= self.batch_size <= 1024:
            raise ConfigError(f"{prefix}batch_size = {self.batch_size} must be between 1 and 1024")
        if not 1 <= self.max_new_tokens <= 1024:
            raise ConfigError(f"{prefix}max_new_tokens = {self.max_new_tokens} must be between 1 and 1024")
        if not 1 <= self.num_beams <= 16:
            raise ConfigError(f"{prefix}num_beams = {self.num_beams} must be between 1 and 16")
        for name in ("general_threshold", "character_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{prefix}{name} = {value} must be between 0 and 1")
        if self.max_tags < 0:
            raise ConfigError(f"{prefix}max_tags = {self.max_tags} must be 0 (no limit) or more")
        if self.min_side < 0:
            raise ConfigError(f"{prefix}min_side = {self.min_side} must be 0 or more")
        if not isinstance(self.files, list) or not all(isinstance(f, str) for f in self.files):
            raise ConfigError(f"{prefix}files must be a list of image paths")
        if not self.separator:
            raise ConfigError(f"{prefix}separator is empty")
        if self.florence_task not in FLORENCE_TASKS:
            raise ConfigError(
                f"{prefix}florence_task = {self.florence_task!r} is not one of {', '.join(FLORENCE_TASKS)}"
            )
        if not self.vlm_prompt.strip():
            raise ConfigError(f"{prefix}vlm_prompt is empty: say what the model should write")
        try:
            fill_prompt(self.vlm_prompt, "", "")
        except ConfigError as exc:
            raise ConfigError(f"{prefix}vlm_prompt: {exc}") from None

    def model_id(self, backend: CaptionBackend) -> str:
        return self.model.strip() or DEFAULT_MODELS[backend]

    def excluded(self) -> set[str]:
        """Excluded tags, compared with underscores as spaces (``long_hair`` == ``long hair``)."""
        return {t.strip().replace("_", " ") for t in self.exclude_tags.split(",") if t.strip()}

    def discouraged(self) -> list[str]:
        return list(dict.fromkeys(w.strip() for w in self.discouraged_words.split(",") if w.strip()))


def fill_prompt(template: str, tags: str, trigger: str) -> str:
    """A taggui-style prompt: ``{tags}`` is the image's caption now, ``{trigger}`` the trigger word."""
    import string

    try:
        fields = [f for _lit, f, _spec, _conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"{template!r} is not a valid template ({exc}); write {{{{ and }}}} for braces") from None
    unknown = sorted({f for f in fields if f not in ("tags", "trigger")})
    if unknown:
        raise ConfigError(f"{template!r} uses {{{unknown[0]}}}; only {{tags}} and {{trigger}} are filled in")
    return template.format(tags=tags, trigger=trigger).strip()


# ---------------------------------------------------------------- which images


@dataclass
class Skip:
    path: Path
    reason: str  # one sentence naming the file


def requested_items(ds: Dataset, files: list[str]) -> list[ImageItem]:
    """The dataset's pictures a job asks for: ``files`` (any spelling of their paths), or all."""
    if not files:
        return list(ds.items)
    wanted = {Path(f).expanduser().resolve() for f in files}
    return [i for i in ds.items if i.path in wanted]


def unusable(item: ImageItem) -> Skip:
    """The skip of a picture with a blocking problem, naming the problem."""
    return Skip(item.path, f"skipped: {next(p.message for p in item.problems if p.blocking)}")


def caption_targets(ds: Dataset, request: CaptionRequest) -> tuple[list[ImageItem], list[Skip], int]:
    """(images to caption, skipped with a reason, images left alone because they have a caption)."""
    targets: list[ImageItem] = []
    skipped: list[Skip] = []
    kept = 0
    for item in requested_items(ds, request.files):
        if not item.usable:
            skipped.append(unusable(item))
            continue
        if request.mode is CaptionMode.FILL and item.has_caption:
            kept += 1
            continue
        if item.has_problem(ProblemKind.CAPTION_NOT_UTF8) and request.mode is not CaptionMode.FILL:
            skipped.append(
                Skip(
                    item.path,
                    f"skipped: {item.caption_path} is not UTF-8 and is never "
                    "overwritten by auto-captioning; fix or re-save it first",
                )
            )
            continue
        if is_read_only(item.caption_path):
            skipped.append(Skip(item.path, f"skipped: {item.caption_path} is read-only"))
            continue
        targets.append(item)
    return targets, skipped, kept


def compose_caption(existing: str, generated: str, request: CaptionRequest) -> str:
    """Mode, prefix and suffix applied to a generated caption (the prefix ends up first)."""
    sep = request.separator
    new_tags = split_tags(generated, sep)
    if request.mode is CaptionMode.APPEND:
        tags = split_tags(existing, sep)
        tags += [t for t in new_tags if t not in tags]
    else:
        tags = new_tags
    prefix = split_tags(request.prefix, sep)
    suffix = split_tags(request.suffix, sep)
    middle = [t for t in tags if t not in prefix and t not in suffix]
    return join_tags(prefix + middle + suffix, sep)


__all__ = [
    "CPU_NOTES",
    "DEFAULT_MODELS",
    "FLORENCE_TASKS",
    "KNOWN_MODELS",
    "fill_prompt",
    "CaptionBackend",
    "CaptionMode",
    "CaptionRequest",
    "Skip",
    "caption_targets",
    "compose_caption",
]
