"""Past training runs read from their folders (no Qt, no torch; called on a pool thread).

A run folder (DESIGN "Runs") says everything: ``config.toml`` (what), ``log.jsonl`` (the
losses), ``state/trainer.json`` (the step a resume starts from), ``checkpoints/``,
``samples/`` and the final ``<name>.safetensors``. A damaged file is reported in
``problem`` and the rest of the run is still listed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from app.core import run_state
from app.core.configs import ConfigError
from app.core.train_config import TrainConfig, load_run_config
from app.core.train_validation import best_step

_CHECKPOINT = re.compile(r"-step(\d+)\.safetensors$")
_SAMPLE = re.compile(r"^(?:try-)?step(\d+)-(\d+)\.png$")  # samples, and "Try a prompt" pictures


class RunStatus(str, Enum):
    DONE = "done"  # the final adapter is written and the run reached its steps
    INTERRUPTED = "interrupted"  # stopped, crashed or killed after a save: Resume continues it
    NOT_SAVED = "not saved"  # stopped before its first save: nothing to resume
    RUNNING = "running"  # running now (set by the GUI, never read from disk)
    UNREADABLE = "unreadable"  # config.toml is missing or broken


@dataclass
class LossLog:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    val: dict[int, float] = field(default_factory=dict)  # step -> validation loss ([validation] runs)


@dataclass
class RunInfo:
    path: Path
    name: str
    status: RunStatus
    total: int = 0  # the config's steps
    step: int = 0  # the last step in the log
    saved_step: int = 0  # the step a resume starts from (0: no saved state)
    final_loss: float | None = None
    final: Path | None = None
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)  # (step, file), oldest first
    samples: list[tuple[int, Path]] = field(default_factory=list)  # (step, picture), oldest first
    started: float = 0.0  # mtime of config.toml
    config: TrainConfig | None = None
    problem: str = ""
    log: LossLog | None = None  # only with read_run(..., with_log=True)
    best: tuple[int, float] | None = None  # (step, validation loss) of the saved adapter that scored best

    @property
    def final_step(self) -> int:
        return self.saved_step or self.total

    crashed: bool = False  # interrupted by a crash, kill or power loss (not a stop the user asked for)

    @property
    def resumable(self) -> bool:
        return self.status is RunStatus.INTERRUPTED

    def adapters(self) -> list[tuple[str, Path]]:
        """(label, file) of every adapter file of the run, the final one last."""
        best = self.best[0] if self.best is not None else None
        out = [(adapter_label(step, False, step == best), path) for step, path in self.checkpoints]
        if self.final is not None:
            out.append((adapter_label(self.final_step, True, self.final_step == best), self.final))
        return out


def adapter_label(step: int, final: bool, best: bool = False) -> str:
    """How a run's adapter file is named in Checkpoints, Compare and History."""
    label = f"final (step {step})" if final else f"step {step}"
    return label + BEST_MARK if best else label


BEST_MARK = " ★ best validation loss"


def read_log(path: Path) -> LossLog:
    """The losses of ``log.jsonl``; a half-written last line (a killed run) is skipped."""
    log = LossLog()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return log
    for line in text.splitlines():
        try:
            record = json.loads(line)
            step, loss = int(record["step"]), float(record["loss"])
            lr = float(record.get("lr", 0.0))
        except (ValueError, KeyError, TypeError):
            continue
        val = record.get("val_loss")
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            log.val[step] = float(val)
        log.steps.append(step)
        log.losses.append(loss)
        log.lrs.append(lr)
    return log


def read_run(folder: str | Path, *, with_log: bool = False) -> RunInfo:
    folder = Path(folder)
    info = RunInfo(path=folder, name=folder.name, status=RunStatus.UNREADABLE)
    config_path = folder / "config.toml"
    try:
        info.started = config_path.stat().st_mtime
        info.config = load_run_config(config_path)
    except OSError:
        info.problem = f"{config_path}: missing"
    except ConfigError as exc:
        info.problem = str(exc)
    if info.config is not None:
        info.name, info.total = info.config.name, info.config.steps
    log = read_log(folder / "log.jsonl")
    if log.steps:
        info.step, info.final_loss = log.steps[-1], log.losses[-1]
    if with_log:
        info.log = log
    info.saved_step = run_state.saved_step(folder)
    for path in sorted((folder / "checkpoints").glob("*.safetensors")):
        found = _CHECKPOINT.search(path.name)
        if found:
            info.checkpoints.append((int(found.group(1)), path))
    info.checkpoints.sort()
    final = folder / f"{info.name}.safetensors"
    info.final = final if final.is_file() else None
    for path in (folder / "samples").glob("*.png"):
        found = _SAMPLE.match(path.name)
        if found:
            info.samples.append((int(found.group(1)), path))
    info.samples.sort(key=lambda s: (s[0], s[1].name))
    saved = [s for s, _ in info.checkpoints] + ([info.final_step] if info.final is not None else [])
    best = best_step(log.val, saved)
    info.best = None if best is None else (best, log.val[best])
    if info.config is not None:
        if info.final is not None and info.saved_step >= info.total:
            info.status = RunStatus.DONE
        elif info.saved_step > 0:
            info.status = RunStatus.INTERRUPTED
            info.crashed = run_state.crashed(folder)
        else:
            info.status = RunStatus.NOT_SAVED
    return info


def list_runs(parents: list[str | Path]) -> list[RunInfo]:
    """Every run folder (one with a config.toml) directly under ``parents``, newest first."""
    seen: set[Path] = set()
    runs: list[RunInfo] = []
    for parent in parents:
        parent = Path(parent).expanduser()
        if not parent.is_dir():
            continue
        for folder in parent.iterdir():
            key = folder.resolve()
            if key in seen or not folder.is_dir() or not (folder / "config.toml").is_file():
                continue
            seen.add(key)
            runs.append(read_run(folder))
    runs.sort(key=lambda r: r.started, reverse=True)
    return runs
