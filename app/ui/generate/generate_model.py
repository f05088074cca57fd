"""The Generate tab's state and operations, with no widget in sight.

The tab binds its controls to this object: it hands over the settings as a dict,
and listens to plain signals (busy, progress, picture, error). This object validates
the settings, submits the render to the worker through the :class:`JobTracker`,
remembers the last settings and the recent models.
"""

from __future__ import annotations

import logging
import math
import uuid
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core import paths
from app.core.configs import ConfigError, GenerateRequest
from app.ui.jobs import JobError, JobState, JobTracker
from app.ui.recent_models import RecentModels
from app.worker.protocol import JobKind

log = logging.getLogger(__name__)

SETTINGS_FILE = "generate.toml"

# What the user can do about each error kind, shown before the worker's message.
ERROR_HEADINGS = {
    "bad_input": "Bad settings",
    "incompatible_adapter": "Incompatible adapter",
    "out_of_memory": "Out of memory (try a smaller size or fewer steps)",
    "model_not_found": "Model not found",
    "cancelled": "Cancelled",
    "internal": "Worker error",
}


def describe_error(error: JobError | None) -> str:
    if error is None:
        return "Failed."
    heading = ERROR_HEADINGS.get(error.kind, error.kind)
    return f"{heading}: {error.message}" if error.message else heading


def format_eta(eta_s: float | None) -> str:
    if eta_s is None or not math.isfinite(eta_s) or eta_s < 0:
        return ""
    if eta_s < 60:
        return f"{eta_s:.0f} s"
    minutes, seconds = divmod(int(round(eta_s)), 60)
    return f"{minutes} min {seconds:02d} s"


class GenerateModel(QObject):
    busyChanged = Signal(bool)
    progressChanged = Signal(int, int, object)  # (step, total, eta_s or None)
    imageReady = Signal(str, dict)  # (path, meta): the picture is on disk already
    statusChanged = Signal(str)  # one line for the user: what is happening now
    errorChanged = Signal(str)  # the last failure in words, "" when cleared
    finished = Signal(str)  # JobState value of the job that just ended

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
        tracker.progressChanged.connect(self._on_progress)
        tracker.imageReady.connect(self._on_image)
        tracker.jobFinished.connect(self._on_finished)
        tracker.stateChanged.connect(self._on_state)

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
    def busy(self) -> bool:
        job = self._tracker.get(self.job_id) if self.job_id else None
        return job is not None and not job.state.is_final

    def make_request(self, values: dict[str, Any]) -> GenerateRequest:
        """Settings from the form as a validated request; raises ConfigError naming the field."""
        return GenerateRequest.from_dict(values)

    def generate(self, values: dict[str, Any]) -> str:
        """Validate, remember and submit one render; returns the job id.

        A render still running is cancelled first: the newest settings win.
        """
        request = self.make_request(values)
        if self.busy and self.job_id:
            self._tracker.cancel(self.job_id)
        self.save_settings(request)
        self._recent.add(request.base)
        self._set_error("")
        # The id is made here so that events arriving during submit (a worker that
        # fails to start finishes the job at once) already count as ours.
        job_id = uuid.uuid4().hex
        self.job_id = job_id
        self._set_status("Waiting for the worker…")
        self.busyChanged.emit(True)
        self._tracker.submit(JobKind.GENERATE.value, {"id": job_id, **request.to_dict()})
        return job_id

    def cancel(self) -> None:
        if self.busy and self.job_id:
            self._set_status("Cancelling…")
            self._tracker.cancel(self.job_id)

    # ------------------------------------------------------------ job events

    def _on_state(self, job_id: str, state: str) -> None:
        if job_id == self.job_id and state == JobState.QUEUED.value:
            self._set_status("Queued; loading the model if needed…")

    def _on_progress(self, job_id: str, step: int, total: int, eta_s: object, message: str) -> None:
        if job_id != self.job_id:
            return
        eta = format_eta(eta_s if isinstance(eta_s, (int, float)) else None)
        text = message or f"Step {step}/{total}"
        if eta:
            text += f" · about {eta} left"
        self._set_status(text)
        self.progressChanged.emit(step, total, eta_s)

    def _on_image(self, job_id: str, path: str, meta: dict) -> None:
        if job_id != self.job_id:
            return
        self.last_image = path
        self.last_meta = dict(meta)
        self.imageReady.emit(path, dict(meta))

    def _on_finished(self, job_id: str, state: str, error: object) -> None:
        if job_id != self.job_id:
            return
        if state == JobState.DONE.value:
            self._set_status("Done.")
        elif state == JobState.CANCELLED.value:
            self._set_status("Cancelled.")
        else:
            message = describe_error(error if isinstance(error, JobError) else None)
            self._set_status("Failed.")
            self._set_error(message)
        self.busyChanged.emit(False)
        self.finished.emit(state)

    def _set_status(self, text: str) -> None:
        self.status = text
        self.statusChanged.emit(text)

    def _set_error(self, text: str) -> None:
        self.last_error = text
        self.errorChanged.emit(text)
