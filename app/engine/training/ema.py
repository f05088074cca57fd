"""An exponential moving average of the LoRA weights (``[ema]``), saved beside the adapter as
``<name>-ema.safetensors`` and in the resume state.

The decay follows diffusers' ``EMAModel`` (0 at the first update, then ``min(decay, (1 + n) / (10 + n))``,
so a short run's average is not stuck near the initial weights); written here because
``EMAModel`` keeps its average on the weights' device, and ``on_cpu`` keeps it in CPU memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from app.core.train_options import EmaOptions


class WeightAverage:
    """The average of ``params`` (their order is the network's, the same in every session)."""

    def __init__(self, params: list[torch.nn.Parameter], opts: EmaOptions) -> None:
        self.params = params
        self.decay = opts.decay
        self.device = torch.device("cpu") if opts.on_cpu else None
        self.restart()

    def restart(self) -> None:
        """Start the average at the network's weights now."""
        self.shadow = [p.detach().to(self.device or p.device, torch.float32, copy=True) for p in self.params]
        self.updates = 0

    def current_decay(self) -> float:
        """diffusers' ``EMAModel.get_decay`` (no warmup): 0 at the first update, then (1 + n) / (10 + n)."""
        n = self.updates - 1
        return 0.0 if n <= 0 else min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: ema <- decay * ema + (1 - decay) * weights."""
        self.updates += 1
        keep = self.current_decay()
        for shadow, p in zip(self.shadow, self.params):
            shadow.lerp_(p.detach().to(shadow.device, torch.float32), 1.0 - keep)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the network for the duration (saving, sampling), then the trained ones."""
        backup = [p.detach().clone() for p in self.params]
        try:
            with torch.no_grad():
                for shadow, p in zip(self.shadow, self.params):
                    p.copy_(shadow.to(p.device, p.dtype))
            yield
        finally:
            with torch.no_grad():
                for saved, p in zip(backup, self.params):
                    p.copy_(saved)

    def state(self) -> dict[str, Any]:
        return {"updates": self.updates, "shadow": self.shadow}

    def load(self, state: Any) -> None:
        """A saved :meth:`state`; ValueError when it does not fit these weights."""
        shadow = state.get("shadow") if isinstance(state, dict) else None
        updates = state.get("updates") if isinstance(state, dict) else None
        if (
            not isinstance(shadow, list)
            or not isinstance(updates, int)
            or len(shadow) != len(self.shadow)
            or any(not isinstance(s, torch.Tensor) or s.shape != t.shape for s, t in zip(shadow, self.shadow))
        ):
            raise ValueError("the saved weight average does not fit this network")
        self.shadow = [s.to(t.device, torch.float32) for s, t in zip(shadow, self.shadow)]
        self.updates = updates
