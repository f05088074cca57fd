"""Block weights in the patched model: a per-layer factor on each adapter's ΔW.

A block weight costs nothing per sampling step: W = W0 + Σ wᵢ·fᵢ(layer)·ΔWᵢ is patched
once, and a new vector re-patches only the layers whose factor changed. Which block a
layer is in comes from its original (SGM) name, read off the loaded UNet's structure,
through the string rules of :mod:`app.core.block_weights`. Start/stop switch an adapter's
UNet part on or off at a step (:class:`StepSwitches`): one patch per switch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from app.core import block_weights
from app.core.adapters import Part
from app.core.configs import AdapterEntry
from app.core.families import FALLBACK, Family, spec
from app.engine.layer_delta import LayerDelta
from app.engine.layer_index import LayerIndex, Target


def block_names(index: LayerIndex, targets, family: Family | None) -> dict[Target, str | None]:
    """The block of each target: its text encoder's (BASE for SD), by its SGM name for a UNet."""
    fam = spec(family or FALLBACK)
    out: dict[Target, str | None] = {}
    for target in targets:
        if not target.part.denoiser:
            out[target] = fam.text_blocks[min(0 if target.part is Part.TEXT_ENCODER else 1, len(fam.text_blocks) - 1)]
        else:
            out[target] = block_weights.block_of(index.sgm_path(target) or target.path, fam.id)
    return out


def layer_factors(
    index: LayerIndex, family: Family | None, targets, lbw: str, user: dict[str, str] | None = None
) -> dict[Target, float]:
    """The factor each of ``targets`` gets from the spec ``lbw`` (only those other than 1)."""
    fam = spec(family or FALLBACK)
    values = block_weights.vector(lbw, fam.id, user)
    if block_weights.uniform(values):
        return {}
    assert values is not None
    out: dict[Target, float] = {}
    for target, block in block_names(index, targets, family).items():
        if block in fam.blocks:
            factor = values[fam.blocks.index(block)]
            if factor != 1.0:
                out[target] = factor
    return out


def block_norms(
    layers: dict[Target, LayerDelta], blocks: dict[Target, str | None], w0_of, family: Family | None
) -> dict[str, float]:
    """‖ΔW‖ (Frobenius, at strength 1) of each block the adapter changes, in the family's block order.

    ``w0_of(target)`` gives a layer's base weight (ΔW of DoRA, OFT and the like depends on it).
    A plain LoRA's norm comes from its rank-sized Gram matrices, never from the dense ΔW.
    """
    fam = spec(family or FALLBACK)
    squares: dict[str, float] = {}
    with torch.no_grad():
        for target, delta in layers.items():
            block = blocks.get(target) or "other"
            squares[block] = squares.get(block, 0.0) + _square_norm(delta, target, w0_of)
    order = [b for b in fam.blocks if b in squares] + sorted(b for b in squares if b not in fam.blocks)
    return {b: squares[b] ** 0.5 for b in order}


def _square_norm(delta: LayerDelta, target: Target | None, w0_of) -> float:
    if delta.kind == "lora" and "mid" not in delta.tensors and delta.dora is None:
        up = delta.tensors["up"].float().reshape(delta.tensors["up"].shape[0], -1)
        down = delta.tensors["down"].float().reshape(delta.tensors["down"].shape[0], -1)
        # ‖U·D‖² = tr((UᵀU)(DDᵀ)): r×r products instead of the out×in matrix.
        return float(torch.sum((up.T @ up) * (down @ down.T))) * delta.scale() ** 2
    if w0_of is None:
        return float(delta.raw_delta().float().pow(2).sum())
    return float(delta.delta(w0_of(target)).float().pow(2).sum())


_WITHOUT_BASE = ("lora", "loha", "lokr", "full")  # kinds whose ΔW does not depend on W0


def file_block_norms(path, info) -> tuple[dict[str, float], list[str]]:
    """‖ΔW‖ per block from the file alone (``loraloom inspect --blocks``), by its layer names.

    Layers whose ΔW depends on the base weights (DoRA, OFT, a ``set_weight``) cannot be
    measured without the base model: their names come back, to be reported.
    """
    from app.engine.adapter_formats import _alpha_configs, _build_delta, _config_alpha, _load_tensors
    from app.engine.layer_delta import split_key

    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in _load_tensors(path).items():
        module, role = split_key(key)
        groups.setdefault(module, {})[role] = value
    configs = _alpha_configs(path, info)
    squares: dict[str, float] = {}
    needs_base: list[str] = []
    with torch.no_grad():
        for module, roles in sorted(groups.items()):
            delta = _build_delta(dict(roles))
            if delta is None:
                continue
            if delta.dora is not None or delta.kind not in _WITHOUT_BASE:
                needs_base.append(module)
                continue
            if delta.alpha is None and configs:
                delta.alpha = _config_alpha(configs, module, delta.rank)
            block = block_weights.block_of(module, info.family or FALLBACK) or "other"
            squares[block] = squares.get(block, 0.0) + _square_norm(delta, None, None)
    fam = spec(info.family or FALLBACK)
    order = [b for b in fam.blocks if b in squares] + sorted(b for b in squares if b not in fam.blocks)
    return {b: squares[b] ** 0.5 for b in order}, needs_base


def report_fields(entry: AdapterEntry, norms: dict[str, float]) -> dict[str, object]:
    """What an applied adapter's report says of its blocks: its spec, start/stop and ‖ΔW‖ per block."""
    out: dict[str, object] = {"block_norms": {b: round(n, 6) for b, n in norms.items()}}
    if entry.lbw:
        out["lbw"] = entry.lbw
    if entry.start > 0.0:
        out["start"] = entry.start
    if entry.stop < 1.0:
        out["stop"] = entry.stop
    return out


@dataclass(frozen=True)
class StepSwitches:
    """When each adapter's UNet part is off: before its start step and from its stop step.

    Fractions become steps as the LoRA Block Weight extension rounds them (at least step 1
    for a start or stop inside the run).
    """

    steps: int
    spans: dict[str, tuple[int, int]]  # adapter path -> (first step on, first step off)

    @classmethod
    def plan(cls, entries: list[AdapterEntry], steps: int) -> StepSwitches:
        spans: dict[str, tuple[int, int]] = {}
        for entry in entries:
            if not entry.enabled or (entry.start <= 0.0 and entry.stop >= 1.0):
                continue
            first = _step(entry.start, steps) if entry.start > 0.0 else 0
            last = _step(entry.stop, steps) if entry.stop < 1.0 else steps
            spans[entry.path] = (first, last)
        return cls(steps, spans)

    def paused_at(self, step: int) -> frozenset[str]:
        """The adapters whose UNet part is off while step ``step`` (0-based) runs."""
        return frozenset(path for path, (on, off) in self.spans.items() if not on <= step < off)

    def switches_after(self, done: int) -> bool:
        """Whether the patch changes between step ``done - 1`` and step ``done``."""
        return 0 < done < self.steps and self.paused_at(done) != self.paused_at(done - 1)


def _step(fraction: float, steps: int) -> int:
    return max(1, round(fraction * steps))
