"""The Generate tab's state and operations, with no widget in sight.

The tab binds its controls to this object: it hands over the settings as a dict,
and listens to plain signals (busy, progress, picture, error). This object validates
the settings, submits the render to the worker through the :class:`JobTracker`,
remembers the last settings and the recent models.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core import paths
from app.core.configs import ConfigError, GenerateRequest
from app.core.events import ArtifactKind, ArtifactSaved, LogLevel, LogLine, Progress
from app.ui.common.errors import describe_error
from app.ui.common.formatting import format_eta
from app.ui.generate.adapter_stack import AdapterStack, compose_prompt
from app.ui.generate.family_fit import FamilyFit, fit_for
from app.ui.jobs import JobError, JobHandle, JobState, JobTracker
from app.ui.recent_models import RecentModels
from app.worker.protocol import JobKind

log = logging.getLogger(__name__)

SETTINGS_FILE = "generate.toml"

# Request fields that do not change the picture (compared when telling a stale preview).
_NOT_PICTURE = ("output_dir", "version")
HISTORY_SIZE = 30


def picture_key(params: dict[str, Any]) -> dict[str, Any]:
    """What decides the picture: the request without where it is saved; disabled adapters dropped."""
    key = {k: v for k, v in params.items() if k not in _NOT_PICTURE}
    key["adapters"] = [a for a in params.get("adapters") or [] if a.get("enabled", True) and a.get("weight")]
    return key


class GenerateModel(QObject):
    busyChanged = Signal(bool)
    progressChanged = Signal(int, int, object)  # (step, total, eta_s or None)
    imageReady = Signal(str, dict)  # (path, meta): the picture is on disk already
    statusChanged = Signal(str)  # one line for the user: what is happening now
    errorChanged = Signal(str)  # the last failure in words, "" when cleared
    finished = Signal(str)  # JobState value of the job that just ended
    historyChanged = Signal()  # a picture was added to the history strip
    baseImageReady = Signal(str)  # A/B: the picture without adapters, for the current settings
    bakeFinished = Signal(str, str)  # (path or "", one line: what was written, or why not)
    savedAs = Signal(str, str)  # an adapter row's "Save as…": (path or "", one line: written, or why not)
    familyFitted = Signal(object, bool)  # (FamilyFit, a new family): the model the worker holds now

    def __init__(
        self,
        tracker: JobTracker,
        recent: RecentModels,
        *,
        settings_path: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._tracker = tracker
        self._recent = recent
        self._settings_path = settings_path or paths.config_dir() / SETTINGS_FILE
        self.job_id: str | None = None
        self.last_image: str = ""
        self.last_meta: dict[str, Any] = {}
        self.last_error: str = ""
        self.status: str = "Ready."
        self.batch: list[str] = []  # the jobs of the last Generate (more than one with a batch count)
        self.shown_params: dict[str, Any] = {}  # the request that made the picture on show
        self.history: list[tuple[str, dict[str, Any]]] = []  # (path, meta), newest first
        self.stack = AdapterStack(parent=self)
        self._base_jobs: dict[str, str] = {}  # A/B job id -> its picture key (JSON)
        self._base_cache: dict[str, str] = {}  # picture key (JSON) -> path of the no-adapter picture
        self._bake_job: str | None = None
        self._convert_jobs: dict[str, str] = {}  # job id -> the file it writes
        self._bake_note = ""
        self._bake_done = ""
        self.fit: FamilyFit | None = None  # what the form allows for the model the worker holds
        tracker.modelChanged.connect(self._on_model)

    def _on_model(self, model: dict[str, Any]) -> None:
        self.stack.set_base_family(model.get("family"))
        fit = fit_for(model)
        if fit is not None:
            new_family = self.fit is None or self.fit.key != fit.key
            self.fit = fit
            self.familyFitted.emit(fit, new_family)

    # ------------------------------------------------------------ settings

    @property
    def recent(self) -> RecentModels:
        return self._recent

    @property
    def settings_path(self) -> Path:
        return self._settings_path

    def load_settings(self) -> GenerateRequest:
        """The last settings used, or the defaults when none are saved (or they are broken)."""
        if not self._settings_path.exists():
            return GenerateRequest()
        try:
            return GenerateRequest.load_toml(self._settings_path)
        except ConfigError as exc:
            log.warning("ignoring the saved Generate settings: %s", exc)
            return GenerateRequest()

    def save_settings(self, request: GenerateRequest) -> None:
        try:
            request.save_toml(self._settings_path)
        except OSError as exc:
            log.warning("could not save the Generate settings to %s: %s", self._settings_path, exc)

    # ------------------------------------------------------------ operations

    @property
    def tracker(self) -> JobTracker:
        return self._tracker

    @property
    def busy(self) -> bool:
        # A job not in the tracker yet is being submitted right now.
        return any(job is None or not job.state.is_final for job in map(self._tracker.get, self.batch))

    def is_current(self, values: dict[str, Any]) -> bool:
        """Whether the picture on show was made from these settings (a random seed matches any seed)."""
        if not self.shown_params:
            return False
        try:
            wanted = picture_key(self.make_request(values).to_dict())
        except ConfigError:
            return False
        shown = picture_key(self.shown_params)
        if wanted.get("seed", -1) < 0:
            shown["seed"] = wanted["seed"] = -1
        return wanted == shown

    def settings_of(self, values: dict[str, Any]) -> GenerateRequest:
        """The form as it is saved and restored: the prompt as typed, without trigger words."""
        return GenerateRequest.from_dict(values)

    def make_request(self, values: dict[str, Any]) -> GenerateRequest:
        """The request to render: the settings with the enabled adapters' trigger words put first.

        Raises ConfigError naming the field.
        """
        request = self.settings_of(values)
        request.prompt = compose_prompt(request.prompt, self.stack.trigger_words())
        return request

    def generate(self, values: dict[str, Any], count: int = 1) -> str:
        """Validate, remember and submit a render (``count`` of them, seeds counting up when locked).

        Renders still running are cancelled first: the newest settings win (a stale
        preview never replaces a newer one). Returns the first job's id.
        """
        request = self.make_request(values)
        self._cancel_batch()
        self.save_settings(self.settings_of(values))
        self._recent.add(request.base)
        self._set_error("")
        # The ids are made here so that events arriving during submit (a worker that
        # fails to start finishes the job at once) already count as ours.
        ids = [uuid.uuid4().hex for _ in range(max(1, count))]
        self.batch = ids
        self.job_id = ids[0]
        self._set_status("Waiting for the worker…")
        self.busyChanged.emit(True)
        for i, job_id in enumerate(ids):
            params = request.to_dict()
            if i and request.seed >= 0:
                params["seed"] = request.seed + i
            self._submit(JobKind.GENERATE, {"id": job_id, **params})
        return ids[0]

    def cancel(self) -> None:
        if self.busy:
            self._set_status("Cancelling…")
            self._cancel_batch()

    def _cancel_batch(self) -> None:
        for job_id in self.batch:
            job = self._tracker.get(job_id)
            if job is not None and not job.state.is_final:
                self._tracker.cancel(job_id)

    # ------------------------------------------------------------ A/B and bake

    def render_without_adapters(self, values: dict[str, Any]) -> str | None:
        """A/B: the picture for these settings with every adapter off (cached); emits baseImageReady."""
        request = self.make_request(values)
        params = request.to_dict()
        params["adapters"] = []
        key = json.dumps(picture_key(params), sort_keys=True)
        if key in self._base_cache and Path(self._base_cache[key]).is_file():
            self.baseImageReady.emit(self._base_cache[key])
            return None
        if key in self._base_jobs.values():
            return None  # already rendering
        job_id = uuid.uuid4().hex
        self._base_jobs[job_id] = key
        self._submit(JobKind.GENERATE, {"id": job_id, **params})
        return job_id

    def bake(self, base: str, out: str, rank: int = 0) -> str:
        """Bake the stack into ``out`` in the worker; bakeFinished tells how it went."""
        from app.core.configs import BakeRequest

        request = BakeRequest.from_dict({"base": base, "adapters": self.stack.entries(), "out": out, "rank": rank})
        job_id = uuid.uuid4().hex
        self._bake_job = job_id
        self._bake_note = ""
        self._set_status("Baking the mix…")
        self._submit(JobKind.BAKE, {"id": job_id, **request.to_dict()})
        return job_id

    def save_as(self, base: str, src: str, out: str, layout: str) -> str:
        """Rewrite the adapter ``src`` in ``layout`` as ``out``, in the worker; savedAs tells how it went."""
        from app.core.configs import ConvertRequest

        request = ConvertRequest.from_dict({"base": base, "src": src, "out": out, "to": layout})
        job_id = uuid.uuid4().hex
        self._convert_jobs[job_id] = out
        self._set_status(f"Saving {Path(src).name} as {layout}…")
        self._submit(JobKind.CONVERT, {"id": job_id, **request.to_dict()})
        return job_id

    # ------------------------------------------------------------ job events

    def _submit(self, kind: JobKind, params: dict[str, Any]) -> None:
        """Send a job with its events routed here (connected before it is sent: none is missed)."""
        job_id = params["id"]

        def follow(handle: JobHandle) -> None:
            handle.stateChanged.connect(lambda state: self._on_state(job_id, state))
            handle.progress.connect(lambda progress: self._on_progress(job_id, progress))
            handle.image.connect(lambda image: self._on_image(job_id, image.path, image.meta))
            handle.artifact.connect(lambda saved: self._on_artifact(job_id, saved))
            handle.log.connect(lambda line: self._on_job_log(job_id, line))
            handle.finished.connect(lambda state, error: self._on_finished(job_id, state, error))

        self._tracker.submit(kind.value, params, connect=follow)

    def _on_artifact(self, job_id: str, saved: ArtifactSaved) -> None:
        if job_id == self._bake_job and saved.kind is ArtifactKind.ADAPTER:
            self._bake_done = saved.path

    def _on_job_log(self, job_id: str, line: LogLine) -> None:
        if job_id == self._bake_job and line.level is LogLevel.INFO:
            self._bake_note = line.message
        elif job_id in self.batch and line.level is LogLevel.WARNING:
            log.warning("%s", line.message)

    def _on_state(self, job_id: str, state: JobState) -> None:
        if job_id == self.job_id and state is JobState.QUEUED:
            self._set_status("Queued; loading the model if needed…")

    def _on_progress(self, job_id: str, progress: Progress) -> None:
        if job_id not in self.batch:
            return
        eta = format_eta(progress.eta_s)
        text = progress.message or f"Step {progress.step}/{progress.total}"
        if eta:
            text += f" · about {eta} left"
        self._set_status(text)
        self.progressChanged.emit(progress.step, progress.total, progress.eta_s)

    def _on_image(self, job_id: str, path: str, meta: dict) -> None:
        if job_id in self._base_jobs:
            self._base_cache[self._base_jobs.pop(job_id)] = path
            self.baseImageReady.emit(path)
            return
        if job_id not in self.batch:
            return  # a stale render (settings changed since): never shown
        job = self._tracker.get(job_id)
        self.shown_params = dict(job.params) if job is not None else {}
        if isinstance(meta.get("seed"), int):
            self.shown_params["seed"] = meta["seed"]
        self.last_image = path
        self.last_meta = dict(meta)
        self.stack.mark_refused(meta.get("adapter_errors") or [])
        self.stack.mark_applied(meta.get("adapters") or [])
        self.history.insert(0, (path, dict(meta)))
        del self.history[HISTORY_SIZE:]
        self.historyChanged.emit()
        self.imageReady.emit(path, dict(meta))

    def _on_finished(self, job_id: str, state: JobState, error: JobError | None) -> None:
        self._base_jobs.pop(job_id, None)
        if job_id in self._convert_jobs:
            out = self._convert_jobs.pop(job_id)
            if state is JobState.DONE:
                self._set_status(f"Saved {out}.")
                self.savedAs.emit(out, f"Saved {out}.")
            else:
                self.savedAs.emit("", describe_error(error))
            return
        if job_id == self._bake_job:
            self._bake_job = None
            done, self._bake_done = self._bake_done, ""
            if state is JobState.DONE and done:
                self._set_status("Baked.")
                self.bakeFinished.emit(done, self._bake_note or f"baked to {done}")
            else:
                message = describe_error(error)
                self._set_status("Bake failed." if state is JobState.FAILED else "Bake cancelled.")
                self.bakeFinished.emit("", message)
            return
        if job_id not in self.batch:
            return
        if state is JobState.FAILED:
            self._set_error(describe_error(error))
        if self.busy:
            return  # more pictures of this batch to come
        if state is JobState.DONE:
            self._set_status("Done.")
        elif state is JobState.CANCELLED:
            self._set_status("Cancelled.")
        else:
            self._set_status("Failed.")
        self.busyChanged.emit(False)
        self.finished.emit(state.value)

    def _set_status(self, text: str) -> None:
        self.status = text
        self.statusChanged.emit(text)

    def _set_error(self, text: str) -> None:
        self.last_error = text
        self.errorChanged.emit(text)
