"""Typed, versioned job settings shared by the GUI, the worker and the CLI.

Each config is a dataclass with a ``version``. ``from_dict`` rejects unknown keys by
name and validates values with a message that names the field, so a TOML file or a
protocol message with a typo fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the field."""


class Scheduler(str, Enum):
    """Sampler names as A1111 users know them; the value is the combo label and the saved value."""

    EULER = "Euler"
    EULER_A = "Euler a"
    DPMPP_2M_KARRAS = "DPM++ 2M Karras"
    DDIM = "DDIM"
    UNIPC = "UniPC"


class DevicePref(str, Enum):
    AUTO = "auto"
    CUDA = "cuda"
    MPS = "mps"
    CPU = "cpu"


class DtypePref(str, Enum):
    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


C = TypeVar("C", bound="_Config")


@dataclass
class _Config:
    version: int = 1

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, where: str = "") -> C:
        prefix = f"{where}: " if where else ""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{prefix}unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = _coerce(cls, names[name], value, prefix)
        obj = cls(**values)
        obj.validate(prefix)
        return obj

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, Enum) else value
        return out

    def validate(self, prefix: str = "") -> None:  # overridden
        pass

    # TOML round trip -------------------------------------------------------
    @classmethod
    def load_toml(cls: type[C], path: str | os.PathLike[str]) -> C:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc})") from None
        except RecursionError:
            raise ConfigError(f"{p}: not valid TOML (arrays or tables nested too deeply)") from None
        except OSError as exc:  # a folder, a FIFO, no permission ...
            raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
        return cls.from_dict(data, where=str(p))

    def save_toml(self, path: str | os.PathLike[str]) -> None:
        from app.core.files import atomic_write_text

        data = {k: v for k, v in self.to_dict().items() if v is not None}
        atomic_write_text(Path(path), tomli_w.dumps(data))


def _coerce(cls: type, f: dataclasses.Field, value: Any, prefix: str) -> Any:
    """Turn a plain JSON/TOML value into the field's type, or say which field is wrong."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None and f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    if isinstance(default, Enum):
        try:
            return type(default)(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in type(default))
            raise ConfigError(f"{prefix}{f.name} = {value!r} is not one of {choices}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{prefix}{f.name} must be true or false, not {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{prefix}{f.name} must be a whole number, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{prefix}{f.name} must be a number, not {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}{f.name} must be text, not {value!r}")
        return value
    return value


@dataclass
class ModelSpec(_Config):
    """Which base model to load and how."""

    base: str = ""  # Hub repo id, diffusers folder, or single-file .safetensors/.ckpt
    device: DevicePref = DevicePref.AUTO
    dtype: DtypePref = DtypePref.AUTO

    def validate(self, prefix: str = "") -> None:
        if not self.base.strip():
            raise ConfigError(f"{prefix}base is empty: give a Hub id, a model folder or a .safetensors file")


WEIGHT_LIMIT = 10.0  # typed adapter weights may go beyond the slider's -2..2, up to this


@dataclass
class AdapterEntry:
    """One row of the adapter stack: a file, its weight and an optional text-encoder weight."""

    path: str
    weight: float = 1.0
    te_weight: float | None = None  # None: the same as weight
    enabled: bool = True
    name: str = ""  # shown and written as <lora:name:weight>; default the file's stem
    # Per-block weights in the LoRA Block Weight extension's syntax (app.core.block_weights):
    # a preset name or one number per block; "" applies the weight to every block alike.
    lbw: str = ""
    # The part of the sampling steps the adapter's UNet part acts in (fractions of the run).
    start: float = 0.0
    stop: float = 1.0

    def display_name(self) -> str:
        return self.name or Path(self.path).stem

    def text_weight(self) -> float:
        return self.weight if self.te_weight is None else self.te_weight

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "weight": self.weight, "enabled": self.enabled}
        if self.te_weight is not None:
            out["te_weight"] = self.te_weight
        if self.name:
            out["name"] = self.name
        if self.lbw:
            out["lbw"] = self.lbw
        if self.start != 0.0:
            out["start"] = self.start
        if self.stop != 1.0:
            out["stop"] = self.stop
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "adapter") -> AdapterEntry:
        if not isinstance(data, dict):
            raise ConfigError(f'{where} must be a table like {{path = "x.safetensors", weight = 0.8}}')
        known = ("path", "weight", "te_weight", "enabled", "name", "lbw", "start", "stop")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        path = data.get("path")
        if not isinstance(path, str) or not path.strip():
            raise ConfigError(f"{where}.path must be the adapter file's path")
        values: dict[str, Any] = {"path": path.strip()}
        for key in ("weight", "te_weight"):
            if data.get(key) is None:
                continue
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ConfigError(f"{where}.{key} must be a number, not {value!r}")
            if abs(value) > WEIGHT_LIMIT:
                raise ConfigError(f"{where}.{key} = {value} must be between -{WEIGHT_LIMIT:g} and {WEIGHT_LIMIT:g}")
            values[key] = float(value)
        if "enabled" in data:
            if not isinstance(data["enabled"], bool):
                raise ConfigError(f"{where}.enabled must be true or false, not {data['enabled']!r}")
            values["enabled"] = data["enabled"]
        if "name" in data:
            if not isinstance(data["name"], str):
                raise ConfigError(f"{where}.name must be text, not {data['name']!r}")
            if not data["name"].isprintable():  # it goes into prompts, PNG text and file names
                raise ConfigError(f"{where}.name = {data['name']!r} has a control character; use plain text")
            values["name"] = data["name"]
        values.update(_block_settings(data, where))
        return cls(**values)


def _block_settings(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``lbw``, ``start`` and ``stop`` of an adapter table, checked (the spec against every family's forms)."""
    from app.core.block_weights import BlockWeightError, check

    out: dict[str, Any] = {}
    if data.get("lbw"):
        if not isinstance(data["lbw"], str):
            raise ConfigError(f'{where}.lbw must be a preset name or numbers like "1,0,0.5", not {data["lbw"]!r}')
        try:
            check(data["lbw"])
        except BlockWeightError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out["lbw"] = data["lbw"].strip()
    for key, default in (("start", 0.0), ("stop", 1.0)):
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{where}.{key} must be a fraction of the steps between 0 and 1, not {value!r}")
        out[key] = float(value)
    if out["start"] >= out["stop"]:
        raise ConfigError(f"{where}: start = {out['start']:g} must come before stop = {out['stop']:g}")
    return out


_NAMED_LORA_ARGS = ("lbw", "start", "stop")


def parse_lora_arg(text: str) -> AdapterEntry:
    """``PATH[:WEIGHT[:TE_WEIGHT]][:lbw=SPEC][:start=F][:stop=F]`` (the CLI's ``--lora``); a Windows
    drive colon is kept in the path."""
    named: dict[str, Any] = {}
    rest = text
    while True:
        head, colon, last = rest.rpartition(":")
        key, eq, value = last.partition("=")
        if not (colon and eq and key.strip() in _NAMED_LORA_ARGS):
            break
        try:
            named[key.strip()] = value.strip() if key.strip() == "lbw" else float(value)
        except ValueError:
            raise ConfigError(
                f"--lora {text}: {key}={value!r} must be a fraction of the steps, e.g. {key}=0.5"
            ) from None
        rest = head
    parts = rest.rsplit(":", 2)
    numbers: list[float] = []
    while len(parts) > 1 and len(numbers) < 2:
        try:
            numbers.insert(0, float(parts[-1]))
        except ValueError:
            break
        parts.pop()
    path = ":".join(parts)
    head, colon, tail = path.rpartition(":")
    if colon and len(numbers) < 2 and not Path(path).exists() and len(head) > 1 and Path(head).exists():
        # "style.safetensors:abc": a typo in the weight, not a file whose name has a colon
        raise ConfigError(f"--lora {text}: {tail!r} is not a weight; write PATH:WEIGHT with a number, e.g. {head}:0.8")
    data: dict[str, Any] = {"path": path, **named}
    if numbers:
        data["weight"] = numbers[0]
    if len(numbers) > 1:
        data["te_weight"] = numbers[1]
    return AdapterEntry.from_dict(data, where=f"--lora {text}")


@dataclass
class GenerateRequest(_Config):
    """One picture (or a batch) from a base model. Adapters come with the Generate issue."""

    base: str = ""
    prompt: str = ""
    negative: str = ""
    seed: int = -1  # -1: random, the seed actually used is reported in the image meta
    steps: int = 20
    guidance: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: Scheduler = Scheduler.EULER
    device: DevicePref = DevicePref.AUTO
    dtype: DtypePref = DtypePref.AUTO
    output_dir: str = ""  # empty: the user's outputs folder
    # Adapter stack, in order: validated dicts {path, weight, te_weight?, enabled, name?} (AdapterEntry).
    adapters: list = dataclasses.field(default_factory=list)

    def validate(self, prefix: str = "") -> None:
        if not self.base.strip():
            raise ConfigError(f"{prefix}base is empty: pick a base model")
        if not 1 <= self.steps <= 500:
            raise ConfigError(f"{prefix}steps = {self.steps} must be between 1 and 500")
        if not 0.0 <= self.guidance <= 50.0:
            raise ConfigError(f"{prefix}guidance = {self.guidance} must be between 0 and 50")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < 8 or value > 4096 or value % 8:
                raise ConfigError(f"{prefix}{name} = {value} must be a multiple of 8 between 8 and 4096")
        if self.seed < -1 or self.seed >= 2**63:
            raise ConfigError(f"{prefix}seed = {self.seed} must be -1 (random) or a non-negative number")
        if not isinstance(self.adapters, list):
            raise ConfigError(f"{prefix}adapters must be a list of {{path, weight, ...}} tables")
        self.adapters = [
            (a if isinstance(a, AdapterEntry) else AdapterEntry.from_dict(a, where=f"{prefix}adapters[{i}]")).to_dict()
            for i, a in enumerate(self.adapters)
        ]

    def adapter_entries(self) -> list[AdapterEntry]:
        return [AdapterEntry.from_dict(a) for a in self.adapters]

    def model_spec(self) -> ModelSpec:
        return ModelSpec(base=self.base, device=self.device, dtype=self.dtype)


@dataclass
class ConvertRequest(_Config):
    """Rewrite the adapter file ``src`` in the layout ``to`` (kohya | diffusers | peft | comfy) as ``out``."""

    base: str = ""  # the base model it is for: its module names tell kohya's to_q from to.q
    src: str = ""
    out: str = ""
    to: str = "kohya"
    device: DevicePref = DevicePref.AUTO
    dtype: DtypePref = DtypePref.AUTO

    def validate(self, prefix: str = "") -> None:
        if not self.base.strip():
            raise ConfigError(f"{prefix}base is empty: pick the base model the adapter belongs to")
        if self.to not in ("kohya", "diffusers", "peft", "comfy"):
            raise ConfigError(f"{prefix}to = {self.to!r} must be kohya, diffusers, peft or comfy")
        if not self.out.strip() or not self.out.lower().endswith(".safetensors"):
            raise ConfigError(f"{prefix}out = {self.out!r} must be a .safetensors file to write")

    def model_spec(self) -> ModelSpec:
        return ModelSpec(base=self.base, device=self.device, dtype=self.dtype)


@dataclass
class BakeRequest(_Config):
    """Bake the adapter stack into one kohya LoRA: exact (rank 0) or reduced to ``rank`` by SVD."""

    base: str = ""
    adapters: list = dataclasses.field(default_factory=list)  # AdapterEntry dicts, as in GenerateRequest
    out: str = ""  # the .safetensors file to write
    rank: int = 0  # 0: exact (stacked factors); N: reduced to rank N per layer
    device: DevicePref = DevicePref.AUTO
    dtype: DtypePref = DtypePref.AUTO

    def validate(self, prefix: str = "") -> None:
        if not self.base.strip():
            raise ConfigError(f"{prefix}base is empty: pick the base model the adapters belong to")
        if not self.out.strip() or not self.out.lower().endswith(".safetensors"):
            raise ConfigError(f"{prefix}out = {self.out!r} must be a .safetensors file to write")
        if self.rank < 0 or self.rank > 4096:
            raise ConfigError(f"{prefix}rank = {self.rank} must be 0 (exact) or between 1 and 4096")
        if not isinstance(self.adapters, list) or not self.adapters:
            raise ConfigError(f"{prefix}adapters is empty: add at least one adapter to bake")
        self.adapters = [
            (a if isinstance(a, AdapterEntry) else AdapterEntry.from_dict(a, where=f"{prefix}adapters[{i}]")).to_dict()
            for i, a in enumerate(self.adapters)
        ]

    def adapter_entries(self) -> list[AdapterEntry]:
        return [AdapterEntry.from_dict(a) for a in self.adapters]

    def model_spec(self) -> ModelSpec:
        return ModelSpec(base=self.base, device=self.device, dtype=self.dtype)


def parse_size(text: str) -> tuple[int, int]:
    """``"512x768"`` -> (512, 768), with a message that says what is wrong."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 512x512")
    return int(parts[0]), int(parts[1])


__all__ = [
    "ConfigError",
    "DevicePref",
    "DtypePref",
    "AdapterEntry",
    "BakeRequest",
    "GenerateRequest",
    "ModelSpec",
    "Scheduler",
    "parse_lora_arg",
    "parse_size",
]
