"""TrainConfig: every setting of a LoRA training run, as versioned TOML.

A config file is flat settings plus tables::

    preset = "sd15-character"        # optional: start from resources/presets/<name>.toml
    name = "mychar"
    base = "stable-diffusion-v1-5/stable-diffusion-v1-5"

    [[datasets]]
    path = "/pictures/10_mychar"     # kohya "N_name" folders set repeats

    [network]
    rank = 16

Unknown keys are rejected by name and every value error names its field (with the
table it sits in), like the other configs in :mod:`app.core.configs`. Paths are
checked when the run starts (:func:`check_ready` and the engine), not at parse time,
so a preset or a half-written config can still be loaded and edited.
"""

from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from app.core.config_section import _check, _Section
from app.core.configs import ConfigError, DevicePref, Scheduler, _Config
from app.core.train_flow import FlowOptions
from app.core.train_options import EmaOptions, LoraInit, LossOptions
from app.core.train_validation import MaskOptions, ValidationOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_VERSION = 1
PRESETS_DIR = Path(__file__).resolve().parents[2] / "resources" / "presets"
# fullmatch: "$" alone lets a trailing newline through. No trailing space or dot (Windows drops them).
_NAME_OK = re.compile(r"\w(?:[\w.\- ]*[\w\-])?")


class Targets(str, Enum):
    """Which UNet layers get a LoRA."""

    ATTENTION = "attention"  # to_q, to_k, to_v, to_out
    ATTENTION_FF = "attention_ff"  # + feed-forward and proj_in/proj_out (kohya's "LoRA")
    LOCON = "locon"  # + ResNet, down/up-sampler convs and time projections (kohya's "LoCon")
    ALL_LINEAR = "all_linear"  # every linear layer of the blocks (Flux: incl. the modulation layers)


class Optimizer(str, Enum):
    ADAMW = "adamw"
    ADAMW_8BIT = "adamw8bit"  # needs bitsandbytes (GPU)
    PRODIGY = "prodigy"  # learning-rate free; use learning_rate = 1.0


class LRSchedule(str, Enum):
    CONSTANT = "constant"
    COSINE = "cosine"
    LINEAR = "linear"


class MixedPrecision(str, Enum):
    AUTO = "auto"  # bf16 on GPUs that have it, else fp16; fp32 on CPU
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class Prediction(str, Enum):
    AUTO = "auto"  # what the base model's scheduler says
    EPSILON = "epsilon"
    V_PREDICTION = "v_prediction"


@dataclass
class DatasetSpec(_Section):
    path: str = ""
    repeats: int = 0  # 0: from a kohya "N_name" folder name, else 1
    caption: str = ""  # for images without a caption file; empty: the folder name's words
    regularization: bool = False  # class pictures for prior preservation

    def validate(self, prefix: str = "") -> None:
        _check(bool(self.path.strip()), prefix, "path is empty: give the folder of training pictures")
        _check(0 <= self.repeats <= 10000, prefix, f"repeats = {self.repeats} must be between 0 and 10000")


@dataclass
class DataOptions(_Section):
    resolution: int = 512  # training area is resolution x resolution
    bucketing: bool = True  # aspect-ratio buckets; false: centre-crop every picture to a square
    min_bucket: int = 256
    max_bucket: int = 1024
    bucket_step: int = 64
    no_upscale: bool = False  # small pictures get a smaller bucket instead of being enlarged
    min_image_side: int = 256  # shorter sides than this are reported and skipped
    batch_size: int = 1
    caption_dropout: float = 0.05  # share of steps trained with an empty caption
    shuffle_tags: bool = False
    keep_tags: int = 1  # with shuffle_tags: the first N tags stay in place (the trigger)
    separator: str = ", "
    flip: bool = False  # random horizontal flip (not for asymmetric characters)
    reg_weight: float = 1.0  # loss weight of regularization pictures

    def validate(self, prefix: str = "") -> None:
        for name in ("resolution", "min_bucket", "max_bucket"):
            value = getattr(self, name)
            _check(
                64 <= value <= 4096 and value % 64 == 0,
                prefix,
                f"{name} = {value} must be a multiple of 64 between 64 and 4096",
            )
        _check(
            self.bucket_step in (8, 16, 32, 64, 128),
            prefix,
            f"bucket_step = {self.bucket_step} must be 8, 16, 32, 64 or 128",
        )
        _check(
            self.min_bucket <= self.resolution <= self.max_bucket,
            prefix,
            f"resolution = {self.resolution} must lie between min_bucket ({self.min_bucket}) "
            f"and max_bucket ({self.max_bucket})",
        )
        _check(
            1 <= self.min_image_side <= 4096,
            prefix,
            f"min_image_side = {self.min_image_side} must be between 1 and 4096",
        )
        _check(1 <= self.batch_size <= 256, prefix, f"batch_size = {self.batch_size} must be between 1 and 256")
        _check(
            0.0 <= self.caption_dropout <= 1.0,
            prefix,
            f"caption_dropout = {self.caption_dropout} must be between 0 and 1",
        )
        _check(self.keep_tags >= 0, prefix, f"keep_tags = {self.keep_tags} must be 0 or more")
        _check(bool(self.separator), prefix, "separator is empty")
        _check(self.reg_weight >= 0.0, prefix, f"reg_weight = {self.reg_weight} must be 0 or more")


@dataclass
class NetworkOptions(_Section):
    rank: int = 16
    alpha: float = 8.0  # the adapter's scale is alpha / rank
    dropout: float = 0.0
    dora: bool = False
    targets: Targets = Targets.ATTENTION_FF
    conv_rank: int = 0  # for 3x3 convs with targets = "locon"; 0: same as rank
    conv_alpha: float = 0.0  # 0: same as alpha
    train_text_encoder: bool = False
    text_encoder_lr: float = 5e-5
    init: LoraInit = LoraInit.GAUSSIAN  # chosen on bench/learning.py (README "Training")

    def validate(self, prefix: str = "") -> None:
        _check(1 <= self.rank <= 1024, prefix, f"rank = {self.rank} must be between 1 and 1024")
        _check(self.alpha > 0, prefix, f"alpha = {self.alpha} must be more than 0")
        _check(0.0 <= self.dropout < 1.0, prefix, f"dropout = {self.dropout} must be at least 0 and below 1")
        _check(0 <= self.conv_rank <= 1024, prefix, f"conv_rank = {self.conv_rank} must be between 0 and 1024")
        _check(self.conv_alpha >= 0, prefix, f"conv_alpha = {self.conv_alpha} must be 0 or more")
        _check(self.text_encoder_lr > 0, prefix, f"text_encoder_lr = {self.text_encoder_lr} must be more than 0")
        _check(
            not (self.dora and self.init in (LoraInit.PISSA, LoraInit.OLORA)),
            prefix,
            f"init = {self.init.value!r} cannot be combined with dora: use gaussian or kaiming with DoRA",
        )


@dataclass
class OptimizerOptions(_Section):
    kind: Optimizer = Optimizer.ADAMW
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    schedule: LRSchedule = LRSchedule.COSINE
    warmup_steps: int = 0
    max_grad_norm: float = 1.0  # 0: no clipping

    def validate(self, prefix: str = "") -> None:
        _check(0 < self.learning_rate <= 10, prefix, f"learning_rate = {self.learning_rate} must be more than 0")
        _check(self.weight_decay >= 0, prefix, f"weight_decay = {self.weight_decay} must be 0 or more")
        _check(self.warmup_steps >= 0, prefix, f"warmup_steps = {self.warmup_steps} must be 0 or more")
        _check(self.max_grad_norm >= 0, prefix, f"max_grad_norm = {self.max_grad_norm} must be 0 or more")


@dataclass
class OutputOptions(_Section):
    save_every: int = 250  # steps between checkpoints; 0: only the final file
    keep_last: int = 4  # checkpoints kept (the final file always stays); 0: keep all
    diffusers_copy: bool = False  # also write a diffusers/peft-layout copy of the final adapter

    def validate(self, prefix: str = "") -> None:
        _check(self.save_every >= 0, prefix, f"save_every = {self.save_every} must be 0 or more")
        _check(self.keep_last >= 0, prefix, f"keep_last = {self.keep_last} must be 0 or more")


@dataclass
class SampleOptions(_Section):
    every: int = 250  # steps between sample pictures; 0: none
    prompts: list = field(default_factory=list)  # "{trigger}" is replaced by the trigger
    negative: str = ""
    seed: int = 1234  # picture i uses seed + i, the same at every step
    steps: int = 20
    guidance: float = 7.0
    width: int = 0  # 0: the training resolution
    height: int = 0
    scheduler: Scheduler = Scheduler.EULER

    def validate(self, prefix: str = "") -> None:
        _check(self.every >= 0, prefix, f"every = {self.every} must be 0 or more")
        _check(
            isinstance(self.prompts, list) and all(isinstance(p, str) for p in self.prompts),
            prefix,
            f"prompts must be a list of texts, not {self.prompts!r}",
        )
        _check(0 <= self.seed < 2**63, prefix, f"seed = {self.seed} must be 0 or more")
        _check(1 <= self.steps <= 500, prefix, f"steps = {self.steps} must be between 1 and 500")
        _check(0 <= self.guidance <= 50, prefix, f"guidance = {self.guidance} must be between 0 and 50")
        for name in ("width", "height"):
            value = getattr(self, name)
            _check(
                value == 0 or (64 <= value <= 4096 and value % 8 == 0),
                prefix,
                f"{name} = {value} must be 0 (the training size) or a multiple of 8 from 64 to 4096",
            )


_SECTIONS: dict[str, type[_Config]] = {
    "data": DataOptions,
    "network": NetworkOptions,
    "optimizer": OptimizerOptions,
    "output": OutputOptions,
    "sample": SampleOptions,
    "validation": ValidationOptions,
    "masks": MaskOptions,
    "loss": LossOptions,
    "ema": EmaOptions,
    "flow": FlowOptions,
}


@dataclass
class TrainConfig(_Config):
    version: int = CONFIG_VERSION
    preset: str = ""  # informational once loaded: the preset the values started from
    name: str = "lora"  # run folder and file names
    base: str = ""  # Hub id, diffusers folder or single-file checkpoint
    trigger: str = ""  # trigger phrase, written into the adapter's metadata
    output_dir: str = ""  # where run folders go; empty: the app's runs folder
    cache_dir: str = ""  # latent/text cache; empty: the app's shared cache
    seed: int = 42
    steps: int = 1500  # optimizer steps
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    fp8_base: bool = False  # the denoiser's weights stored as float8_e4m3fn, computed in bf16
    mixed_precision: MixedPrecision = MixedPrecision.AUTO
    device: DevicePref = DevicePref.AUTO
    noise_offset: float = 0.0
    min_snr_gamma: float = 5.0  # 0: off
    prediction: Prediction = Prediction.AUTO
    datasets: list = field(default_factory=list)  # list[DatasetSpec]
    data: DataOptions = field(default_factory=DataOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    sample: SampleOptions = field(default_factory=SampleOptions)
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    masks: MaskOptions = field(default_factory=MaskOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    ema: EmaOptions = field(default_factory=EmaOptions)
    flow: FlowOptions = field(default_factory=FlowOptions)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{where or 'config'}: must be a table of settings")
        prefix = f"{where}: " if where else ""
        data = dict(data)
        preset = data.get("preset", "")
        if preset:
            if not isinstance(preset, str):
                raise ConfigError(f"{prefix}preset must be text, not {preset!r}")
            data = merge(preset_dict(preset, where=where), data)
        version = data.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(
                f"{prefix}version = {version!r} is not supported (this build reads version {CONFIG_VERSION})"
            )
        here = where or "config"
        sections: dict[str, Any] = {}
        for name, section_cls in _SECTIONS.items():
            if name in data:
                sections[name] = section_cls.from_dict(data.pop(name), where=f"{here} [{name}]")
        datasets = data.pop("datasets", [])
        if not isinstance(datasets, list):
            raise ConfigError(f"{prefix}datasets must be a list of [[datasets]] tables")
        specs = [DatasetSpec.from_dict(d, where=f"{here} [[datasets]] #{i + 1}") for i, d in enumerate(datasets)]
        obj = super().from_dict(data, where=where)
        obj.datasets = specs
        for name, value in sections.items():
            setattr(obj, name, value)
        return obj

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["datasets"] = [d.to_dict() for d in self.datasets]
        for name in _SECTIONS:
            out[name] = getattr(self, name).to_dict()
        return out

    def validate(self, prefix: str = "") -> None:
        _check(
            bool(_NAME_OK.fullmatch(self.name)) and len(self.name) <= 100,
            prefix,
            f"name = {self.name!r} must be letters, digits, spaces, '.', '-' or '_', not ending in a space "
            "or '.' (at most 100)",
        )
        _check(0 <= self.seed < 2**32, prefix, f"seed = {self.seed} must be between 0 and 4294967295")
        _check(1 <= self.steps <= 10_000_000, prefix, f"steps = {self.steps} must be 1 or more")
        _check(
            1 <= self.gradient_accumulation <= 1024,
            prefix,
            f"gradient_accumulation = {self.gradient_accumulation} must be between 1 and 1024",
        )
        _check(0.0 <= self.noise_offset <= 1.0, prefix, f"noise_offset = {self.noise_offset} must be between 0 and 1")
        _check(self.min_snr_gamma >= 0, prefix, f"min_snr_gamma = {self.min_snr_gamma} must be 0 (off) or more")

    def check_ready(self, where: str = "") -> None:
        """What a config needs before a run can start (presets may leave these empty)."""
        prefix = f"{where}: " if where else ""
        _check(bool(self.base.strip()), prefix, "base is empty: give a Hub id, a model folder or a .safetensors file")
        _check(
            any(not d.regularization for d in self.datasets),
            prefix,
            "no dataset: add a [[datasets]] table with the path of your training pictures",
        )

    def sample_prompts(self) -> list[str]:
        trigger = self.trigger.strip()
        return [p.replace("{trigger}", trigger).strip(" ,") for p in self.sample.prompts]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; tables merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def preset_dict(name: str, *, where: str = "") -> dict[str, Any]:
    prefix = f"{where}: " if where else ""
    path = PRESETS_DIR / f"{name}.toml"
    if not name or "/" in name or "\\" in name or not path.is_file():
        raise ConfigError(f"{prefix}preset = {name!r} is not one of {', '.join(map(repr, preset_names()))}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    data["preset"] = name
    return data


def load_preset(name: str) -> TrainConfig:
    return TrainConfig.from_dict(preset_dict(name), where=str(PRESETS_DIR / f"{name}.toml"))


def load_run_config(path: str | Path) -> TrainConfig:
    """A run's own config.toml holds every value: read it without re-applying its preset
    (which may have changed, or be missing in another install, since the run started)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    preset = data.pop("preset", "")
    config = TrainConfig.from_dict(data, where=str(path))
    config.preset = preset if isinstance(preset, str) else ""
    return config


# ---------------------------------------------------------------- settings that cannot work


@dataclass
class SettingProblem:
    """A combination of settings that would fail or train badly, with the change that fixes it."""

    key: str  # the setting to point at, as "section.name" (or a top-level name)
    message: str  # one sentence naming the values
    fix_label: str  # what the fix button says
    fix: dict[str, Any]  # the settings the fix sets, by key


def _number(table: Any, name: str) -> int | None:
    value = table.get(name) if isinstance(table, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def setting_problems(data: dict[str, Any]) -> list[SettingProblem]:
    """What cannot work in a config table (``TrainConfig.to_dict()`` shape, not yet validated).

    Checked before a run starts, so the form can offer each fix: a resolution outside the
    bucket range, a warmup as long as the run, a preset trained at another resolution.
    """
    problems: list[SettingProblem] = []
    section = data.get("data")
    resolution, low, high = (_number(section, k) for k in ("resolution", "min_bucket", "max_bucket"))
    if resolution and low and high and not low <= resolution <= high:
        low, high = min(low, resolution), max(high, resolution)
        problems.append(
            SettingProblem(
                "data.resolution",
                f"resolution = {resolution} lies outside min_bucket ({section['min_bucket']}) … max_bucket "
                f"({section['max_bucket']}): no picture could be trained at it",
                f"Set the bucket range to {low}–{high}",
                {"data.min_bucket": low, "data.max_bucket": high},
            )
        )
    steps, warmup = _number(data, "steps"), _number(data.get("optimizer"), "warmup_steps")
    if steps and warmup is not None and warmup >= steps:
        tenth = steps // 10
        problems.append(
            SettingProblem(
                "optimizer.warmup_steps",
                f"warmup_steps = {warmup} is not below steps = {steps}: the learning rate would never reach its value",
                f"Warm up for {tenth} steps (10%)",
                {"optimizer.warmup_steps": tenth},
            )
        )
    preset = data.get("preset")
    if isinstance(preset, str) and preset in preset_names() and resolution:
        defaults = preset_dict(preset).get("data", {})
        wanted = _number(defaults, "resolution")
        # Within 1.5x is a choice (SD 1.5 at 768); 2x is another family's size (SDXL at 512).
        if wanted and max(wanted, resolution) / min(wanted, resolution) > 1.5:
            fix = {f"data.{k}": defaults[k] for k in ("resolution", "min_bucket", "max_bucket") if k in defaults}
            problems.append(
                SettingProblem(
                    "data.resolution",
                    f"resolution = {resolution} does not suit the preset {preset}, tuned for {wanted} px: use its "
                    f"size, or pick the preset (none) to keep yours",
                    f"Use the preset's {wanted} px",
                    fix,
                )
            )
    return problems


__all__ = [
    "SettingProblem",
    "setting_problems",
    "CONFIG_VERSION",
    "ConfigError",
    "DataOptions",
    "DatasetSpec",
    "LRSchedule",
    "MixedPrecision",
    "NetworkOptions",
    "Optimizer",
    "OptimizerOptions",
    "OutputOptions",
    "Prediction",
    "SampleOptions",
    "Targets",
    "TrainConfig",
    "load_preset",
    "load_run_config",
    "merge",
    "preset_dict",
    "preset_names",
]
