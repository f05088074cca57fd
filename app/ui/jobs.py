"""Jobs as the GUI sees them: status, progress, pictures and the last error, by id.

:class:`JobTracker` is the only place that interprets protocol events about jobs, so
tabs listen to plain signals ("progress of job X", "job X failed with this message")
instead of parsing dicts themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.events import Phase
from app.ui.worker_client import WorkerClient
from app.worker.protocol import EventType, JobStatus


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
    JobStatus.DONE.value: JobState.DONE,
    JobStatus.CANCELLED.value: JobState.CANCELLED,
    JobStatus.FAILED.value: JobState.FAILED,
}


@dataclass
class JobError:
    kind: str
    message: str
    detail: str = ""


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


class JobTracker(QObject):
    """Follows every job a :class:`WorkerClient` sends and turns events into signals."""

    jobAdded = Signal(str)
    stateChanged = Signal(str, str)  # (job id, JobState value)
    progressChanged = Signal(str, int, int, object, str)  # (id, step, total, eta_s or None, message)
    imageReady = Signal(str, str, dict)  # (id, path, meta)
    artifactReady = Signal(str, str, str)  # (id, path, kind)
    jobFinished = Signal(str, str, object)  # (id, JobState value, JobError or None)
    modelChanged = Signal(dict)  # what the worker holds now: {base, family, device, dtype}
    jobLog = Signal(str, str, str)  # (id, level, message) from "log" events

    # Finished jobs kept for inspection; older ones are forgotten to bound memory.
    KEEP_FINISHED = 200

    def __init__(self, client: WorkerClient, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self._jobs: dict[str, Job] = {}
        self.model: dict[str, Any] | None = None
        client.jobSubmitted.connect(self._on_submitted)
        client.eventReceived.connect(self.handle_event)

    @property
    def client(self) -> WorkerClient:
        return self._client

    def submit(self, kind: str, params: dict[str, Any]) -> str:
        return self._client.submit({**params, "kind": kind})

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
        params = {k: v for k, v in job.items() if k not in ("id", "kind")}
        self._jobs[job["id"]] = Job(id=job["id"], kind=str(job.get("kind", "")), params=params)
        self._forget_old()
        self.jobAdded.emit(job["id"])

    def handle_event(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        if etype == EventType.MODEL.value:
            self.model = {k: v for k, v in event.items() if k not in ("type", "job")}
            self.modelChanged.emit(self.model)
        job = self._jobs.get(event.get("job") or "")
        if job is None or job.state.is_final:
            return
        if etype == EventType.ACCEPTED.value:
            self._set_state(job, JobState.QUEUED)
        elif etype == EventType.PROGRESS.value:
            if event.get("phase") != Phase.CACHING.value:  # a training job's caching counts pictures, not steps
                job.step = _int(event.get("step"))
                job.total = _int(event.get("total"))
            eta = event.get("eta_s")
            job.eta_s = float(eta) if isinstance(eta, (int, float)) else None
            job.message = str(event.get("message") or "")
            self._set_state(job, JobState.RUNNING)
            self.progressChanged.emit(job.id, job.step, job.total, job.eta_s, job.message)
        elif etype == EventType.IMAGE.value:
            meta = event.get("meta") if isinstance(event.get("meta"), dict) else {}
            job.images.append(event["path"])
            job.last_meta = meta
            self.imageReady.emit(job.id, event["path"], meta)
        elif etype == EventType.ARTIFACT.value:
            self.artifactReady.emit(job.id, event["path"], str(event.get("kind", "")))
        elif etype == EventType.LOG.value:
            self.jobLog.emit(job.id, str(event.get("level", "info")), str(event.get("message", "")))
        elif etype == EventType.FINISHED.value:
            err = event.get("error")
            if isinstance(err, dict):
                job.error = JobError(
                    kind=str(err.get("kind", "internal")),
                    message=str(err.get("message", "")),
                    detail=str(err.get("detail", "")),
                )
            self._set_state(job, _FINAL_STATES[event["status"]])
            self.jobFinished.emit(job.id, job.state.value, job.error)

    def _set_state(self, job: Job, state: JobState) -> None:
        if job.state is not state:
            job.state = state
            self.stateChanged.emit(job.id, state.value)

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state.is_final]
        for job_id in finished[: max(0, len(finished) - self.KEEP_FINISHED)]:
            del self._jobs[job_id]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
