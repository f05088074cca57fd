"""What a job handler gets from the worker loop: its job, a way to report events, cancel state.

Its own module so that the loop (which runs handlers) and the handlers (which use a
context) both import it, and neither imports the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from app.worker import protocol as P


class JobCancelled(Exception):
    pass


@dataclass
class Job:
    id: str
    kind: P.JobKind
    params: dict[str, Any]
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # Actions asked of the running job ("checkpoint", "sample", a TryPrompt), appended by the reader thread.
    requests: list[P.TrainRequest] = field(default_factory=list)
    requests_lock: threading.Lock = field(default_factory=threading.Lock)


class Emitter:
    """Thread-safe writer of protocol lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = P.encode(message)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # the GUI went away; nothing to tell
                pass

    def report(self, job: str | None, event: P.WorkerEvent) -> None:
        self.send(P.event_message(job, event))


class JobContext:
    """What a job handler gets: its parameters, an emitter bound to its id, cancel state."""

    def __init__(self, job: Job, emitter: Emitter) -> None:
        self.job = job
        self._emitter = emitter

    @property
    def id(self) -> str:
        return self.job.id

    def report(self, event: P.WorkerEvent) -> None:
        """Send a typed event (a :mod:`app.core.events` job event, or ModelLoaded) for this job."""
        self._emitter.report(self.job.id, event)

    def cancelled(self) -> bool:
        return self.job.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancelled():
            raise JobCancelled()

    def take_requests(self) -> list[P.TrainRequest]:
        """The actions asked of this job since the last call (oldest first), and forget them."""
        with self.job.requests_lock:
            taken, self.job.requests[:] = list(self.job.requests), []
        return taken


Handler = Callable[[JobContext], None]
