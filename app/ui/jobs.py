"""Jobs as the GUI sees them: status, progress, pictures and the last error, by id.

:class:`JobTracker` is the only place in the GUI that decodes worker events (through
:func:`app.worker.protocol.typed_event`). :meth:`JobTracker.submit` returns a
:class:`JobHandle` whose signals carry that job's typed events; "any job" listeners (the
title bar, the log panel, the quit guard) use the tracker's own signals.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.events import ArtifactSaved, ImageReady, LogLine, Phase, Progress
from app.ui.worker_client import WorkerClient
from app.worker import protocol as P
from app.worker.protocol import JobError, JobStatus

__all__ = ["Job", "JobError", "JobHandle", "JobState", "JobTracker"]

log = logging.getLogger(__name__)


class JobState(str, Enum):
    SUBMITTED = "submitted"  # sent, the worker has not acknowledged it yet
    QUEUED = "queued"  # accepted by the worker, waiting for its turn
    RUNNING = "running"  # progress has been reported
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (JobState.DONE, JobState.CANCELLED, JobState.FAILED)


_FINAL_STATES = {
    JobStatus.DONE: JobState.DONE,
    JobStatus.CANCELLED: JobState.CANCELLED,
    JobStatus.FAILED: JobState.FAILED,
}


@dataclass
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    state: JobState = JobState.SUBMITTED
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""
    images: list[str] = field(default_factory=list)
    last_meta: dict[str, Any] = field(default_factory=dict)
    error: JobError | None = None


class JobHandle(QObject):
    """One submitted job: its typed events as signals, in the order the worker sent them."""

    stateChanged = Signal(object)  # JobState
    progress = Signal(object)  # Progress
    image = Signal(object)  # ImageReady
    artifact = Signal(object)  # ArtifactSaved
    log = Signal(object)  # LogLine
    finished = Signal(object, object)  # (JobState, JobError or None)

    def __init__(self, job: Job, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job = job

    @property
    def id(self) -> str:
        return self.job.id


class JobTracker(QObject):
    """Follows every job a :class:`WorkerClient` sends and turns events into signals."""

    jobAdded = Signal(str)
    stateChanged = Signal(str, object)  # (job id, JobState)
    progressChanged = Signal(str, int, int, object, str)  # (id, step, total, eta_s or None, message)
    imageReady = Signal(str, str, dict)  # (id, path, meta)
    jobFinished = Signal(str, object, object)  # (id, JobState, JobError or None)
    modelChanged = Signal(dict)  # what the worker holds now: {base, family, device, dtype}
    jobLog = Signal(str, str, str)  # (id, LogLevel value, message) from "log" events

    # Finished jobs kept for inspection; older ones are forgotten to bound memory.
    KEEP_FINISHED = 200

    def __init__(self, client: WorkerClient, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._jobs: dict[str, Job] = {}
        self._handles: dict[str, JobHandle] = {}
        self.model: dict[str, Any] | None = None
        client.jobSubmitted.connect(self._on_submitted)
        client.eventReceived.connect(self.handle_event)

    @property
    def client(self) -> WorkerClient:
        return self._client

    def submit(
        self, kind: str, params: dict[str, Any], connect: Callable[[JobHandle], None] | None = None
    ) -> JobHandle:
        """Send a job; ``connect(handle)`` runs before it is sent, so that no event is missed
        (a worker that cannot start finishes the job during this call)."""
        job_id = str(params.get("id") or uuid.uuid4().hex)
        handle = self._track({**params, "id": job_id, "kind": kind})
        if connect is not None:
            connect(handle)
        self._client.submit({**params, "id": job_id, "kind": kind})
        return handle

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a job this tracker follows (any part of the GUI may have sent it)."""
        return self._handles.get(job_id)

    def cancel(self, job_id: str) -> None:
        self._client.cancel(job_id)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def active(self) -> list[Job]:
        return [job for job in self._jobs.values() if not job.state.is_final]

    # ------------------------------------------------------------ events

    def _on_submitted(self, job: dict[str, Any]) -> None:
        if job["id"] not in self._handles:  # sent straight through the client, not by submit()
            self._track(job)

    def _track(self, job: dict[str, Any]) -> JobHandle:
        params = {k: v for k, v in job.items() if k not in ("id", "kind")}
        tracked = Job(id=job["id"], kind=str(job.get("kind", "")), params=params)
        self._jobs[tracked.id] = tracked
        handle = self._handles[tracked.id] = JobHandle(tracked, self)
        self._forget_old()
        self.jobAdded.emit(tracked.id)
        return handle

    def handle_event(self, event: dict[str, Any]) -> None:
        try:
            job_id, ev = P.typed_event(event)
        except P.ProtocolError as exc:
            log.warning("ignored a worker event the GUI cannot read: %s", exc)
            return
        if isinstance(ev, P.ModelLoaded):
            self.model = dict(vars(ev))
            self.modelChanged.emit(self.model)
        job = self._jobs.get(job_id or "")
        if job is None or job.state.is_final:
            return
        handle = self._handles[job.id]
        if isinstance(ev, P.Accepted):
            self._set_state(job, JobState.QUEUED)
        elif isinstance(ev, Progress):
            if ev.phase is not Phase.CACHING:  # a training job's caching counts pictures, not steps
                job.step, job.total = ev.step, ev.total
            job.eta_s, job.message = ev.eta_s, ev.message
            self._set_state(job, JobState.RUNNING)
            self.progressChanged.emit(job.id, job.step, job.total, job.eta_s, job.message)
            handle.progress.emit(ev)
        elif isinstance(ev, ImageReady):
            job.images.append(ev.path)
            job.last_meta = ev.meta
            self.imageReady.emit(job.id, ev.path, ev.meta)
            handle.image.emit(ev)
        elif isinstance(ev, ArtifactSaved):
            handle.artifact.emit(ev)
        elif isinstance(ev, LogLine):
            self.jobLog.emit(job.id, ev.level.value, ev.message)
            handle.log.emit(ev)
        elif isinstance(ev, P.Finished):
            job.error = ev.error
            self._set_state(job, _FINAL_STATES[ev.status])
            self.jobFinished.emit(job.id, job.state, job.error)
            handle.finished.emit(job.state, job.error)

    def _set_state(self, job: Job, state: JobState) -> None:
        if job.state is not state:
            job.state = state
            self.stateChanged.emit(job.id, state)
            self._handles[job.id].stateChanged.emit(state)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state.is_final]
        for job_id in finished[: max(0, len(finished) - self.KEEP_FINISHED)]:
            del self._jobs[job_id]
            self._handles.pop(job_id).deleteLater()
