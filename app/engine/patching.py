"""Apply a weighted mix of adapters by patching the base weights: W = W0 + Σ wᵢ·ΔWᵢ.

Why patch instead of running adapters as extra branches (peft/diffusers' unfused
``set_adapters``): a patched model costs exactly what the base model costs per sampling
step, however many adapters are mixed, and weight-0 adapters cost nothing. A layer is
always recomputed from W0 (never by adding and subtracting deltas), so there is no drift: with every adapter at 0, disabled or removed,
each weight is W0 again, bit for bit. Moving one slider recomputes only the layers that
adapter touches.

W0 is read back from the base model's safetensors files when the model came from one
(:mod:`app.engine.file_tensors`; the match is checked bit for bit on the first patch), so
patching holds no second copy of the layers it touches. A model built in memory, loaded
from a ``.ckpt`` or from the Hub cache, or a layer the files do not hold exactly, keeps a
CPU copy of the W0 of every layer adapters touch, as before. Held adapters keep only where
their factors lie in their files (read again, as float32, each time a layer is recomputed).

The sum runs over adapters in a fixed order (by path), so the same mix gives the same
bits whatever sequence of slider moves led to it. Block weights make wᵢ a factor per layer
(:mod:`app.engine.block_mix`): a new vector recomputes only the layers whose factor changed.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine import block_mix
from app.engine.adapter_formats import (
    IncompatibleAdapter,
    LayerDelta,
    LayerIndex,
    ParsedAdapter,
    Target,
    read_adapter,
)
from app.engine.file_tensors import BaseWeights, Source, read_factors_lazily

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl has none
    except (OSError, AttributeError):
        return None


def hand_back_freed_memory() -> None:
    """Give the heap pages freed by a mix back to the system.

    Why: reading adapters and recomputing layers allocate and free buffers of a layer's size
    (a few MB to tens of MB) thousands of times. glibc's malloc keeps freed memory under its
    self-raising mmap threshold for reuse and returns only the top of each heap, so after
    patching 8 SDXL LoRAs the process kept 1.0 GB of free heap resident (1.13x the bare model,
    bench/real_size.py); ``malloc_trim`` releases those pages (back to 1.01x). Other systems'
    allocators return large frees by themselves.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@dataclass
class _Held:
    parsed: ParsedAdapter
    stamp: tuple[int, int]
    unet_weight: float = 0.0
    te_weight: float = 0.0
    lbw: str = ""  # the block-weight spec the factors come from
    factors: dict[Target, float] = field(default_factory=dict)  # block factor of each layer not at 1
    norms: dict[str, float] = field(default_factory=dict)  # ‖ΔW‖ per block (the Blocks popover's bars)

    def strength(self, target: Target) -> float:
        weight = self.unet_weight if target.part.denoiser else self.te_weight
        return weight * self.factors.get(target, 1.0)


@dataclass
class MixReport:
    """What a :meth:`AdapterMixer.set_mix` call did."""

    applied: list[dict[str, Any]] = field(default_factory=list)  # enabled, in stack order
    refused: list[dict[str, str]] = field(default_factory=list)  # {path, message}
    warnings: list[str] = field(default_factory=list)
    layers_updated: int = 0
    loaded: int = 0  # files read in this call
    seconds: float = 0.0


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _key(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().resolve())


class AdapterMixer:
    """Holds the adapters patched into one pipeline and where the W0 of every layer they touch is.

    ``base`` is the file or diffusers folder the pipeline was loaded from (W0 is read back from
    it); without one, W0 copies are kept in memory.
    """

    def __init__(self, pipe: Any, family: Family | None, base: str | os.PathLike[str] | None = None) -> None:
        self.index = LayerIndex(pipe)
        self.family = family
        self._held: dict[str, _Held] = {}
        self._base = BaseWeights.for_source(base)
        # W0 of each patched layer: a kept copy, or its place in the base files.
        self._backup: dict[Target, torch.Tensor | Source] = {}
        self._bias_backup: dict[Target, torch.Tensor | Source] = {}  # only layers a full (diff_b) adapter changes
        first = next(iter(self.index.modules.values()))
        self.device = first.weight.device
        self._pin = self.device.type == "cuda"

    # ------------------------------------------------------------ queries
    @property
    def held(self) -> list[ParsedAdapter]:
        return [h.parsed for h in self._held.values()]

    def patched_layers(self) -> set[Target]:
        return set(self._backup)

    def base_weight(self, target: Target) -> torch.Tensor:
        """W0 of a layer (kept or read back only while some adapter touches it)."""
        weight = self.index.modules[target].weight
        if target in self._backup:
            return self._original(self._backup[target], weight)
        return weight.detach()

    def kept_bytes(self) -> int:
        """Bytes of W0 copies held in memory (0 when every patched layer reads W0 from the base files)."""
        return sum(
            b.numel() * b.element_size()
            for backups in (self._backup, self._bias_backup)
            for b in backups.values()
            if isinstance(b, torch.Tensor)
        )

    # ------------------------------------------------------------ loading
    def load(
        self, entries: Iterable[AdapterEntry], report: MixReport | None = None, *, strict: bool = False
    ) -> list[tuple[_Held, AdapterEntry]]:
        """Read (or reuse) the files of ``entries``; refused ones go to ``report`` (or raise if strict)."""
        report = report if report is not None else MixReport()
        out: list[tuple[_Held, AdapterEntry]] = []
        seen: set[str] = set()
        for entry in entries:
            try:
                key = _key(entry.path)
                if key in seen:
                    raise IncompatibleAdapter(f"{entry.path}: is in the stack twice; its second row is ignored")
                seen.add(key)
                held = self._get(key, report)
                self.block_factors(held.parsed, entry.lbw)  # a bad spec refuses this row only
            except IncompatibleAdapter as exc:
                if strict:
                    raise
                report.refused.append({"path": entry.path, "message": str(exc)})
                log.warning("%s", exc)
                continue
            out.append((held, entry))
        return out

    def _get(self, key: str, report: MixReport) -> _Held:
        path = Path(key)
        try:
            stamp = _stamp(path)
        except FileNotFoundError:
            raise IncompatibleAdapter(f"{path}: no such file") from None
        except OSError as exc:
            raise IncompatibleAdapter(f"{path}: cannot be read ({exc.strerror or exc})") from None
        held = self._held.get(key)
        if held is not None and held.stamp == stamp:
            return held
        if held is not None:  # the file changed on disk (e.g. a new checkpoint): read it again
            self._drop(key)
        parsed = read_adapter(path, self.index, self.family, device=self.device)
        read_factors_lazily(parsed, self.index, self.device)
        report.loaded += 1
        report.warnings.extend(parsed.warnings)
        for warning in parsed.warnings:
            log.warning("%s", warning)
        held = _Held(parsed, stamp)
        held.norms = block_mix.block_norms(
            parsed.layers, block_mix.block_names(self.index, parsed.layers, self.family), self.base_weight, self.family
        )
        self._held[key] = held
        return held

    def block_factors(self, parsed: ParsedAdapter, lbw: str) -> dict[Target, float]:
        """The block factor of each of ``parsed``'s layers that ``lbw`` sets to other than 1."""
        try:
            return block_mix.layer_factors(self.index, self.family, parsed.layers, lbw)
        except ValueError as exc:  # a preset the worker cannot find, numbers for another family
            raise IncompatibleAdapter(f"{parsed.path}: {exc}") from None

    def _set_blocks(self, held: _Held, lbw: str) -> set[Target]:
        """Take ``held``'s block factors from ``lbw``; the layers whose factor changed."""
        if lbw == held.lbw:
            return set()
        factors = self.block_factors(held.parsed, lbw)
        changed = {t for t in set(factors) | set(held.factors) if factors.get(t, 1.0) != held.factors.get(t, 1.0)}
        held.lbw, held.factors = lbw, factors
        return changed

    def _drop(self, key: str) -> None:
        held = self._held.pop(key)
        self._update(set(held.parsed.layers))

    # ------------------------------------------------------------ mixing
    def set_mix(self, entries: Iterable[AdapterEntry], paused: Iterable[str] = ()) -> MixReport:
        """Make the patched weights match ``entries`` (in stack order); touch only what changed.

        The UNet part of the adapters in ``paused`` (paths) is off: outside their start/stop steps."""
        started = time.perf_counter()
        entries = list(entries)
        report = MixReport()
        wanted = self.load(entries, report)
        wanted_keys = {_key(e.path) for _, e in wanted}
        paused_keys = {_key(p) for p in paused}
        dirty: set[Target] = set()
        for key in [k for k in self._held if k not in wanted_keys]:
            held = self._held.pop(key)
            dirty.update(held.parsed.layers)
        for held, entry in wanted:
            unet_w = entry.weight if entry.enabled and _key(entry.path) not in paused_keys else 0.0
            te_w = entry.text_weight() if entry.enabled else 0.0
            if unet_w != held.unet_weight:
                dirty.update(t for t in held.parsed.layers if t.part.denoiser)
            if te_w != held.te_weight:
                dirty.update(t for t in held.parsed.layers if not t.part.denoiser)
            held.unet_weight, held.te_weight = unet_w, te_w
            dirty.update(self._set_blocks(held, entry.lbw))
            if entry.enabled:
                load = held.parsed.report
                report.applied.append(
                    {
                        "name": entry.display_name(),
                        "path": entry.path,
                        "weight": entry.weight,
                        "te_weight": te_w,
                        "layers": load.badge() if load else "",
                        "load_details": "\n".join(load.lines()) if load and not load.complete else "",
                        **block_mix.report_fields(entry, held.norms),
                    }
                )
        report.layers_updated = self._update(dirty)
        if report.loaded or report.layers_updated:
            hand_back_freed_memory()
        report.seconds = time.perf_counter() - started
        return report

    def clear(self) -> None:
        """Remove every adapter; every patched layer returns to W0 exactly."""
        self._held.clear()
        if self._update(set(self._backup)):
            hand_back_freed_memory()

    def _update(self, targets: set[Target]) -> int:
        if not targets:
            return 0
        order = sorted(self._held)  # a fixed order: the same mix gives the same bits
        with torch.no_grad():
            for target in sorted(targets):
                touching = [self._held[k] for k in order if target in self._held[k].parsed.layers]
                active = [(h.parsed.layers[target], h.strength(target)) for h in touching]
                active = [(d, w) for d, w in active if w != 0.0]
                self._write(target, active, keep_backup=bool(touching))
        return len(targets)

    def _write(self, target: Target, active: list[tuple[LayerDelta, float]], keep_backup: bool) -> None:
        module = self.index.modules[target]
        self._write_tensor(
            target,
            module.weight,
            self._backup,
            active,
            keep_backup,
            lambda delta, w0, strength: delta.delta(w0, strength),
            low_rank=True,
        )
        if module.bias is not None and (
            target in self._bias_backup or any(d.bias_delta() is not None for d, _ in active)
        ):
            with_bias = [(d, s) for d, s in active if d.bias_delta() is not None]
            self._write_tensor(
                target,
                module.bias,
                self._bias_backup,
                with_bias,
                keep_backup and bool(with_bias),
                lambda delta, _b0, strength: delta.bias_delta(strength),
            )

    def _write_tensor(
        self,
        target: Target,
        tensor: torch.Tensor,
        backups: dict[Target, torch.Tensor],
        active: list[tuple[LayerDelta, float]],
        keep_backup: bool,
        change,
        low_rank: bool = False,
    ) -> None:
        """tensor = original + Σ change(delta, original, strength), always from the kept original
        (with ``low_rank``, plain LoRAs are summed as their factors instead, see :func:`_add_low_rank`)."""
        if not active:
            backup = backups.get(target)
            if backup is not None:
                tensor.copy_(self._original(backup, tensor))
                if not keep_backup:
                    del backups[target]
            return
        fresh = target not in backups
        if fresh:
            backups[target] = self._keep(tensor)
        # A layer taken just now still is W0: no need to read it back.
        w0 = tensor.detach() if fresh else self._original(backups[target], tensor)
        acc = w0.to(torch.float32, copy=True)  # never add into W0 itself
        if low_rank:
            active = _add_low_rank(acc, active)
        for delta, strength in active:
            acc.add_(change(delta, w0, strength))
        tensor.copy_(acc)

    def _keep(self, tensor: torch.Tensor) -> torch.Tensor | Source:
        """Where W0 of ``tensor`` (unpatched now) will come from: its place in the base files, or a copy."""
        source = self._base.find(tensor) if self._base is not None else None
        if source is not None:
            return source
        copy = tensor.detach().to("cpu", copy=True)
        return copy.pin_memory() if self._pin else copy

    def _original(self, backup: torch.Tensor | Source, like: torch.Tensor) -> torch.Tensor:
        if isinstance(backup, Source):
            return self._base.read(backup, like)
        return backup.to(self.device)


def _add_low_rank(acc: torch.Tensor, active: list[tuple[LayerDelta, float]]) -> list[tuple[LayerDelta, float]]:
    """acc += Σ strength·up@down over the plain LoRAs of ``active`` as one matrix product; returns the others.

    Why one product: adding each adapter's dense ΔW costs three passes over a layer-sized
    float32 buffer per adapter (ΔW, its scaling, the sum), which made patching 8 SDXL LoRAs
    2.6 times as slow as 3 and left freed buffers behind; stacking the factors (out×Σr and Σr×n)
    writes the sum straight into ``acc`` once, whatever the number of adapters.
    """
    flat = acc.view(acc.shape[0], -1)
    ups, downs, rest = [], [], []
    for delta, strength in active:
        factors = delta.lora_factors(tuple(acc.shape))
        if factors is not None:
            up, down = factors[0].reshape(flat.shape[0], -1), factors[1].reshape(factors[1].shape[0], -1)
        if factors is None or down.shape[1] != flat.shape[1]:
            rest.append((delta, strength))
            continue
        ups.append(up * strength)
        downs.append(down)
    if ups:
        flat.addmm_(torch.cat(ups, dim=1), torch.cat(downs))
    return rest
