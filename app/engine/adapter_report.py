"""What applying an adapter file to a base model did: the load report.

Partial application is never silent: every layer of the file is either applied or
skipped with its reason, and every tensor is either used or listed as ignored by its
role (``.w_norm``, ``.bm.weight`` …). The Generate row shows :meth:`LoadReport.badge`
("92/92 layers") and, when something was left out, :meth:`LoadReport.lines` in a tooltip;
``loraloom inspect FILE --base MODEL`` prints the same lines.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

NOT_IN_BASE = "not in the base model"


@dataclass
class LoadReport:
    file: str
    layers_total: int
    layers_applied: int
    tensors_total: int
    tensors_used: int
    ignored: dict[str, int] = field(default_factory=dict)  # role -> number of tensors not applied
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (layer, reason)
    family: str | None = None
    family_evidence: str = ""

    @property
    def complete(self) -> bool:
        return self.layers_applied == self.layers_total and self.tensors_used == self.tensors_total

    def badge(self) -> str:
        return f"{self.layers_applied}/{self.layers_total} layers"

    def lines(self) -> list[str]:
        out = [
            f"layers: {self.layers_applied} of {self.layers_total} applied",
            f"tensors: {self.tensors_used} of {self.tensors_total} used",
        ]
        if self.ignored:
            out.append("ignored tensors: " + ", ".join(f".{role} ×{n}" for role, n in sorted(self.ignored.items())))
        reasons = collections.Counter(reason for _, reason in self.skipped)
        for reason, n in reasons.most_common():
            example = next(layer for layer, r in self.skipped if r == reason)
            out.append(f"skipped {n} layer{'s' if n > 1 else ''} ({reason}), e.g. {example}")
        out.append(f"family: {self.family or 'unknown'} ({self.family_evidence or 'no evidence'})")
        return out

    def warning(self) -> str:
        """One sentence for the adapter row when something was left out ('' when all of it applies)."""
        if self.complete:
            return ""
        parts = []
        if self.layers_applied != self.layers_total:
            parts.append(f"{self.layers_total - self.layers_applied} of its {self.layers_total} layers were skipped")
        if self.ignored:
            parts.append(
                f"{sum(self.ignored.values())} tensors were ignored "
                f"({', '.join('.' + r for r in sorted(self.ignored))})"
            )
        return f"{self.file}: " + " and ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "layers": self.badge(),
            "complete": self.complete,
            "layers_total": self.layers_total,
            "layers_applied": self.layers_applied,
            "tensors_total": self.tensors_total,
            "tensors_used": self.tensors_used,
            "ignored": dict(self.ignored),
            "skipped": [list(s) for s in self.skipped],
            "family": self.family,
            "family_evidence": self.family_evidence,
            "lines": self.lines(),
        }


def build_report(
    file: str,
    groups: dict[str, dict[str, Any]],
    applied: set[str],
    skipped: dict[str, str],
    family: str | None,
    evidence: str,
) -> LoadReport:
    """From the file's tensors grouped by layer (role -> tensor) and what became of each layer.

    A role starting with ``?`` is one the reader does not know: in an applied layer it is
    counted as ignored; a layer neither applied nor skipped for a reason is skipped for that.
    """
    ignored: collections.Counter = collections.Counter()
    used = 0
    for module in applied:
        for role in groups[module]:
            if role.startswith("?"):
                ignored[role[1:]] += 1
            else:
                used += 1
    skipped = dict(skipped)
    for module in set(groups) - applied - set(skipped):
        skipped[module] = (
            "no weights LoRA Loom can apply (" + ", ".join("." + r.lstrip("?") for r in sorted(groups[module])) + ")"
        )
    return LoadReport(
        file=file,
        layers_total=len(groups),
        layers_applied=len(applied),
        tensors_total=sum(len(r) for r in groups.values()),
        tensors_used=used,
        ignored=dict(ignored),
        skipped=sorted(skipped.items()),
        family=family,
        family_evidence=evidence,
    )
