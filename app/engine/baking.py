"""Bake a weighted mix of adapters into one kohya-layout LoRA file.

Exact: each adapter's weighted factors are stacked, so the baked layer is
``up = [w₁·s₁·up₁ | w₂·s₂·up₂ …]``, ``down = [down₁; down₂ …]`` and ΔW is the mix's ΔW
exactly (rank = Σ rᵢ). Adapters that are not plain LoRA factors (LoHa, LoKr, DoRA,
``lora_mid``) enter through an SVD of their ΔW cut at its numerical rank, which is
exact to float precision. Reduced: an SVD of the stacked factors (via two thin QR
factorisations, so nothing of size out×in is decomposed) keeps the top ``rank``
directions of every layer; the relative error ‖ΔW − ΔW_r‖/‖ΔW‖ over all layers is
measured against the live mix and reported.

The file follows DESIGN.md section 4: ``lora_unet_<module path>``, ``lora_te_`` (SD1/2)
or ``lora_te1_``/``lora_te2_`` (SDXL), ``lora_down``/``lora_up`` and a float32 ``alpha``
(= the layer's rank, so its scale is 1), with ss_* and modelspec metadata. A family whose
kohya layout fuses layers (Flux: ``lora_unet_double_blocks_N_img_attn_qkv``) says so through
its engine's ``kohya_places``; the fused layer's factors are its layers' stacked (exact), and a
reduced bake cuts the fused layer to ``rank``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from app import __version__
from app.core import families
from app.core.adapters import Part
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine import lora_files
from app.engine.adapter_formats import IncompatibleAdapter, Target
from app.engine.families import engine
from app.engine.layer_delta import fuse_factors, place_rows
from app.engine.patching import AdapterMixer

log = logging.getLogger(__name__)


class BakeError(Exception):
    """Nothing to bake, or the output cannot be written; the message says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        from app.core.errors import ErrorKind

        self.kind = ErrorKind.BAD_INPUT


@dataclass
class BakeResult:
    path: Path
    exact: bool
    rank: int  # the largest per-layer rank written
    layers: int
    relative_error: float  # measured against the live mix, over all layers
    seconds: float

    def describe(self) -> str:
        kind = "exact" if self.exact else f"rank {self.rank}"
        return (
            f"baked {self.layers} layers ({kind}, max rank {self.rank}) to {self.path}; "
            f"relative error {self.relative_error:.2e}"
        )


def kohya_name(target: Target, family: Family | None) -> str:
    """The kohya key prefix of a layer (lora_files' naming, shared with training)."""
    if target.part is Part.UNET:
        return lora_files.kohya_key(lora_files.UNET, target.path)
    if target.part is Part.TEXT_ENCODER_2:
        prefix = lora_files.TE2
    else:
        prefix = lora_files.te_prefixes(family)[0] if family is not None else lora_files.TE
    return lora_files.kohya_key(prefix, lora_files.te_module_path(target.path))


def _flat(up: torch.Tensor, down: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)


def _numerical_factors(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """ΔW (out, n) = up @ down with the rank cut where singular values reach float noise."""
    u, s, vh = torch.linalg.svd(dense, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return None
    tol = float(s[0]) * max(dense.shape) * torch.finfo(torch.float32).eps
    k = max(1, int((s > tol).sum()))
    root = s[:k].sqrt()
    return u[:, :k] * root, root[:, None] * vh[:k]


def _reduce(up: torch.Tensor, down: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` approximation of up @ down (out×R, R×n) without forming out×n."""
    qu, ru = torch.linalg.qr(up)
    qv, rv = torch.linalg.qr(down.T)
    a, s, bh = torch.linalg.svd(ru @ rv.T, full_matrices=False)
    k = min(rank, int(s.numel()))
    root = s[:k].sqrt()
    return (qu @ a[:, :k]) * root, root[:, None] * (bh[:k] @ qv.T)


def _layer(mixer: AdapterMixer, target: Target, parts: list[tuple[Any, float]], rank: int | None):
    """Factors (up, down) flattened to 2-D, and the dense mix ΔW to measure against."""
    w0 = mixer.base_weight(target)
    shape = tuple(w0.shape)
    ups, downs = [], []
    dense = torch.zeros(shape[0], math.prod(shape[1:]), dtype=torch.float32, device=w0.device)
    for delta, strength in parts:
        factors = delta.lora_factors(shape)
        if factors is not None:
            up, down = _flat(*factors)
            up = up * strength
            dense += up @ down
        else:
            d = delta.delta(w0, strength).reshape(shape[0], -1)
            dense += d
            fd = _numerical_factors(d)
            if fd is None:
                continue
            up, down = fd
        ups.append(up)
        downs.append(down)
    if not ups:
        return None
    return _cut(torch.cat(ups, dim=1), torch.cat(downs, dim=0), rank) + (dense,)


def _cut(up: torch.Tensor, down: torch.Tensor, rank: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    full = min(up.shape[0], down.shape[1])
    if up.shape[1] > full:  # stacked past full rank: the same matrix in fewer directions
        up, down = _reduce(up, down, full)
    if rank is not None and up.shape[1] > rank:
        up, down = _reduce(up, down, rank)
    return up, down


def _kohya_groups(mixer: AdapterMixer, targets: list[Target]) -> dict[str, tuple[int | None, list[tuple[Target, Any]]]]:
    """kohya module name -> (fused height or None, its layers with their rows in it)."""
    layout: dict[Part, dict[str, Any]] = {}
    if mixer.family is not None:
        family_engine = engine(mixer.family)
        layout = {part: family_engine.kohya_places(part, root) for part, root in mixer.index.parts.items()}
    groups: dict[str, tuple[int | None, list[tuple[Target, Any]]]] = {}
    for target in targets:
        place = layout.get(target.part, {}).get(target.path)
        if place is None:
            groups.setdefault(kohya_name(target, mixer.family), (None, []))[1].append((target, None))
        else:
            groups.setdefault(place.name, (place.total_rows, []))[1].append((target, place.rows))
    return groups


def _group_layer(mixer: AdapterMixer, total: int | None, members, contributions, rank: int | None):
    """(up, down, dense ΔW) of one kohya module: one layer, or a fused one's layers stacked."""
    if total is None:
        return _layer(mixer, members[0][0], contributions[members[0][0]], rank)
    pieces, dense = [], None
    for target, rows in members:
        layer = _layer(mixer, target, contributions[target], None)
        if layer is None:
            continue
        up, down, d = layer
        if dense is None:
            dense = torch.zeros(total, d.shape[1], dtype=d.dtype, device=d.device)
        place_rows(dense, rows, d)
        pieces.append((rows, up, down))
    if not pieces:
        return None
    return _cut(*fuse_factors(total, pieces), rank) + (dense,)


def bake_mix(
    mixer: AdapterMixer,
    entries: Iterable[AdapterEntry],
    out: str | Path,
    *,
    rank: int | None = None,
    base: str = "",
    on_progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> BakeResult:
    """Bake the enabled, non-zero entries into ``out`` (a .safetensors file, written atomically).

    Raises :class:`IncompatibleAdapter` when an adapter cannot be used with the base model
    (a partial bake would silently differ from the mix), :class:`BakeError` when there is
    nothing to bake.
    """
    started = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() != ".safetensors":
        raise BakeError(f"{out}: the baked adapter must be a .safetensors file")
    if rank is not None and rank < 1:
        raise BakeError(f"rank = {rank} must be 1 or more (or leave it out for an exact bake)")
    entries = list(entries)
    held = mixer.load(entries, strict=True)
    contributions: dict[Target, list[tuple[Any, float]]] = {}
    for h, entry in held:
        if not entry.enabled:
            continue
        for target, delta in sorted(h.parsed.layers.items()):
            strength = entry.weight if target.part.denoiser else entry.text_weight()
            if strength != 0.0:
                contributions.setdefault(target, []).append((delta, strength))
    if not contributions:
        raise BakeError("nothing to bake: no enabled adapter with a non-zero weight")

    tensors: dict[str, torch.Tensor] = {}
    err2 = total2 = 0.0
    max_rank = 0
    groups = _kohya_groups(mixer, sorted(contributions))
    with torch.no_grad():
        for i, (name, (total, members)) in enumerate(sorted(groups.items())):
            if should_cancel is not None and should_cancel():
                from app.engine.rendering import RenderCancelled

                raise RenderCancelled()
            layer = _group_layer(mixer, total, members, contributions, rank)
            if on_progress is not None:
                on_progress(i + 1, len(groups))
            if layer is None:
                continue
            up, down, dense = layer
            err2 += float(((up @ down) - dense).pow(2).sum())
            total2 += float(dense.pow(2).sum())
            shape = tuple(mixer.index.shape(members[0][0]))
            r = up.shape[1]
            max_rank = max(max_rank, r)
            if len(shape) == 4:
                up = up.reshape(shape[0], r, 1, 1)
                down = down.reshape(r, *shape[1:])
            tensors[f"{name}.lora_down.weight"] = down.float().cpu().contiguous()
            tensors[f"{name}.lora_up.weight"] = up.float().cpu().contiguous()
            tensors[f"{name}.alpha"] = torch.tensor(float(r), dtype=torch.float32)
    if not tensors:
        raise BakeError("nothing to bake: the mix changes no weight")
    relative = math.sqrt(err2 / total2) if total2 > 0 else 0.0
    metadata = _metadata(mixer, held, out, rank, max_rank, relative, base)
    save_kohya(out, tensors, metadata)
    result = BakeResult(out, rank is None, max_rank, len(tensors) // 3, relative, time.perf_counter() - started)
    log.info("%s", result.describe())
    return result


def _metadata(
    mixer: AdapterMixer, held, out: Path, rank: int | None, max_rank: int, relative: float, base: str
) -> dict[str, str]:
    family = mixer.family
    words: list[str] = []
    mix = []
    for h, entry in held:
        if entry.enabled:
            words.extend(w for w in h.parsed.info.trigger_words if w not in words)
            mix.append(
                {
                    "name": entry.display_name(),
                    "path": entry.path,
                    "weight": entry.weight,
                    "te_weight": entry.text_weight(),
                }
            )
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(max_rank),
        "ss_network_alpha": str(float(max_rank)),
        "ss_output_name": out.stem,
        "ss_training_started_at": str(int(time.time())),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.title": out.stem,
        "modelspec.date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "loraloom.version": __version__,
        "loraloom.bake": json.dumps({"base": base, "adapters": mix, "rank": rank, "relative_error": relative}),
    }
    if family is not None:
        spec = families.spec(family)
        meta["ss_base_model_version"] = spec.base_version
        meta["ss_v2"] = str(spec.ss_v2)
        meta["modelspec.architecture"] = spec.architecture
    if words:
        meta["modelspec.trigger_phrase"] = ", ".join(words)
    return meta


def save_kohya(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """lora_files' atomic kohya writer, with a one-sentence error when the folder is not writable."""
    try:
        lora_files.save_kohya(path, tensors, metadata)
    except OSError as exc:
        raise BakeError(f"{path}: could not be written ({exc.strerror or exc})") from None


__all__ = ["BakeError", "BakeResult", "IncompatibleAdapter", "bake_mix", "kohya_name", "save_kohya"]
