"""The Generate form fitted to the loaded model's family: Flux.1 has no negative prompt and
samples with the flow-matching samplers only, [schnell] ignores guidance; a new family starts
from its own steps, guidance and size (the family table says all of it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtGui import QStandardItemModel

from app.core import families

NEGATIVE_TIP = "Text describing what the picture should not contain."
GUIDANCE_TIP = "How strongly the picture follows the prompt (CFG scale); 5–9 is typical."


@dataclass(frozen=True)
class FamilyFit:
    key: tuple[str, bool]  # (family value, distilled): a new key means new defaults
    label: str
    negative: bool  # the model takes a negative prompt
    guidance: bool  # the model reads guidance
    distilled_guidance: bool  # guidance is Flux's distilled guidance, not CFG
    schedulers: tuple[str, ...]
    default_scheduler: str
    steps: int
    guidance_value: float
    size: tuple[int, int]


def fit_for(model: dict[str, Any]) -> FamilyFit | None:
    """What the form allows for the model the worker reports (None: an unknown family)."""
    try:
        spec = families.spec(model.get("family") or "")
    except ValueError:
        return None
    distilled = bool(model.get("distilled")) and spec.distilled is not None
    steps, guidance = spec.render_defaults(distilled)
    return FamilyFit(
        key=(spec.id.value, distilled),
        label=spec.distilled.label if distilled and spec.distilled else spec.label,
        negative=not spec.guidance_distilled,
        guidance=not distilled,
        distilled_guidance=spec.guidance_distilled,
        schedulers=spec.schedulers,
        default_scheduler=spec.default_scheduler,
        steps=steps,
        guidance_value=guidance,
        size=spec.default_size,
    )


def apply_fit(tab: Any, fit: FamilyFit, new_family: bool) -> None:
    """Grey what the model does not use (with a tooltip saying why), keep the sampler to the
    ones it has; with a new family also its default steps, guidance, size (unless tiny)."""
    tab.negative.setEnabled(fit.negative)
    tab.negative.setToolTip(NEGATIVE_TIP if fit.negative else f"{fit.label} takes no negative prompt.")
    tab.guidance.setEnabled(fit.guidance)
    if not fit.guidance:
        tab.guidance.setToolTip(f"{fit.label} is distilled to a few steps and ignores guidance.")
    elif fit.distilled_guidance:
        tab.guidance.setToolTip(f"{fit.label}'s distilled guidance (Forge's Distilled CFG Scale); 3.5 is typical.")
    else:
        tab.guidance.setToolTip(GUIDANCE_TIP)
    items: QStandardItemModel = tab.scheduler.model()
    for row in range(items.rowCount()):
        item = items.item(row)
        usable = item.text() in fit.schedulers
        item.setEnabled(usable)
        item.setToolTip("" if usable else f"{fit.label} cannot use this sampler.")
    if tab.scheduler.currentText() not in fit.schedulers:
        tab.scheduler.setCurrentText(fit.default_scheduler)
    if new_family:
        tab.steps.setValue(fit.steps)
        tab.guidance.setValue(fit.guidance_value)
        if min(tab.width_box.value(), tab.height_box.value()) > 64:  # a tiny test model keeps its 64 px
            tab.width_box.setValue(fit.size[0])
            tab.height_box.setValue(fit.size[1])
