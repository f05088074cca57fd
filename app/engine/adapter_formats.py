"""Read adapter files of every common layout into per-layer changes ΔW of a loaded model.

Layouts: kohya LoRA / LoCon (``lora_unet_…``, ``lora_te…``, with diffusers or original
Stability (SGM) UNet names), diffusers (``unet.….lora_A/lora_B``, ``lora.down/up``,
``lora_linear_layer``, attention-processor keys), peft (``base_model.model.…`` with
``adapter_config.json`` beside it), LyCORIS LoHa (``hada_*``) and LoKr (``lokr_*``),
DoRA (``dora_scale`` / ``lora_magnitude_vector``) and tucker ``lora_mid``. The ΔW math
of LoRA/LoCon, LoHa, LoKr and DoRA comes from lycoris-lora's functional API.

Every layer is matched to a module of the model and its shape is checked *before*
anything is patched, so a wrong-base or broken file is refused with one sentence that
names the file and the reason (:class:`IncompatibleAdapter`).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.core.adapters import AdapterError, AdapterInfo, AdapterLayout, Part, inspect_adapter
from app.core.families import FAMILIES, Family
from app.core.errors import ErrorKind, clip_words
from app.core.safe_files import read_regular
from app.engine import lycoris_weights
from app.engine.adapter_report import NOT_IN_BASE, LoadReport, build_report
from app.engine.lora_files import te_module_path

log = logging.getLogger(__name__)

FAMILY_NAMES = {f.id: f.label for f in FAMILIES}
MIN_COVERAGE = 0.5  # below this share of matching layers a file is refused, above it warned


class IncompatibleAdapter(Exception):
    """The adapter cannot be used with this base model; the message names the file and why."""

    kind = ErrorKind.INCOMPATIBLE_ADAPTER

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


# ---------------------------------------------------------------- model layers


@dataclass(frozen=True, order=True)
class Target:
    """One patchable layer: which part of the pipeline and the module path inside it."""

    part: Part
    path: str

    def __str__(self) -> str:
        return f"{self.part.value}.{self.path}"


_RESNET_SGM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_KOHYA_TE = {Part.TEXT_ENCODER: ("lora_te_", "lora_te1_"), Part.TEXT_ENCODER_2: ("lora_te2_",)}
_COMFY_TE = {Part.TEXT_ENCODER: "text_encoders.clip_l.transformer.", Part.TEXT_ENCODER_2: "text_encoders.clip_g.transformer."}
_DIFFUSERS_PREFIX = {Part.UNET: "unet.", Part.TEXT_ENCODER: "text_encoder.", Part.TEXT_ENCODER_2: "text_encoder_2."}


def pipeline_parts(pipe: Any) -> dict[Part, nn.Module]:
    parts = {Part.UNET: pipe.unet, Part.TEXT_ENCODER: getattr(pipe, "text_encoder", None),
             Part.TEXT_ENCODER_2: getattr(pipe, "text_encoder_2", None)}
    return {p: m for p, m in parts.items() if m is not None}


def sgm_prefixes(unet: nn.Module) -> dict[str, str]:
    """Diffusers module prefixes of a UNet -> the original Stability (SGM) names, from its structure."""
    out = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
           "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
           "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    index = 1
    for i, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j in range(len(block.resnets)):
            out[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{index}.0"
            if attentions:
                out[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{index}.1"
            index += 1
        if getattr(block, "downsamplers", None):
            out[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    mid = getattr(unet, "mid_block", None)
    if mid is not None:
        out["mid_block.resnets.0"] = "middle_block.0"
        if getattr(mid, "attentions", None):
            out["mid_block.attentions.0"] = "middle_block.1"
            out["mid_block.resnets.1"] = "middle_block.2"
        elif len(mid.resnets) > 1:
            out["mid_block.resnets.1"] = "middle_block.1"
    index = 0
    for i, block in enumerate(unet.up_blocks):
        attentions = getattr(block, "attentions", None)
        n = len(block.resnets)
        for j in range(n):
            out[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{index}.0"
            if attentions:
                out[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{index}.1"
            if j == n - 1 and getattr(block, "upsamplers", None):
                out[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{index}.{2 if attentions else 1}.conv"
            index += 1
    return out


def _to_sgm(path: str, prefixes: dict[str, str]) -> str | None:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in prefixes:
            rest = parts[cut:]
            if ".resnets." in f".{prefix}." and rest and rest[0] in _RESNET_SGM:
                rest = _RESNET_SGM[rest[0]].split(".") + rest[1:]
            return ".".join([prefixes[prefix]] + rest)
    return None


class LayerIndex:
    """Every Linear/Conv layer of a pipeline, findable by each naming scheme adapter files use."""

    def __init__(self, pipe: Any) -> None:
        self.parts = pipeline_parts(pipe)
        self.modules: dict[Target, nn.Module] = {}
        self.names: dict[str, Target] = {}
        self._sgm: dict[Target, str] = {}
        for part, root in self.parts.items():
            sgm = sgm_prefixes(root) if part is Part.UNET else {}
            for path, module in root.named_modules():
                if not isinstance(module, (nn.Linear, nn.Conv2d)):
                    continue
                target = Target(part, path)
                self.modules[target] = module
                flat = path.replace(".", "_")
                self.names[_DIFFUSERS_PREFIX[part] + path] = target
                if part is Part.UNET:
                    self.names["lora_unet_" + flat] = target
                    self.names.setdefault("lycoris_" + flat, target)  # SimpleTuner's LyCORIS files
                    self.names.setdefault("base_model.model." + path, target)
                    self.names.setdefault(path, target)  # the UNet's own state-dict names
                    sgm_path = _to_sgm(path, sgm)
                    if sgm_path:
                        self._sgm[target] = sgm_path
                        self.names.setdefault("lora_unet_" + sgm_path.replace(".", "_"), target)
                        self.names.setdefault("diffusion_model." + sgm_path, target)  # ComfyUI's own
                else:
                    # transformers 5's CLIPTextModel drops "text_model." from its paths; files keep it.
                    full = te_module_path(path)
                    self.names.setdefault(_DIFFUSERS_PREFIX[part] + full, target)
                    self.names.setdefault(_COMFY_TE[part] + full, target)
                    for prefix in _KOHYA_TE[part]:
                        self.names.setdefault(prefix + full.replace(".", "_"), target)
                        self.names.setdefault(prefix + flat, target)
                    self.names.setdefault("base_model.model." + path, target)
                    self.names.setdefault("base_model.model." + full, target)

    def resolve(self, module_key: str) -> Target | None:
        return self.names.get(_normalise_module_key(module_key))

    def sgm_path(self, target: Target) -> str | None:
        """The original Stability (SGM/LDM) name of a UNet layer, as ComfyUI files use it."""
        return self._sgm.get(target)

    def shape(self, target: Target) -> tuple[int, ...]:
        return tuple(self.modules[target].weight.shape)


_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora$")


def _normalise_module_key(key: str) -> str:
    """Old diffusers attention-processor names -> module paths."""
    m = _PROCESSOR.match(key)
    if m:
        name = m.group(2)
        return f"{m.group(1)}.{'to_out.0' if name == 'to_out' else name}"
    return key


# ---------------------------------------------------------------- tensor roles

# Longest suffixes first: "<module>.<suffix>" -> role.
_ROLES = sorted({
    ".lora_down.weight": "down", ".lora_up.weight": "up", ".lora_mid.weight": "mid",
    ".lora_A.weight": "down", ".lora_B.weight": "up",
    ".lora_A.default.weight": "down", ".lora_B.default.weight": "up",
    ".lora.down.weight": "down", ".lora.up.weight": "up",
    ".lora_linear_layer.down.weight": "down", ".lora_linear_layer.up.weight": "up",
    ".down.weight": "down", ".up.weight": "up",  # attention-processor keys (to_q_lora.down.weight)
    ".alpha": "alpha", ".dora_scale": "dora",
    # peft's magnitude is always one value per output channel, whatever its shape.
    ".lora_magnitude_vector": "magnitude", ".lora_magnitude_vector.weight": "magnitude",
    ".lora_magnitude_vector.default.weight": "magnitude", ".lora_magnitude_vector.default": "magnitude",
    ".hada_w1_a": "hada_w1_a", ".hada_w1_b": "hada_w1_b", ".hada_w2_a": "hada_w2_a",
    ".hada_w2_b": "hada_w2_b", ".hada_t1": "hada_t1", ".hada_t2": "hada_t2",
    ".lokr_w1": "lokr_w1", ".lokr_w1_a": "lokr_w1_a", ".lokr_w1_b": "lokr_w1_b",
    ".lokr_w2": "lokr_w2", ".lokr_w2_a": "lokr_w2_a", ".lokr_w2_b": "lokr_w2_b", ".lokr_t2": "lokr_t2",
    ".diff": "diff", ".diff_b": "diff_b", ".set_weight": "set_weight",
    ".weight": "weight", ".on_input": "on_input",  # (IA)³
    ".a1.weight": "a1", ".a2.weight": "a2", ".b1.weight": "b1", ".b2.weight": "b2",  # GLoRA
    ".oft_blocks": "oft_blocks", ".rescale": "rescale",  # OFT / BOFT
    ".w_norm": "?w_norm", ".b_norm": "?b_norm",  # LyCORIS norm layers: not applied (named in the report)
}.items(), key=lambda kv: -len(kv[0]))


def split_key(key: str) -> tuple[str, str]:
    """``lora_unet_x.lora_down.weight`` -> (``lora_unet_x``, ``down``); unknown tensors get role ``?``."""
    for suffix, role in _ROLES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    module, _, last = key.rpartition(".")
    return (module or key), f"?{last}"


# ---------------------------------------------------------------- one layer's change


@dataclass
class LayerDelta:
    """The change one adapter makes to one layer, kept as the file's factors (dense ΔW on demand)."""

    kind: str  # "lora" | "loha" | "lokr" | "full" | "set" | one of lycoris_weights.KINDS
    tensors: dict[str, torch.Tensor]
    alpha: float | None
    dora: torch.Tensor | None = None
    dora_on_out: bool | None = None  # None: decide from the magnitude's shape (see dora_axis)

    @property
    def rank(self) -> int:
        t = self.tensors
        if self.kind == "lora":
            return int(t["down"].shape[0])
        if self.kind == "loha":
            return int(t["hada_w1_b"].shape[0])
        if self.kind == "lokr":
            if "lokr_t2" in t:  # tucker: lokr_w2_a is (rank, out/factor), the core is (rank, rank, k, k)
                return int(t["lokr_t2"].shape[0])
            for name in ("lokr_w1_a", "lokr_w2_a"):
                if name in t:
                    return int(t[name].shape[1])
            return 0  # full Kronecker factors: no rank, scale 1 (LyCORIS ignores alpha then)
        if self.kind in lycoris_weights.KINDS:
            return lycoris_weights.rank(self.kind, t)
        return 0

    def scale(self) -> float:
        """alpha / rank, the kohya convention (no alpha means alpha = rank)."""
        rank = self.rank
        if self.alpha is None or not rank:
            return 1.0
        return self.alpha / rank

    def raw_delta(self) -> torch.Tensor:
        """ΔW at strength 1 without DoRA, in the file's own (possibly flattened) shape."""
        t = self.tensors
        if self.kind == "lora":
            from lycoris.functional import locon

            return locon.diff_weight(t["down"], t["up"], t.get("mid"), gamma=self.scale(), backend="torch")
        if self.kind == "loha":
            from lycoris.functional import loha

            return loha.diff_weight(t["hada_w1_b"], t["hada_w1_a"], t["hada_w2_b"], t["hada_w2_a"],
                                    t.get("hada_t1"), t.get("hada_t2"), gamma=self.scale(), backend="torch")
        if self.kind == "lokr":
            from lycoris.functional import lokr

            # kron_weight with our own scale: lycoris' diff_weight takes the rank from
            # lokr_w2_a.shape[1], which is the factor width, not the rank, for tucker files.
            return lokr.kron_weight(t.get("lokr_w1"), t.get("lokr_w1_a"), t.get("lokr_w1_b"), t.get("lokr_w2"),
                                    t.get("lokr_w2_a"), t.get("lokr_w2_b"), t.get("lokr_t2"),
                                    scale=self.scale(), backend="torch")
        return t["diff"]

    def delta(self, w0: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """ΔW at ``strength`` in float32 and ``w0``'s shape.

        Types whose change depends on W0 get it here: DoRA's rescale (at strength w it is
        W0 + w·(W_DoRA − W0), as ComfyUI does), a ``set_weight`` replacement, and those of
        :mod:`app.engine.lycoris_weights`.
        """
        if self.kind in lycoris_weights.KINDS:
            return lycoris_weights.delta(self.kind, self.tensors, self.alpha, w0, strength)
        if self.kind == "set":
            return (self.tensors["set_weight"].float().reshape(w0.shape) - w0.float()) * strength
        d = self.raw_delta().float().reshape(w0.shape)
        if self.dora is not None:
            from lycoris.functional import weight_decompose

            base = w0.float()
            on_out = self.dora_axis(tuple(w0.shape))
            out = w0.shape[0]
            shape = (out,) + (1,) * (w0.dim() - 1) if on_out else (1, w0.shape[1]) + (1,) * (w0.dim() - 2)
            d = weight_decompose(base + d, self.dora.float().reshape(shape), 1, on_out, backend="torch") - base
        return d if strength == 1.0 else d * strength

    def bias_delta(self, strength: float = 1.0) -> torch.Tensor | None:
        """The change to the layer's bias (a LyCORIS full ``diff_b``), or None."""
        diff_b = self.tensors.get("diff_b")
        return None if diff_b is None else diff_b.float().reshape(-1) * strength

    def dora_axis(self, shape: tuple[int, ...]) -> bool | None:
        """True: one magnitude per output row; False: per input column; None: it fits neither.

        Decided from the magnitude's whole shape: LyCORIS writes (out, 1[, 1, 1]) or
        (1, in[, 1, 1]), peft (out,) or (1, out, 1, 1) for a conv (marked by its key).
        """
        if self.dora is None:
            return None
        if self.dora_on_out is not None:
            return self.dora_on_out if self.dora.numel() == shape[0] else None
        dims, n = tuple(self.dora.shape), self.dora.numel()
        out, inp = shape[0], (shape[1] if len(shape) > 1 else -1)
        if len(dims) >= 2 and dims[0] == out == n:
            return True
        if len(dims) >= 2 and dims[0] == 1 and dims[1] == inp == n:
            return False
        if n == out:
            return True
        return False if n == inp else None

    def lora_factors(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(up, down) with the scale folded into up, shaped for a layer of ``shape``; None if not a plain LoRA."""
        if self.kind != "lora" or "mid" in self.tensors or self.dora is not None:
            return None
        up = self.tensors["up"].float() * self.scale()
        down = self.tensors["down"].float()
        r = down.shape[0]
        if len(shape) == 4:
            kernel = tuple(shape[2:])
            if down.dim() == 2:
                down = down.reshape(r, -1, *([1] * 2))
            if tuple(down.shape[2:]) != kernel and math.prod(down.shape[1:]) == math.prod(shape[1:]):
                down = down.reshape(r, *shape[1:])
            up = up.reshape(up.shape[0], r, 1, 1)
        else:
            up = up.reshape(up.shape[0], r)
            down = down.reshape(r, -1)
        return up, down

    def to(self, device: torch.device) -> "LayerDelta":
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        if self.dora is not None:
            self.dora = self.dora.to(device)
        return self


# ---------------------------------------------------------------- a whole file


@dataclass
class ParsedAdapter:
    path: Path
    info: AdapterInfo
    layers: dict[Target, LayerDelta]
    skipped_layers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: LoadReport | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    def parts(self) -> set[Part]:
        return {t.part for t in self.layers}


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise IncompatibleAdapter(f"{path}: could not be read as safetensors ({_first_line(exc)})",
                                  detail=repr(exc)) from None


def _first_line(exc: BaseException) -> str:
    return clip_words(str(exc), 200) or type(exc).__name__


def _peft_config(path: Path) -> dict[str, Any]:
    """peft's ``adapter_config.json`` beside the file ({} when missing, refused or broken)."""
    try:
        data = json.loads(read_regular(path.with_name("adapter_config.json"), max_bytes=1 << 20).decode("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}


def _alpha_configs(path: Path, info: AdapterInfo) -> dict[str, dict[str, Any]]:
    """Key prefix -> peft LoraConfig dict, for files that keep alpha outside their tensors.

    peft's own save keeps it in ``adapter_config.json`` beside the file; diffusers'
    ``save_lora_weights`` (and LoRA Loom's diffusers copy) in the header's
    ``lora_adapter_metadata`` JSON, as ``"unet.lora_alpha"``, ``"text_encoder.r"`` … per part.
    """
    if info.layout is AdapterLayout.PEFT:
        config = _peft_config(path)
        return {"": config} if config else {}
    raw = info.metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        flat = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    if not isinstance(flat, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        prefix, _, name = str(key).rpartition(".")
        if prefix:
            out.setdefault(prefix + ".", {})[name] = value
    return out


def _config_alpha(configs: dict[str, dict[str, Any]], module_key: str, rank: int) -> float | None:
    for prefix in sorted(configs, key=len, reverse=True):
        if module_key.startswith(prefix):
            try:
                return _peft_alpha(configs[prefix], module_key[len(prefix):], rank)
            except (TypeError, ValueError, ZeroDivisionError, re.error):
                return None  # a broken config: the tensors alone decide (alpha = rank)
    return None


def _peft_alpha(config: dict[str, Any], module_key: str, rank: int) -> float | None:
    """peft's scale for one layer as an alpha over the layer's real rank (its tensors' rank)."""
    if not config or not rank:
        return None
    alpha = _pattern_value(config.get("alpha_pattern"), module_key, config.get("lora_alpha", rank))
    scale = float(alpha) / math.sqrt(rank) if config.get("use_rslora") else float(alpha) / rank
    return scale * rank


def _pattern_value(patterns: Any, module_key: str, default: Any) -> Any:
    """The value of the first pattern matching the key's end, as peft's ``get_pattern_key`` does."""
    for pattern, value in (patterns or {}).items() if isinstance(patterns, dict) else ():
        if re.match(rf"(.*\.)?({pattern})$", module_key):
            return value
    return default


def _build_delta(roles: dict[str, torch.Tensor]) -> LayerDelta | None:
    alpha_t = roles.pop("alpha", None)
    alpha = float(alpha_t.float().reshape(-1)[0]) if alpha_t is not None and alpha_t.numel() else None
    dora = roles.pop("dora", None)
    magnitude = roles.pop("magnitude", None)
    on_out = None
    if dora is None and magnitude is not None:
        dora, on_out = magnitude, True
    tensors = {k: v.float() for k, v in roles.items() if not k.startswith("?")}
    if {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"} <= set(tensors):
        kind = "loha"
    elif ("lokr_w1" in tensors or {"lokr_w1_a", "lokr_w1_b"} <= set(tensors)) and (
            "lokr_w2" in tensors or {"lokr_w2_a", "lokr_w2_b"} <= set(tensors)):
        kind = "lokr"
    elif {"up", "down"} <= set(tensors):
        kind = "lora"
    elif "diff" in tensors:
        kind = "full"
    elif "set_weight" in tensors:
        kind = "set"
    else:
        kind = lycoris_weights.kind_of(tensors)
        if kind is None:
            return None
    return LayerDelta(kind, tensors, alpha, dora.float() if dora is not None else None, on_out)


def read_adapter(path: str | Path, index: LayerIndex, family: Family | None, *,
                 device: torch.device | str = "cpu") -> ParsedAdapter:
    """Read and check ``path`` against the model behind ``index``. Raises :class:`IncompatibleAdapter`,
    and nothing else for a damaged file: one bad row of a stack is refused, the others still render."""
    try:
        return _read_adapter(Path(path), index, family, torch.device(device))
    except IncompatibleAdapter:
        raise
    except Exception as exc:  # noqa: BLE001 - lycoris/torch raise many types for factors that make no sense
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            raise  # the machine's problem, not the file's
        log.warning("reading %s failed", path, exc_info=True)
        raise IncompatibleAdapter(f"{path}: could not be read as an adapter ({_first_line(exc)}); "
                                  "the file is damaged", detail=repr(exc)) from None


# The largest ΔW entry float32 holds; a bound over it means "compute ΔW and look".
_F32_MAX = float(torch.finfo(torch.float32).max)


def _check_finite(path: Path, module_key: str, delta: LayerDelta) -> None:
    """NaN or infinite factors, alpha or ΔW render an all-black picture: refuse the file instead.
    Cheap: the factors are scanned once; ΔW is built only when a bound says it might overflow."""
    if delta.alpha is not None and not math.isfinite(delta.alpha):
        raise IncompatibleAdapter(f"{path}: layer {module_key} has an alpha of {delta.alpha}; the file is "
                                  "damaged (it would render a black picture)")
    factors = list(delta.tensors.values()) + ([delta.dora] if delta.dora is not None else [])
    if not all(bool(torch.isfinite(t).all()) for t in factors):
        raise IncompatibleAdapter(f"{path}: layer {module_key} has NaN or infinite weights; the file is "
                                  "damaged (it would render a black picture)")
    bound = abs(delta.scale()) * max(1, delta.rank)
    for t in factors:
        bound *= float(t.abs().max()) if t.numel() else 0.0
    if bound > _F32_MAX / 1e3 and not bool(torch.isfinite(delta.raw_delta()).all()):
        raise IncompatibleAdapter(f"{path}: layer {module_key} has weights so large that its change "
                                  "overflows to infinity; the file is damaged (it would render a black picture)")


def _read_adapter(p: Path, index: LayerIndex, family: Family | None, device: torch.device) -> ParsedAdapter:
    try:
        info = inspect_adapter(p)
    except AdapterError as exc:
        raise IncompatibleAdapter(str(exc)) from None
    if family is not None and info.family is not None and info.family is not family:
        raise IncompatibleAdapter(
            f"{p}: made for {FAMILY_NAMES[info.family]}, but the loaded base model is "
            f"{FAMILY_NAMES[family]}; pick a {FAMILY_NAMES[info.family]} base model for it")
    if Part.TEXT_ENCODER_2 in info.parts and Part.TEXT_ENCODER_2 not in index.parts:
        raise IncompatibleAdapter(f"{p}: it changes a second text encoder (an SDXL adapter), "
                                  f"but the loaded base model has only one")
    tensors = _load_tensors(p)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, role = split_key(key)
        groups.setdefault(module, {})[role] = value
    configs = _alpha_configs(p, info)

    layers: dict[Target, LayerDelta] = {}
    applied: set[str] = set()
    unmatched: list[str] = []
    unsupported: list[str] = []
    for module_key, roles in sorted(groups.items()):
        delta = _build_delta(dict(roles))
        if delta is None:
            if any(not r.startswith("?") for r in roles):
                unsupported.append(module_key)
            continue
        target = index.resolve(module_key)
        if target is None:
            unmatched.append(module_key)
            continue
        if delta.alpha is None and configs:
            delta.alpha = _config_alpha(configs, module_key, delta.rank)
        _check_shape(p, module_key, delta, index.shape(target))
        _check_finite(p, module_key, delta)
        layers[target] = delta
        applied.add(module_key)

    total = len(layers) + len(unmatched)
    if not layers and not unmatched and not unsupported:
        raise IncompatibleAdapter(_unknown_kinds(p, groups))
    if not layers:
        if unsupported and not unmatched:
            raise IncompatibleAdapter(f"{p}: its {len(unsupported)} layers use an adapter type LoRA Loom "
                                      "cannot apply (supported: LoRA, LoCon, LoHa, LoKr, DoRA)")
        raise IncompatibleAdapter(
            f"{p}: none of its {total} layers exist in the loaded base model "
            f"(e.g. {unmatched[0] if unmatched else '?'}); it was made for another kind of model")
    if len(layers) / total < MIN_COVERAGE:
        raise IncompatibleAdapter(
            f"{p}: only {len(layers)} of its {total} layers exist in the loaded base model "
            f"(missing e.g. {unmatched[0]}); it was made for another kind of model")
    parsed = ParsedAdapter(p, info, {t: d.to(torch.device(device)) for t, d in layers.items()}, unmatched)
    skipped = {m: NOT_IN_BASE for m in unmatched}
    skipped.update({m: "an adapter type LoRA Loom cannot apply" for m in unsupported})
    parsed.report = build_report(p.name, groups, applied, skipped,
                                 FAMILY_NAMES.get(info.family) if info.family else None, info.family_evidence)
    ignored = collections.Counter(parsed.report.ignored)
    for module, _ in parsed.report.skipped:
        if module not in skipped:  # a layer of unknown kinds only (a LyCORIS norm layer …)
            ignored.update(r.lstrip("?") for r in groups[module])
    if ignored:
        parsed.warnings.append(f"{p.name}: {sum(ignored.values())} tensors of kinds LoRA Loom cannot apply "
                               f"were ignored ({', '.join('.' + k for k in sorted(ignored))})")
    if unmatched:
        parsed.warnings.append(f"{p.name}: {len(unmatched)} of its {total} layers are not in the base "
                               f"model and were skipped (e.g. {unmatched[0]})")
    if unsupported:
        parsed.warnings.append(f"{p.name}: {len(unsupported)} layers of an unsupported adapter type "
                               f"were skipped (e.g. {unsupported[0]})")
    return parsed


def _unknown_kinds(path: Path, groups: dict[str, dict[str, torch.Tensor]]) -> str:
    """The refusal for a file none of whose tensors is a weight kind the reader knows."""
    kinds = sorted({role[1:] for roles in groups.values() for role in roles if role.startswith("?")})
    shown = ", ".join(f".{k}" for k in kinds[:6]) + (" …" if len(kinds) > 6 else "")
    return (f"{path}: none of its {sum(map(len, groups.values()))} tensors is a weight kind LoRA Loom can "
            f"apply (it has {shown or 'no tensors'}); it is another adapter type or not an adapter")


def _delta_shape(delta: LayerDelta) -> tuple[int, ...]:
    t = delta.tensors
    if delta.kind == "lora" and "mid" not in t:  # plain LoRA: no need to build ΔW
        up, down = t["up"], t["down"]
        if up.shape[1] != down.shape[0]:
            raise ValueError(f"up is {tuple(up.shape)} and down is {tuple(down.shape)}")
        return (int(up.shape[0]),) + tuple(int(s) for s in down.shape[1:])
    if delta.kind == "set":
        return tuple(delta.tensors["set_weight"].shape)
    return tuple(delta.raw_delta().shape)


def _check_shape(path: Path, module_key: str, delta: LayerDelta, shape: tuple[int, ...]) -> None:
    if delta.kind in lycoris_weights.KINDS:
        problem = lycoris_weights.problem(delta.kind, delta.tensors, shape)
        if problem:
            raise IncompatibleAdapter(f"{path}: layer {module_key} does not fit the base model ({problem}); "
                                      "the adapter was made for another base model")
        return
    bias = delta.tensors.get("diff_b")
    if bias is not None and bias.numel() != shape[0]:
        raise IncompatibleAdapter(f"{path}: layer {module_key} changes {bias.numel()} biases but the base "
                                  f"model's layer has {shape[0]} outputs; the adapter was made for another base model")
    try:
        got = _delta_shape(delta)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise IncompatibleAdapter(f"{path}: layer {module_key} has factors that do not fit together "
                                  f"({_first_line(exc)}); the file is damaged", detail=repr(exc)) from None
    if math.prod(got) != math.prod(shape) or got[0] != shape[0]:
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} is {'x'.join(map(str, got))} but the base model's is "
            f"{'x'.join(map(str, shape))}; the adapter was made for another base model")
    if delta.dora is not None and delta.dora_axis(shape) is None:
        raise IncompatibleAdapter(f"{path}: layer {module_key} has a DoRA scale of "
                                  f"{delta.dora.numel()} values for a {shape[0]}x{shape[1]} layer")
