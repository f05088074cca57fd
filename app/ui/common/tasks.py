"""Run a function on a QThreadPool and get its result (or its error sentence) back on the GUI thread.

The one background-task relay of the GUI. The function never touches a widget; its result
travels through a queued signal to a callback that runs in the GUI thread. A function can
report progress through the ``report`` callable it is given, and look at ``report.cancelled``
to stop early. ``cancel(task_id)`` / ``cancel_all()`` forget a task's callbacks, so a stale
result (the picture before the one now asked for, a scan of the folder closed meanwhile)
is dropped on arrival. Each runner has its own pool: its thread count is its lane (one
thread = the tasks run in the order asked; pictures never wait behind a download).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from app.core.hub.errors import HubError

log = logging.getLogger(__name__)

Done = Callable[[Any], None]
Failed = Callable[[str, str], None]  # (kind, message)
Progress = Callable[..., None]


class _Relay(QObject):
    """Lives in the GUI thread; its signals are emitted from a pool thread and delivered queued."""

    done = Signal(int, object)
    failed = Signal(int, str, str)
    progress = Signal(int, object)


class Report:
    """What a task is given to report progress: ``report(*args)`` reaches ``on_progress(*args)``
    on the GUI thread; ``report.cancelled`` turns true once the task was cancelled."""

    def __init__(self, task_id: int, relay: _Relay, stop: threading.Event) -> None:
        self._task_id, self._relay, self._stop = task_id, relay, stop

    def __call__(self, *args: Any) -> None:
        self._relay.progress.emit(self._task_id, args)

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()


class _Job(QRunnable):
    def __init__(self, task_id: int, relay: _Relay, fn: Callable[..., Any], report: Report | None) -> None:
        super().__init__()
        self.task_id = task_id
        self.relay = relay
        self.fn = fn
        self.report = report

    def run(self) -> None:
        try:
            if self.report is not None:
                result = self.fn(self.report)
            else:
                result = self.fn()
        except HubError as exc:
            self.relay.failed.emit(self.task_id, exc.kind.value, str(exc))
        except (OSError, ValueError) as exc:
            self.relay.failed.emit(self.task_id, "error", str(exc))
        except Exception as exc:  # noqa: BLE001 - never let a pool thread die silently
            log.exception("background task failed")
            self.relay.failed.emit(self.task_id, "internal", f"internal error: {type(exc).__name__}: {exc}")
        else:
            self.relay.done.emit(self.task_id, result)


class TaskRunner(QObject):
    """``run(fn, on_done, on_failed)`` on a private thread pool; callbacks run on the GUI thread."""

    def __init__(self, max_threads: int = 4, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._relay.failed.connect(self._on_failed)
        self._relay.progress.connect(self._on_progress)
        self._callbacks: dict[int, tuple[Done | None, Failed | None, Progress | None]] = {}
        self._stops: dict[int, threading.Event] = {}
        self._next_id = 0

    @property
    def active(self) -> int:
        return len(self._callbacks)

    def run(
        self,
        fn: Callable[..., Any],
        on_done: Done | None = None,
        on_failed: Failed | None = None,
        on_progress: Progress | None = None,
        *,
        priority: int = 0,
    ) -> int:
        """Start ``fn()`` (or ``fn(report)`` when ``on_progress`` is given); returns the task id.

        A higher ``priority`` starts before the tasks queued with a lower one."""
        self._next_id += 1
        task_id = self._next_id
        self._callbacks[task_id] = (on_done, on_failed, on_progress)
        report = None
        if on_progress is not None:
            self._stops[task_id] = threading.Event()
            report = Report(task_id, self._relay, self._stops[task_id])
        self.pool.start(_Job(task_id, self._relay, fn, report), priority)
        return task_id

    def cancel(self, task_id: int) -> None:
        """Drop the task's result and progress; a task given ``report`` sees ``report.cancelled``."""
        self._callbacks.pop(task_id, None)
        stop = self._stops.pop(task_id, None)
        if stop is not None:
            stop.set()

    def cancel_all(self) -> None:
        """Forget the queued tasks (they never start) and drop the results of the running ones."""
        self.pool.clear()
        for task_id in list(self._callbacks):
            self.cancel(task_id)

    def wait(self, ms: int = 30_000) -> bool:
        return self.pool.waitForDone(ms)

    @Slot(int, object)
    def _on_done(self, task_id: int, result: Any) -> None:
        self._stops.pop(task_id, None)
        on_done, _, _ = self._callbacks.pop(task_id, (None, None, None))
        if on_done is not None:
            on_done(result)

    @Slot(int, str, str)
    def _on_failed(self, task_id: int, kind: str, message: str) -> None:
        self._stops.pop(task_id, None)
        if task_id not in self._callbacks:
            return  # cancelled: nobody waits for this error any more
        _, on_failed, _ = self._callbacks.pop(task_id)
        if on_failed is not None:
            on_failed(kind, message)
        else:
            log.warning("%s", message)

    @Slot(int, object)
    def _on_progress(self, task_id: int, args: tuple) -> None:
        callbacks = self._callbacks.get(task_id)
        if callbacks and callbacks[2] is not None:
            callbacks[2](*args)
