"""The Train tab's state and operations, with no widget in sight.

:class:`TrainOps` keeps the run queue (configs and resumes that run one after another in
the worker), follows the running job's events (progress, loss, samples, checkpoints),
stops it (first cooperatively, then at once), asks it for a checkpoint or samples now,
and reads past runs from their folders on a pool thread. The tab binds to its signals.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.core import paths
from app.core.configs import ConfigError
from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, LogLevel, LogLine, Phase, Progress
from app.core.files import atomic_write_text
from app.core.train_config import TrainConfig, load_preset
from app.core.train_queue import EntryState
from app.core.train_requests import MAX_PROMPT_CHARS
from app.core.train_validation import best_step
from app.ui.common.errors import describe_error
from app.ui.common.tasks import TaskRunner
from app.ui.jobs import JobError, JobHandle, JobState, JobTracker
from app.ui.train.run_history import RunInfo, RunStatus, adapter_label, list_runs, read_run
from app.worker.protocol import ErrorKind, JobKind, RequestAction

log = logging.getLogger(__name__)

SETTINGS_FILE = "train.toml"
DECLINED_FILE = "resume-declined.json"  # interrupted runs the user chose not to resume at start
DEFAULT_PRESET = "sd15-character"


def same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


@dataclass
class QueueEntry:
    id: int
    name: str
    config: TrainConfig | None  # None: a resume with the run's own config
    resume: str = ""  # run folder to continue
    state: EntryState = EntryState.WAITING
    job_id: str = ""
    run_dir: str = ""
    step: int = 0
    total: int = 0
    training: bool = False  # a step has finished (Save/Sample now make sense)
    error: str = ""

    def describe(self) -> str:
        what = f"{self.name} (resume)" if self.resume else self.name
        if self.state is EntryState.WAITING:
            return f"{what} — waiting"
        if self.state.active:
            progress = f" {self.step}/{self.total}" if self.total else ""
            return f"{what} — {self.state.value}{progress}"
        if self.state is EntryState.FAILED:
            return f"{what} — failed: {self.error.splitlines()[0] if self.error else ''}"
        return f"{what} — {self.state.value} at step {self.step}"


@dataclass
class RunView:
    """What the loss plot, sample gallery and checkpoint list show: the live run or a past one."""

    run_dir: str = ""
    name: str = ""
    live: bool = False
    config: TrainConfig | None = None
    points: dict[int, tuple[float, float]] = field(default_factory=dict)  # step -> (loss, lr)
    samples: dict[str, tuple[int, dict]] = field(default_factory=dict)  # picture -> (step, meta)
    adapters: dict[str, tuple[int, ArtifactKind]] = field(default_factory=dict)  # file -> (step, CHECKPOINT | ADAPTER)
    val_points: dict[int, float] = field(default_factory=dict)  # step -> validation loss

    def series(self) -> tuple[list[int], list[float], list[float]]:
        steps = sorted(self.points)
        return steps, [self.points[s][0] for s in steps], [self.points[s][1] for s in steps]

    def val_series(self) -> tuple[list[int], list[float]]:
        steps = sorted(self.val_points)
        return steps, [self.val_points[s] for s in steps]

    def best_step(self) -> int | None:
        """The step of the saved adapter with the lowest validation loss (None without validation)."""
        return best_step(self.val_points, [step for step, _ in self.adapters.values()])

    def adapter_list(self) -> list[tuple[str, str]]:
        """(label, file), step checkpoints by step, the final adapter last; the best one marked."""
        ordered = sorted(self.adapters.items(), key=lambda kv: (kv[1][1] is ArtifactKind.ADAPTER, kv[1][0]))
        best = self.best_step()
        return [
            (adapter_label(step, kind is ArtifactKind.ADAPTER, step == best), path) for path, (step, kind) in ordered
        ]

    def merge(self, info: RunInfo) -> None:
        """Add what the run folder holds (a resumed or past run) without replacing live values."""
        if info.log is not None:
            for step, loss, lr in zip(info.log.steps, info.log.losses, info.log.lrs):
                self.points.setdefault(step, (loss, lr))
            for step, val in info.log.val.items():
                self.val_points.setdefault(step, val)
        for step, path in info.samples:
            self.samples.setdefault(str(path), (step, {}))
        for step, path in info.checkpoints:
            self.adapters.setdefault(str(path), (step, ArtifactKind.CHECKPOINT))
        if info.final is not None:
            self.adapters.setdefault(str(info.final), (info.saved_step or info.total, ArtifactKind.ADAPTER))
        if self.config is None:
            self.config = info.config


class TrainOps(QObject):
    queueChanged = Signal()  # entries added, removed, moved or changed state
    currentChanged = Signal()  # the running entry or its state changed (buttons)
    progressChanged = Signal(int, int, object, str)  # (step, total, eta_s or None, message)
    viewReset = Signal()  # the shown run changed as a whole: redraw plot, gallery, checkpoints
    lossAdded = Signal()  # new points on the live run's curve
    sampleAdded = Signal(int, str, dict)  # (step, path, meta) of the shown run
    adapterAdded = Signal(int, str, object)  # (step, path, ArtifactKind CHECKPOINT | ADAPTER) of the shown run
    historyChanged = Signal()
    interruptedFound = Signal(object)  # RunInfo of a run a crash, kill or power loss ended: offer to resume it
    message = Signal(str)  # one line for the status

    def __init__(
        self, tracker: JobTracker, *, settings_path: Path | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.tracker = tracker
        self.client = tracker.client
        self.entries: list[QueueEntry] = []
        self.paused = False
        self.live_view = RunView(live=True)
        self.view = self.live_view
        self.history: list[RunInfo] = []
        self._ids = itertools.count(1)
        self.resume_offer = ""  # a run that failed for lack of space or permission: History selects it
        self._shown = 0  # bumped whenever the shown run changes; stale reads are dropped
        self._runner = TaskRunner(max_threads=2, parent=self)
        self._settings_path = settings_path or paths.config_dir() / SETTINGS_FILE

    # ------------------------------------------------------------ settings
    @property
    def settings_path(self) -> Path:
        return self._settings_path

    def load_settings(self) -> TrainConfig:
        """The last config used (restored at start), else the default preset."""
        if self._settings_path.exists():
            try:
                return TrainConfig.load_toml(self._settings_path)
            except ConfigError as exc:
                log.warning("ignoring the saved Train settings: %s", exc)
        try:
            return load_preset(DEFAULT_PRESET)
        except ConfigError:
            return TrainConfig()

    def save_settings(self, config: TrainConfig) -> None:
        try:
            config.save_toml(self._settings_path)
        except OSError as exc:
            log.warning("could not save the Train settings to %s: %s", self._settings_path, exc)

    # ------------------------------------------------------------ queue
    @property
    def current(self) -> QueueEntry | None:
        return next((e for e in self.entries if e.state.active), None)

    def waiting(self) -> list[QueueEntry]:
        return [e for e in self.entries if e.state is EntryState.WAITING]

    def entry(self, entry_id: int) -> QueueEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def enqueue(self, config: TrainConfig, *, front: bool = False) -> QueueEntry:
        return self._add(QueueEntry(id=next(self._ids), name=config.name, config=config, total=config.steps), front)

    def enqueue_resume(self, run_dir: str | Path, *, front: bool = False) -> QueueEntry:
        folder = Path(run_dir)
        return self._add(QueueEntry(id=next(self._ids), name=folder.name, config=None, resume=str(folder)), front)

    def _add(self, entry: QueueEntry, front: bool) -> QueueEntry:
        if front:
            done = [e for e in self.entries if e.state is not EntryState.WAITING]
            self.entries = done + [entry] + self.waiting()
        else:
            self.entries.append(entry)
        self.queueChanged.emit()
        return entry

    def start(self, config: TrainConfig) -> QueueEntry:
        """Run ``config`` next (now, when nothing runs) and let the queue go on after it."""
        entry = self.enqueue(config, front=True)
        self.start_queue()
        return entry

    def resume(self, run_dir: str | Path) -> QueueEntry:
        entry = self.enqueue_resume(run_dir, front=True)
        self.start_queue()
        return entry

    def start_queue(self) -> None:
        self.paused = False
        self._run_next()

    def remove(self, entry_id: int) -> None:
        entry = self.entry(entry_id)
        if entry is not None and not entry.state.active:
            self.entries.remove(entry)
            self.queueChanged.emit()

    def move(self, entry_id: int, delta: int) -> None:
        entry = self.entry(entry_id)
        if entry is None or entry.state is not EntryState.WAITING:
            return
        index = self.entries.index(entry)
        target = max(0, min(len(self.entries) - 1, index + delta))
        if self.entries[target].state is not EntryState.WAITING:
            return  # waiting runs move among themselves only
        self.entries.insert(target, self.entries.pop(index))
        self.queueChanged.emit()

    def clear_finished(self) -> None:
        self.entries = [e for e in self.entries if not e.state.final]
        self.queueChanged.emit()

    def _run_next(self) -> None:
        if self.current is not None or self.paused:
            return
        waiting = self.waiting()
        if not waiting:
            return
        entry = waiting[0]
        params: dict[str, Any] = {"resume": entry.resume} if entry.resume else {"config": entry.config.to_dict()}
        entry.state = EntryState.RUNNING
        # The id is known before submitting: a worker that fails to start answers during submit().
        entry.job_id = uuid.uuid4().hex
        self._shown += 1  # a past run still being read must not replace the new live view
        self.live_view = RunView(name=entry.name, live=True, config=entry.config, run_dir=entry.resume)
        self.view = self.live_view
        self.viewReset.emit()
        self.tracker.submit(
            JobKind.TRAIN.value, {**params, "id": entry.job_id}, connect=lambda handle, e=entry: self._follow(e, handle)
        )
        self.progressChanged.emit(0, entry.total, None, "waiting for the worker…")
        self.message.emit(f"Training {entry.describe().split(' — ')[0]}…")
        self.queueChanged.emit()
        self.currentChanged.emit()

    # ------------------------------------------------------------ controls
    def stop(self) -> None:
        """First press: finish the step, save a resumable state. Second press: stop at once."""
        entry = self.current
        if entry is None:
            return
        self.paused = True  # the queue waits; Start queue goes on
        if entry.state is EntryState.RUNNING:
            entry.state = EntryState.STOPPING
            self.tracker.cancel(entry.job_id)
            self.message.emit(
                "Stopping after this step and saving a resumable state; press Stop again to stop at once."
            )
        else:
            # Kill the worker: files are written atomically, so the last checkpoint and resume state
            # stay whole; only the steps since that save are lost. The worker restarts with the next job.
            self.message.emit("Stopped at once; Resume continues from the last save.")
            self.client.kill(restart=False)
        self.queueChanged.emit()
        self.currentChanged.emit()

    def request(self, action: RequestAction | str) -> bool:
        """Save a checkpoint / render the samples after the current step of the running run."""
        action = RequestAction(action)
        entry = self.current
        if entry is None or entry.state is not EntryState.RUNNING:
            return False
        if action is RequestAction.SAMPLE and entry.config is not None and not entry.config.sample.prompts:
            self.message.emit("This run has no sample prompts; add some for the next run.")
            return False
        sent = self.client.request(entry.job_id, action.value)
        if sent:
            what = "a checkpoint" if action is RequestAction.CHECKPOINT else "the sample pictures"
            self.message.emit(f"Asked for {what} after this step.")
        return sent

    def try_prompt(self, prompt: str) -> bool:
        """Render ``prompt`` with the adapter as it is after the current step, in the running job
        (no model reload; the picture comes to Samples with its step)."""
        entry, prompt = self.current, prompt.strip()
        if entry is None or entry.state is not EntryState.RUNNING or not entry.training:
            self.message.emit("Try a prompt works while a run is training.")
            return False
        if not prompt or len(prompt) > MAX_PROMPT_CHARS:
            self.message.emit(f"Type a prompt of 1 to {MAX_PROMPT_CHARS} characters to try.")
            return False
        sent = self.client.request(entry.job_id, RequestAction.TRY.value, prompt=prompt)
        if sent:
            self.message.emit(f"Rendering “{prompt}” after this step; it shows in Samples.")
        return sent

    # ------------------------------------------------------------ events
    def _entry_for(self, job_id: str | None) -> QueueEntry | None:
        return next((e for e in self.entries if job_id and e.job_id == job_id), None)

    def _follow(self, entry: QueueEntry, handle: JobHandle) -> None:
        """Route one run's job events to this entry (events after the entry ended are dropped)."""

        def live(method: Callable[..., None]) -> Callable[..., None]:
            return lambda *args: None if entry.state.final else method(entry, *args)

        handle.progress.connect(live(self._on_progress))
        handle.image.connect(live(self._on_image))
        handle.artifact.connect(live(self._on_artifact))
        handle.log.connect(live(self._on_log))
        handle.finished.connect(live(self._on_finished))

    def _on_progress(self, entry: QueueEntry, progress: Progress) -> None:
        view = self.live_view
        if progress.phase is not Phase.CACHING:  # caching counts pictures, not the run's steps
            entry.step, entry.total = progress.step, progress.total or entry.total
        if progress.loss is not None:
            if not entry.training:
                entry.training = True
                self.message.emit(f"Training {entry.name}.")  # replaces "loading …", "caching …"
            view.points[entry.step] = (progress.loss, progress.lr or 0.0)
            if progress.val_loss is not None:
                view.val_points[entry.step] = progress.val_loss
            if self.view is view:
                self.lossAdded.emit()
            if entry.step == 1 or entry.step % 25 == 0:
                self.currentChanged.emit()
        self.progressChanged.emit(entry.step, entry.total, progress.eta_s, progress.message)

    def _on_image(self, entry: QueueEntry, image: ImageReady) -> None:
        view = self.live_view
        step = image.step or 0
        view.samples[image.path] = (step, image.meta)
        if self.view is view:
            self.sampleAdded.emit(step, image.path, image.meta)

    def _on_log(self, entry: QueueEntry, line: LogLine) -> None:
        if line.level in (LogLevel.INFO, LogLevel.WARNING):
            self.message.emit(line.message)

    def _on_artifact(self, entry: QueueEntry, saved: ArtifactSaved) -> None:
        view, kind, path = self.live_view, saved.kind, saved.path
        if kind is ArtifactKind.RUN:
            entry.run_dir = view.run_dir = path
            # A second run named "shapes_a" is written to shapes_a-2: call it that from now on
            # (status line, queue, History), so two runs of one name are never confused.
            entry.name = view.name = Path(path).name
            self.queueChanged.emit()
            # A resumed run already has losses, samples and checkpoints on disk: show them too.
            self._runner.run(lambda p=path: read_run(p, with_log=True), lambda info, v=view: self._merged(v, info))
            self.refresh_history()
        elif kind in (ArtifactKind.CHECKPOINT, ArtifactKind.ADAPTER):
            step = saved.step or 0
            view.adapters[path] = (step, kind)
            if self.view is view:
                self.adapterAdded.emit(step, path, kind)

    def _merged(self, view: RunView, info: RunInfo) -> None:
        view.merge(info)
        if self.view is view:
            self.viewReset.emit()

    def _on_finished(self, entry: QueueEntry, state: JobState, error: JobError | None) -> None:
        if state is JobState.DONE:
            entry.state = EntryState.DONE
            self.message.emit(f"{entry.name}: finished at step {entry.step}.")
        elif state is JobState.CANCELLED:
            entry.state = EntryState.STOPPED
            self.message.emit(f"{entry.name}: stopped at step {entry.step}; Resume (History) continues it.")
        else:
            error = error or JobError(ErrorKind.INTERNAL, "")
            entry.error = describe_error(error)
            entry.state = EntryState.FAILED
            text = f"{entry.name} failed: {entry.error.splitlines()[0]}"
            if error.kind in (ErrorKind.DISK_FULL, ErrorKind.PERMISSION) and entry.run_dir:
                # Nothing is wrong with the run itself: once there is room, Resume continues it.
                self.resume_offer = entry.run_dir
                text += " — then press Resume in History (the run is selected there)"
            self.message.emit(text)
        self.queueChanged.emit()
        self.currentChanged.emit()
        self.refresh_history()
        # Next run from the event loop, not from inside the worker client's own signal handling.
        QTimer.singleShot(0, self._run_next)

    # ------------------------------------------------------------ history
    def history_folders(self) -> list[Path]:
        folders = [paths.runs_dir()]
        for entry in self.entries:
            if entry.config is not None and entry.config.output_dir:
                folders.append(Path(entry.config.output_dir).expanduser())
            if entry.run_dir:
                folders.append(Path(entry.run_dir).parent)
        return list(dict.fromkeys(folders))

    def refresh_history(self) -> None:
        folders = self.history_folders()
        self._runner.run(
            lambda: list_runs(folders),
            self._on_history,
            lambda _k, message: self.message.emit(f"Could not read the runs: {message}"),
        )

    def _on_history(self, runs: list[RunInfo]) -> None:
        live = self.current.run_dir if self.current is not None else ""
        for run in runs:
            if live and same_folder(run.path, live):
                run.status = RunStatus.RUNNING
        self.history = runs
        self.historyChanged.emit()

    def look_for_interrupted(self) -> None:
        """On start: find the newest run that a crash, kill or power loss ended after a save (not
        one the user stopped, nor one declined before) and emit :attr:`interruptedFound` for it."""
        folders = self.history_folders()

        def find() -> RunInfo | None:
            declined = set(self._declined())
            for run in list_runs(folders):
                if run.resumable and run.crashed and str(run.path) not in declined:
                    return run
            return None

        self._runner.run(find, lambda run: run is not None and self.interruptedFound.emit(run), lambda *_: None)

    def decline_resume(self, run_dir: str | Path) -> None:
        """Not offered again at start (History still resumes it)."""
        declined = [*self._declined(), str(run_dir)]
        try:
            atomic_write_text(self._settings_path.with_name(DECLINED_FILE), json.dumps(declined[-200:]))
        except OSError as exc:
            log.warning("could not remember the declined resume of %s: %s", run_dir, exc)

    def _declined(self) -> list[str]:
        try:
            data = json.loads(self._settings_path.with_name(DECLINED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [d for d in data if isinstance(d, str)] if isinstance(data, list) else []

    def show_run(self, run_dir: str | Path) -> None:
        """Show a run's losses, samples and checkpoints (the live view when it is the running one)."""
        run_dir = str(run_dir)
        self._shown += 1
        if self.live_view.run_dir and same_folder(run_dir, self.live_view.run_dir):
            self.view = self.live_view
            self.viewReset.emit()
            return
        token = self._shown
        self._runner.run(
            lambda: read_run(run_dir, with_log=True),
            lambda info: self._show_info(info, token),
            lambda _k, message: self.message.emit(message),
        )

    def show_live(self) -> None:
        self._shown += 1
        self.view = self.live_view
        self.viewReset.emit()

    def _show_info(self, info: RunInfo, token: int) -> None:
        if token != self._shown:
            return  # another run was chosen (or started) while this one was being read
        view = RunView(run_dir=str(info.path), name=info.name)
        view.merge(info)
        self.view = view
        self.viewReset.emit()

    def wait(self, ms: int = 30_000) -> bool:
        return self._runner.wait(ms)
