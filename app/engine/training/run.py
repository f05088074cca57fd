"""A run folder on disk (DESIGN "Runs"): config, checkpoints, samples, log, resume state.

::

    <run>/config.toml
    <run>/<name>.safetensors                      the final adapter
    <run>/checkpoints/<name>-step000500.safetensors
    <run>/samples/step000500-0.png
    <run>/log.jsonl                               one line per step (and one per skipped picture)
    <run>/state/                                  adapter, optimizer, scheduler (safetensors, never
                                                  pickle), trainer.json (position), pictures.json

Every file is written atomically; ``state/`` is written as a new folder and swapped in,
so an interrupted save leaves the previous state whole, and what a killed save left
behind is cleaned when the run is resumed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from app.core import paths, run_state
from app.core.configs import ConfigError
from app.core.files import (
    SaveError,
    atomic_write_text,
    free_bytes,
    fsync_dir,
    make_ordinary,
    replace_durably,
    saving,
    size_text,
)
from app.core.train_config import TrainConfig, load_run_config
from app.engine.training import state_codec
from app.engine.training.data import TrainError

log = logging.getLogger(__name__)

STATE, STATE_FILES = run_state.STATE, run_state.STATE_FILES
PICTURES = "pictures.json"  # in state/: not needed to resume, only to tell that the dataset changed
EMA = "ema.safetensors"  # in state/ when [ema] is on: the weight average (optional, like pictures.json)
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

    @property
    def ema_path(self) -> Path:
        """The [ema] weight average, in the adapter's layout, rewritten at every save."""
        return self.path / f"{self.name}-ema.safetensors"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"{self.name}-step{step:06d}.safetensors"

    def sample_path(self, step: int, index: int) -> Path:
        return self.samples / f"step{step:06d}-{index}.png"

    def try_path(self, step: int, index: int) -> Path:
        """A "Try a prompt" picture: beside the samples, numbered over the session."""
        return self.samples / f"try-step{step:06d}-{index}.png"

    def checkpoint_files(self) -> list[Path]:
        """Step checkpoints, oldest first by their step number (step1000000 after step999999)."""
        found = []
        for path in self.checkpoints.glob(f"{self.name}-step*.safetensors"):
            digits = path.name[len(self.name) + len("-step") : -len(".safetensors")]
            if digits.isdigit():
                found.append((int(digits), path))
        return [path for _, path in sorted(found)]


def new_run_dir(config: TrainConfig) -> RunDir:
    """A fresh folder ``<output_dir>/<name>`` (``-2``, ``-3`` … when taken), with config.toml."""
    parent = Path(config.output_dir).expanduser() if config.output_dir else paths.runs_dir()
    if parent.exists() and not parent.is_dir():
        raise TrainError(f"output_dir {parent} is a file, not a folder; pick a folder for the runs")
    try:
        with saving(parent):
            parent.mkdir(parents=True, exist_ok=True)
    except SaveError as exc:
        raise TrainError(exc.sentence("start the run again"), kind=exc.kind) from None
    except OSError as exc:  # a file where a folder of the path should be, a name too long ...
        raise TrainError(f"output_dir {parent}: cannot be made a folder ({exc.strerror or exc})") from None
    for n in range(1, 10_000):
        path = parent / (config.name if n == 1 else f"{config.name}-{n}")
        try:
            with saving(path):
                path.mkdir()
        except FileExistsError:
            continue
        except SaveError as exc:
            raise TrainError(exc.sentence("start the run again"), kind=exc.kind) from None
        run = RunDir(path=path, name=config.name)
        try:
            config.save_toml(run.config_path)
        except SaveError as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise TrainError(exc.sentence("start the run again"), kind=exc.kind) from None
        return run
    raise TrainError(f"{parent}: too many runs named {config.name!r}; pick another name")


def save_failure(exc: SaveError, saved_step: int | None, need_bytes: int = 0) -> TrainError:
    """A failed save during training as the sentence that says what is still whole."""
    exc.need_bytes = max(exc.need_bytes or 0, need_bytes) or None
    then = (
        f"resume; the last checkpoint (step {saved_step}) is intact"
        if saved_step
        else "start the run again; nothing was saved yet"
    )
    return TrainError(exc.sentence(then), kind=exc.kind)


def space_needed(config: TrainConfig, adapter_bytes: int, pictures: int, channels: int = 4) -> tuple[int, int]:
    """About how many bytes this run will write: (run folder, training cache).

    Run folder: the checkpoints kept (``keep_last``, or every one when 0) and the final file,
    each the adapter's size, plus two resume states (old and new during a save) of adapter and
    optimizer moments. Cache: a float32 latent mean and std of ``channels`` (4 for SD, 16 for
    Flux) per picture (and per flip).
    """
    out = config.output
    saves = config.steps // out.save_every if out.save_every else 0
    kept = min(saves, out.keep_last) if out.keep_last > 0 else saves
    run = adapter_bytes * (kept + 1) + 2 * 4 * adapter_bytes
    side = config.data.resolution // 8
    cache = pictures * (2 if config.data.flip else 1) * channels * side * side * 2 * 4
    return run, cache


def space_warning(run: RunDir, cache_root: Path, needs: tuple[int, int]) -> str | None:
    """A warning when the disk(s) of the run folder and the cache have less free space than needed."""
    places: dict[int, tuple[Path, int]] = {}
    for folder, need in ((run.path, needs[0]), (cache_root, needs[1])):
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            device = probe.stat().st_dev
        except OSError:
            continue
        first, total = places.get(device, (folder, 0))
        places[device] = (first, total + need)
    for folder, need in places.values():
        free = free_bytes(folder)
        if free is not None and free < need:
            return (
                f"only {size_text(free)} free in {folder}, and this run needs about {size_text(need)} "
                "(checkpoints, resume state, caches): free space now or lower [output] keep_last, or the run "
                "stops when the disk is full"
            )
    return None


def remove_if_unused(run: RunDir) -> bool:
    """Remove a new run's folder when a failed start left nothing in it but its config.toml (and
    empty folders or an empty log), so the next run keeps the name instead of getting ``-2``."""
    files = [p for p in run.path.rglob("*") if not p.is_dir()]
    if any(p != run.config_path and not (p == run.log_path and p.stat().st_size == 0) for p in files):
        return False
    shutil.rmtree(run.path, ignore_errors=True)
    return True


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
        changed = sorted(
            k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES and k != "preset"
        )
        if changed:
            raise TrainError(
                f"{path}: cannot resume with a different {changed[0]!r} than the run was started "
                "with; start a new run instead"
            )
        config.save_toml(path / "config.toml")
    run = RunDir(path=path, name=saved.name)
    folder = run_state.state_folder(path)
    if folder is None:
        pickled = run_state.pickled_state(path)
        if pickled is not None:
            raise TrainError(
                f"{pickled}: resume state in the old pickle format, which could run code, is not "
                "loaded; start a new run (the checkpoints of this run are still usable)"
            )
        raise TrainError(f"{path}: nothing to resume (no saved state; the run stopped before its first save)")
    check_network(run, config or saved, _state_info(folder))
    for gone in clean_leftovers(run):
        log.info("removed %s, left by an interrupted save", gone)
    return run, config or saved


# ---------------------------------------------------------------- resume state


def save_state(
    run: RunDir,
    adapter: dict[str, torch.Tensor],
    optimizer: dict,
    scheduler: dict,
    info: dict[str, Any],
    pictures: dict[str, str] | None = None,
    ema: dict[str, Any] | None = None,
) -> None:
    """Write the whole resume state as a new folder, then swap it in.

    ``pictures`` (path -> hash of bytes and caption) lets a resume tell that the dataset changed;
    ``ema`` is the weight average's state when [ema] is on.
    """
    files = {
        "adapter.safetensors": safetensors_save(adapter),
        "optimizer.safetensors": state_codec.encode(optimizer),
        "scheduler.safetensors": state_codec.encode(scheduler),
        "trainer.json": json.dumps(info, indent=1).encode("utf-8"),
    }
    if pictures is not None:
        files[PICTURES] = json.dumps(pictures, separators=(",", ":")).encode("utf-8")
    if ema is not None:
        files[EMA] = state_codec.encode(ema)
    need = sum(len(data) for data in files.values())
    with saving(run.state, need):
        tmp = Path(tempfile.mkdtemp(prefix=".state.tmp-", dir=run.path))
    try:
        make_ordinary(tmp, folder=True)  # the run folder is the user's; mkdtemp made it private
        for name, data in files.items():
            with saving(run.state / name, need), open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        old = run.path / f".state.old-{os.getpid()}"
        with saving(run.state, need):
            if run.state.exists():
                os.replace(run.state, old)
            replace_durably(tmp, run.state)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_state(run: RunDir) -> tuple[dict[str, torch.Tensor], dict, dict, dict[str, Any]]:
    folder = run_state.state_folder(run.path)
    if folder is None:
        raise TrainError(f"{run.path}: the saved state is incomplete; start a new run")
    try:
        adapter = load_file(str(folder / "adapter.safetensors"))
    except Exception as exc:  # a damaged state file
        raise TrainError(
            f"{folder / 'adapter.safetensors'}: the saved state cannot be read ({exc}); start a new run"
        ) from None
    states = []
    for name in ("optimizer.safetensors", "scheduler.safetensors"):
        try:
            states.append(state_codec.decode_file(folder / name))
        except state_codec.StateFormatError as exc:
            raise TrainError(f"{folder / name}: the saved state cannot be read ({exc}); start a new run") from None
    optimizer, scheduler = states
    if (
        not isinstance(optimizer, dict)
        or not isinstance(optimizer.get("optimizer"), dict)
        or not isinstance(scheduler, dict)
    ):
        raise TrainError(f"{folder}: the saved optimizer or scheduler state is not a table; start a new run")
    return adapter, optimizer, scheduler, _state_info(folder)


def load_pictures(run: RunDir) -> dict[str, str] | None:
    """The pictures of the saved state (see :func:`save_state`); None when not recorded or unreadable."""
    folder = run_state.state_folder(run.path)
    try:
        data = json.loads((folder / PICTURES).read_text(encoding="utf-8")) if folder is not None else None
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return None
    return data


def resume_ema(run: RunDir, average: Any, warn: Any) -> None:
    """Load the saved weight average into ``average``; a missing or unfitting one restarts it (with a warning)."""
    folder = run_state.state_folder(run.path)
    path = (folder or run.state) / EMA
    try:
        average.load(state_codec.decode_file(path))
    except (state_codec.StateFormatError, ValueError) as exc:
        average.restart()
        warn(f"{path}: the saved weight average cannot be used ({exc}); the average restarts from the resumed weights")


def resume_into(run: RunDir, net: Any, optimizer: Any, scaler: Any, lr_scheduler: Any) -> dict[str, Any]:
    """Load the saved state into the network, optimizer, grad scaler and LR schedule; return trainer.json."""
    adapter, opt_state, sched_state, info = load_state(run)
    try:
        net.load_state(adapter)
        optimizer.load_state_dict(opt_state["optimizer"])
        if opt_state.get("scaler") is not None and scaler is not None:
            scaler.load_state_dict(opt_state["scaler"])
        lr_scheduler.load_state_dict(sched_state)
    except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as exc:  # shapes or entries that do not fit
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise TrainError(
            f"{run.state}: the saved state does not fit the network in {run.config_path} ({first}); "
            "were its network settings (rank, targets) changed? put them back or start a new run"
        ) from None
    return info


def _state_info(folder: Path) -> dict[str, Any]:
    try:
        return run_state.read_state_info(folder / "trainer.json")
    except run_state.StateInfoError as exc:
        raise TrainError(str(exc)) from None


def check_network(run: RunDir, config: TrainConfig, info: dict[str, Any]) -> None:
    """The network settings in config.toml must be those the saved state was trained with."""
    saved = info.get("network")
    if not isinstance(saved, dict):
        return  # saved before trainer.json recorded them: the state load itself then checks shapes
    now = config.network.to_dict()
    # A key the saved state lacks is a setting added since it was saved (init): its start no longer matters.
    for key in sorted(set(saved) | set(now)):
        if key in saved and saved.get(key) != now.get(key):
            raise TrainError(
                f"{run.config_path}: network {key!r} is {now.get(key)!r} but the saved state was "
                f"trained with {saved.get(key)!r}; put it back or start a new run"
            )


def clean_leftovers(run: RunDir) -> list[Path]:
    """Remove what a killed save left behind (temp folders and files); return what was removed.

    An old state folder is the saved state when the kill fell between the two renames of
    :func:`save_state`: then it becomes ``state/`` again instead of being removed.
    """
    removed: list[Path] = []
    whole = run_state.state_folder(run.path)
    if whole is not None and whole != run.state:
        if run.state.exists():
            aside = run.path / f".state.tmp-incomplete-{os.getpid()}"
            os.replace(run.state, aside)
        os.replace(whole, run.state)
    for folder in [*run.path.glob(".state.tmp-*"), *run.path.glob(".state.old-*")]:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for where in (run.path, run.checkpoints, run.samples):
        for pattern in (".*.tmp", ".*.tmp.*"):
            for path in where.glob(pattern):
                if path.is_file() or path.is_symlink():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


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
        with saving(path):
            self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run, closed by close()

    def note_skipped(self, lines: list[str]) -> None:
        """One ``{"skipped": "path: problem"}`` line per skipped picture (once, even over resumes)."""
        known = set()
        if self.path.stat().st_size:
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    known.add(json.loads(line).get("skipped"))
                except (ValueError, AttributeError):
                    continue
        for line in lines:
            if line not in known:
                self.write({"skipped": line})

    def write(self, record: dict[str, Any]) -> None:
        with saving(self.path):
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError:  # every line was flushed when written; a failing write already raised
            pass


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The step records of ``log.jsonl`` (not the notes of skipped pictures)."""
    records = [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [r for r in records if "step" in r]


def checkpoint_steps(run: RunDir) -> list[tuple[int, Path]]:
    """(step, file) of the step checkpoints, oldest first."""
    return [(int(p.name[len(run.name) + len("-step") : -len(".safetensors")]), p) for p in run.checkpoint_files()]


def prune_checkpoints(run: RunDir, keep_last: int, keep_step: int | None = None) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints (0 keeps all) and the one of
    ``keep_step`` (the best by validation loss); return the deleted."""
    if keep_last <= 0:
        return []
    found = checkpoint_steps(run)
    files = [p for s, p in found if s != keep_step]
    doomed = files[:-keep_last] if len(files) > keep_last else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
