"""Read adapter files of every common layout into per-layer changes ΔW of a loaded model.

Layouts: kohya LoRA / LoCon (``lora_unet_…``, ``lora_te…``, with diffusers or original
Stability (SGM) UNet names), diffusers (``unet.….lora_A/lora_B``, ``lora.down/up``,
``lora_linear_layer``, attention-processor keys), peft (``base_model.model.…`` with
``adapter_config.json`` beside it), LyCORIS LoHa (``hada_*``) and LoKr (``lokr_*``),
DoRA (``dora_scale`` / ``lora_magnitude_vector``) and tucker ``lora_mid``. The ΔW math
of LoRA/LoCon, LoHa, LoKr and DoRA comes from lycoris-lora's functional API.

Every layer is matched to a module of the model (:mod:`app.engine.layer_index`) and its
change (:mod:`app.engine.layer_delta`) has its shape checked *before* anything is patched,
so a wrong-base or broken file is refused with one sentence that names the file and the
reason (:class:`IncompatibleAdapter`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.core.adapters import AdapterError, AdapterInfo, AdapterLayout, Part, inspect_adapter
from app.core.errors import ErrorKind, clip_words
from app.core.families import FAMILIES, Family
from app.core.safe_files import read_regular
from app.engine import lycoris_weights
from app.engine.adapter_report import NOT_IN_BASE, LoadReport, build_report
from app.engine.layer_delta import LayerDelta, split_key
from app.engine.layer_index import LayerIndex, Target

log = logging.getLogger(__name__)

FAMILY_NAMES = {f.id: f.label for f in FAMILIES}
MIN_COVERAGE = 0.5  # below this share of matching layers a file is refused, above it warned


class IncompatibleAdapter(Exception):
    """The adapter cannot be used with this base model; the message names the file and why."""

    kind = ErrorKind.INCOMPATIBLE_ADAPTER

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


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
        raise IncompatibleAdapter(
            f"{path}: could not be read as safetensors ({_first_line(exc)})", detail=repr(exc)
        ) from None


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
                return _peft_alpha(configs[prefix], module_key[len(prefix) :], rank)
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
        "lokr_w2" in tensors or {"lokr_w2_a", "lokr_w2_b"} <= set(tensors)
    ):
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


def read_adapter(
    path: str | Path, index: LayerIndex, family: Family | None, *, device: torch.device | str = "cpu"
) -> ParsedAdapter:
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
        raise IncompatibleAdapter(
            f"{path}: could not be read as an adapter ({_first_line(exc)}); the file is damaged", detail=repr(exc)
        ) from None


# The largest ΔW entry float32 holds; a bound over it means "compute ΔW and look".
_F32_MAX = float(torch.finfo(torch.float32).max)


def _check_finite(path: Path, module_key: str, delta: LayerDelta) -> None:
    """NaN or infinite factors, alpha or ΔW render an all-black picture: refuse the file instead.
    Cheap: the factors are scanned once; ΔW is built only when a bound says it might overflow."""
    if delta.alpha is not None and not math.isfinite(delta.alpha):
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} has an alpha of {delta.alpha}; the file is "
            "damaged (it would render a black picture)"
        )
    factors = list(delta.tensors.values()) + ([delta.dora] if delta.dora is not None else [])
    if not all(bool(torch.isfinite(t).all()) for t in factors):
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} has NaN or infinite weights; the file is "
            "damaged (it would render a black picture)"
        )
    bound = abs(delta.scale()) * max(1, delta.rank)
    for t in factors:
        bound *= float(t.abs().max()) if t.numel() else 0.0
    if bound > _F32_MAX / 1e3 and not bool(torch.isfinite(delta.raw_delta()).all()):
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} has weights so large that its change "
            "overflows to infinity; the file is damaged (it would render a black picture)"
        )


def _read_adapter(p: Path, index: LayerIndex, family: Family | None, device: torch.device) -> ParsedAdapter:
    info = _header(p, index, family)
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
        pieces = index.pieces(module_key)
        if pieces is None:
            unmatched.append(module_key)
            continue
        if delta.alpha is None and configs:
            delta.alpha = _config_alpha(configs, module_key, delta.rank)
        _check_shape(p, module_key, delta, index.key_shape(module_key))
        _check_finite(p, module_key, delta)
        if pieces[0][1] is not None and not delta.splittable:
            unsupported.append(module_key)  # e.g. DoRA on a fused q/k/v: not split exactly
            continue
        for target, rows in pieces:
            layers[target] = delta if rows is None else dataclasses.replace(delta, rows=rows)
        applied.add(module_key)

    total = len(applied) + len(unmatched)  # file layers (a fused one changes several model layers)
    if not layers and not unmatched and not unsupported:
        raise IncompatibleAdapter(_unknown_kinds(p, groups))
    if not layers:
        if unsupported and not unmatched:
            raise IncompatibleAdapter(
                f"{p}: its {len(unsupported)} layers use an adapter type LoRA Loom "
                "cannot apply (supported: LoRA, LoCon, LoHa, LoKr, DoRA)"
            )
        raise IncompatibleAdapter(
            f"{p}: none of its {total} layers exist in the loaded base model "
            f"(e.g. {unmatched[0] if unmatched else '?'}); it was made for another kind of model"
        )
    if len(applied) / total < MIN_COVERAGE:
        raise IncompatibleAdapter(
            f"{p}: only {len(applied)} of its {total} layers exist in the loaded base model "
            f"(missing e.g. {unmatched[0]}); it was made for another kind of model"
        )
    parsed = ParsedAdapter(p, info, {t: d.to(device) for t, d in layers.items()}, unmatched)
    skipped = {m: NOT_IN_BASE for m in unmatched}
    skipped.update({m: "an adapter type LoRA Loom cannot apply" for m in unsupported})
    parsed.report = build_report(
        p.name, groups, applied, skipped, FAMILY_NAMES.get(info.family) if info.family else None, info.family_evidence
    )
    _add_warnings(parsed, groups, skipped, unmatched, unsupported, total)
    return parsed


def _header(p: Path, index: LayerIndex, family: Family | None) -> AdapterInfo:
    """What the file's header says, refused before any tensor is read when it is for another base."""
    try:
        info = inspect_adapter(p)
    except AdapterError as exc:
        raise IncompatibleAdapter(str(exc)) from None
    if problem := info.family_mismatch(family):
        raise IncompatibleAdapter(problem)
    if Part.TEXT_ENCODER_2 in info.parts and Part.TEXT_ENCODER_2 not in index.parts:
        raise IncompatibleAdapter(
            f"{p}: it changes a second text encoder (an SDXL adapter), but the loaded base model has only one"
        )
    return info


def _add_warnings(
    parsed: ParsedAdapter,
    groups: dict[str, dict[str, torch.Tensor]],
    skipped: dict[str, str],
    unmatched: list[str],
    unsupported: list[str],
    total: int,
) -> None:
    """What was left out of a file that is used anyway: ignored tensor kinds, missing and unsupported layers."""
    p = parsed.path
    ignored = collections.Counter(parsed.report.ignored)
    for module, _ in parsed.report.skipped:
        if module not in skipped:  # a layer of unknown kinds only (a LyCORIS norm layer …)
            ignored.update(r.lstrip("?") for r in groups[module])
    if ignored:
        parsed.warnings.append(
            f"{p.name}: {sum(ignored.values())} tensors of kinds LoRA Loom cannot apply "
            f"were ignored ({', '.join('.' + k for k in sorted(ignored))})"
        )
    if unmatched:
        parsed.warnings.append(
            f"{p.name}: {len(unmatched)} of its {total} layers are not in the base "
            f"model and were skipped (e.g. {unmatched[0]})"
        )
    if unsupported:
        parsed.warnings.append(
            f"{p.name}: {len(unsupported)} layers of an unsupported adapter type were skipped (e.g. {unsupported[0]})"
        )


def _unknown_kinds(path: Path, groups: dict[str, dict[str, torch.Tensor]]) -> str:
    """The refusal for a file none of whose tensors is a weight kind the reader knows."""
    kinds = sorted({role[1:] for roles in groups.values() for role in roles if role.startswith("?")})
    shown = ", ".join(f".{k}" for k in kinds[:6]) + (" …" if len(kinds) > 6 else "")
    return (
        f"{path}: none of its {sum(map(len, groups.values()))} tensors is a weight kind LoRA Loom can "
        f"apply (it has {shown or 'no tensors'}); it is another adapter type or not an adapter"
    )


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
            raise IncompatibleAdapter(
                f"{path}: layer {module_key} does not fit the base model ({problem}); "
                "the adapter was made for another base model"
            )
        return
    bias = delta.tensors.get("diff_b")
    if bias is not None and bias.numel() != shape[0]:
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} changes {bias.numel()} biases but the base "
            f"model's layer has {shape[0]} outputs; the adapter was made for another base model"
        )
    try:
        got = _delta_shape(delta)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} has factors that do not fit together "
            f"({_first_line(exc)}); the file is damaged",
            detail=repr(exc),
        ) from None
    if math.prod(got) != math.prod(shape) or got[0] != shape[0]:
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} is {'x'.join(map(str, got))} but the base model's is "
            f"{'x'.join(map(str, shape))}; the adapter was made for another base model"
        )
    if delta.dora is not None and delta.dora_axis(shape) is None:
        raise IncompatibleAdapter(
            f"{path}: layer {module_key} has a DoRA scale of "
            f"{delta.dora.numel()} values for a {shape[0]}x{shape[1]} layer"
        )
