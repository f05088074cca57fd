"""Where a run folder keeps its resume state, and the checked reading of ``trainer.json``.

Shared by the trainer (engine) and the run history (GUI), so both agree on what a whole
saved state is. Layout (DESIGN "Runs")::

    <run>/state/adapter.safetensors  optimizer.safetensors  scheduler.safetensors  trainer.json
    <run>/.state.old-<pid>/           the previous state, during the swap of a save
    <run>/.state.tmp-<random>/        a save being written
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

STATE = "state"
STATE_FILES = ("adapter.safetensors", "optimizer.safetensors", "scheduler.safetensors", "trainer.json")
# Pickles written before the safetensors state format: never loaded, since a pickle can run code.
PICKLED_STATE = ("optimizer.pt", "scheduler.pt")
MAX_INFO_BYTES = 1 << 20


class StateInfoError(ValueError):
    """``trainer.json`` is unreadable or holds impossible values; the message is one sentence."""


def state_folder(run: Path) -> Path | None:
    """The folder holding a whole saved state: ``state/`` or, after an interrupted swap, an old one."""
    if all((run / STATE / n).is_file() for n in STATE_FILES):
        return run / STATE
    for old in sorted(run.glob(".state.old-*")):
        if all((old / n).is_file() for n in STATE_FILES):
            return old
    return None


def pickled_state(run: Path) -> Path | None:
    """A state file in the old pickle format, if the run has one (and no state of the new format)."""
    for folder in [run / STATE] + sorted(run.glob(".state.old-*")):
        for name in PICKLED_STATE:
            if (folder / name).is_file():
                return folder / name
    return None


def read_state_info(path: Path) -> dict[str, Any]:
    """``trainer.json`` with ``step`` a whole number >= 0 and the times finite numbers."""
    try:
        if path.stat().st_size > MAX_INFO_BYTES:
            raise StateInfoError(f"{path}: too large for a resume state ({path.stat().st_size} bytes)")
        info = json.loads(path.read_text(encoding="utf-8"))
    except StateInfoError:
        raise
    except (OSError, ValueError, RecursionError) as exc:
        raise StateInfoError(f"{path}: cannot be read ({type(exc).__name__}); the resume state is damaged") from None
    if not isinstance(info, dict):
        raise StateInfoError(f"{path}: not a table; the resume state is damaged")
    step = info.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise StateInfoError(
            f"{path}: 'step' must be a whole number of 0 or more, not {str(step)[:40]!r}; the resume state is damaged"
        )
    for key in ("elapsed", "started_at"):
        value = info.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise StateInfoError(
                f"{path}: {key!r} must be a number of 0 or more, not {str(value)[:40]!r}; the resume state is damaged"
            )
    return info


def crashed(run: Path) -> bool:
    """Whether the run's last save was not a stop the user asked for (trainer.json says
    ``"stopped": false``): a crash, kill or power loss ended it, or a save failed. States saved
    before the flag existed say nothing, and count as not crashed."""
    folder = state_folder(run)
    if folder is None:
        return False
    try:
        return read_state_info(folder / "trainer.json").get("stopped", True) is False
    except StateInfoError:
        return False


def saved_step(run: Path) -> int:
    """The step a resume starts from; 0 when there is no whole, readable state."""
    folder = state_folder(run)
    if folder is None:
        return 0
    try:
        return int(read_state_info(folder / "trainer.json")["step"])
    except StateInfoError:
        return 0
