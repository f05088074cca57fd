"""A run folder on disk (DESIGN "Runs"): config, checkpoints, samples, log, resume state.

::

    <run>/config.toml
    <run>/<name>.safetensors                      the final adapter
    <run>/checkpoints/<name>-step000500.safetensors
    <run>/samples/step000500-0.png
    <run>/log.jsonl                               one line per step
    <run>/state/                                  adapter, optimizer, scheduler, position

Every file is written atomically; ``state/`` is written as a new folder and swapped in,
so an interrupted save leaves the previous state whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from app.core import paths
from app.core.configs import ConfigError
from app.core.files import atomic_write_text, make_ordinary
from app.core.train_config import TrainConfig, load_run_config
from app.engine.training.data import TrainError


STATE = "state"
STATE_FILES = ("adapter.safetensors", "optimizer.pt", "scheduler.pt", "trainer.json")
# Settings a resumed run may change (more steps, other sample prompts ...); the rest must match.
RESUMABLE_CHANGES = {"steps", "output", "sample", "device", "cache_dir", "output_dir", "trigger"}


@dataclass
class RunDir:
    path: Path
    name: str

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def final_path(self) -> Path:
        return self.path / f"{self.name}.safetensors"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"{self.name}-step{step:06d}.safetensors"

    def sample_path(self, step: int, index: int) -> Path:
        return self.samples / f"step{step:06d}-{index}.png"

    def checkpoint_files(self) -> list[Path]:
        return sorted(self.checkpoints.glob(f"{self.name}-step*.safetensors"))


def new_run_dir(config: TrainConfig) -> RunDir:
    """A fresh folder ``<output_dir>/<name>`` (``-2``, ``-3`` … when taken), with config.toml."""
    parent = Path(config.output_dir).expanduser() if config.output_dir else paths.runs_dir()
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (config.name if n == 1 else f"{config.name}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        run = RunDir(path=path, name=config.name)
        config.save_toml(run.config_path)
        return run
    raise TrainError(f"{parent}: too many runs named {config.name!r}; pick another name")


def open_run_dir(folder: str | Path, config: TrainConfig | None = None) -> tuple[RunDir, TrainConfig]:
    """An existing run to resume; ``config`` (if given) may change only RESUMABLE_CHANGES."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise TrainError(f"{path}: no such run folder")
    if not (path / "config.toml").is_file():
        raise TrainError(f"{path}: not a training run (no config.toml inside)")
    try:
        saved = load_run_config(path / "config.toml")
    except ConfigError as exc:
        raise TrainError(str(exc)) from None
    if config is not None:
        old, new = saved.to_dict(), config.to_dict()
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES
                         and k != "preset")
        if changed:
            raise TrainError(f"{path}: cannot resume with a different {changed[0]!r} than the run was started "
                             "with; start a new run instead")
        config.save_toml(path / "config.toml")
    run = RunDir(path=path, name=saved.name)
    if load_state_info(run) is None:
        raise TrainError(f"{path}: nothing to resume (no saved state; the run stopped before its first save)")
    return run, config or saved


# ---------------------------------------------------------------- resume state


def save_state(run: RunDir, adapter: dict[str, torch.Tensor], optimizer: dict, scheduler: dict,
               info: dict[str, Any]) -> None:
    """Write the whole resume state as a new folder, then swap it in."""
    tmp = Path(tempfile.mkdtemp(prefix=".state.tmp-", dir=run.path))
    try:
        make_ordinary(tmp, folder=True)  # the run folder is the user's; mkdtemp made it private
        (tmp / "adapter.safetensors").write_bytes(safetensors_save(adapter))
        torch.save(optimizer, tmp / "optimizer.pt")
        torch.save(scheduler, tmp / "scheduler.pt")
        (tmp / "trainer.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        for name in STATE_FILES:
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        old = run.path / f".state.old-{os.getpid()}"
        if run.state.exists():
            os.replace(run.state, old)
        os.replace(tmp, run.state)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _state_folder(run: RunDir) -> Path | None:
    if all((run.state / n).is_file() for n in STATE_FILES):
        return run.state
    # Interrupted between the two renames of save_state: the previous state is still whole.
    for old in sorted(run.path.glob(".state.old-*")):
        if all((old / n).is_file() for n in STATE_FILES):
            return old
    return None


def load_state_info(run: RunDir) -> dict[str, Any] | None:
    folder = _state_folder(run)
    if folder is None:
        return None
    try:
        return json.loads((folder / "trainer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_state(run: RunDir) -> tuple[dict[str, torch.Tensor], dict, dict, dict[str, Any]]:
    folder = _state_folder(run)
    if folder is None:
        raise TrainError(f"{run.path}: the saved state is incomplete; start a new run")
    try:
        adapter = load_file(str(folder / "adapter.safetensors"))
        optimizer = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=False)
        scheduler = torch.load(folder / "scheduler.pt", map_location="cpu", weights_only=False)
        info = json.loads((folder / "trainer.json").read_text(encoding="utf-8"))
    except Exception as exc:  # a damaged state file
        raise TrainError(f"{folder}: the saved state cannot be read ({exc})") from None
    return adapter, optimizer, scheduler, info


# ---------------------------------------------------------------- log and checkpoints


class StepLog:
    """``log.jsonl``: one JSON line per optimizer step."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        if resume_step is not None and path.is_file():
            lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            kept = []
            for line in lines:
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except ValueError:
                    continue
            atomic_write_text(path, "".join(k + "\n" for k in kept))
        self._fh = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


def prune_checkpoints(run: RunDir, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints (0 keeps all); return the deleted."""
    if keep_last <= 0:
        return []
    files = run.checkpoint_files()
    doomed = files[:-keep_last] if len(files) > keep_last else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


