"""Numbers put into words the same way in every tab."""

from __future__ import annotations

import math


def format_eta(eta_s: float | None) -> str:
    if eta_s is None or not math.isfinite(eta_s) or eta_s < 0:
        return ""
    if eta_s < 60:
        return f"{eta_s:.0f} s"
    minutes, seconds = divmod(int(round(eta_s)), 60)
    return f"{minutes} min {seconds:02d} s"
