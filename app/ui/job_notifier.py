"""Long jobs seen from outside the window: progress in its title, a notice when one ends.

Training and auto-captioning run for minutes to hours while the user is elsewhere, so the
title shows "[42%] LoRA Loom" and, when such a job ends while the window is not active,
the task bar entry asks for attention (``QApplication.alert``) and the tray, where the
desktop has one, shows a message.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QMainWindow, QStyle, QSystemTrayIcon

from app.ui.jobs import Job, JobError, JobState, JobTracker
from app.worker.protocol import JobKind

APP_TITLE = "LoRA Loom"
LONG_KINDS = {JobKind.TRAIN.value: "Training", JobKind.CAPTION.value: "Auto-captioning"}
ENDINGS = {JobState.DONE: "finished", JobState.CANCELLED: "stopped", JobState.FAILED: "failed"}


def job_title(job: Job) -> str:
    """ "Training 'shapes_c'" or "Auto-captioning"."""
    what = LONG_KINDS[job.kind]
    config = job.params.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    if not name and job.params.get("resume"):
        name = str(job.params["resume"]).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return f"{what} '{name}'" if name else what


class JobNotifier(QObject):
    notified = Signal(str)  # the notice shown when a long job ended while the window was inactive

    def __init__(self, window: QMainWindow, tracker: JobTracker, parent: QObject | None = None) -> None:
        super().__init__(parent or window)
        self._window = window
        self._tracker = tracker
        self._tray: QSystemTrayIcon | None = None
        tracker.progressChanged.connect(self._on_progress)
        tracker.jobFinished.connect(self._on_finished)

    def _long_jobs(self) -> list[Job]:
        return [job for job in self._tracker.active() if job.kind in LONG_KINDS]

    def _on_progress(self, job_id: str, step: int, total: int, *_: object) -> None:
        job = self._tracker.get(job_id)
        if job is not None and job.kind in LONG_KINDS:
            self.update_title()

    def update_title(self) -> None:
        running = [job for job in self._long_jobs() if job.total > 0]
        if not running:
            self._window.setWindowTitle(APP_TITLE)
            return
        job = running[0]  # training before captioning: one number is what a title can hold
        percent = min(100, job.step * 100 // job.total)
        self._window.setWindowTitle(f"[{percent}%] {APP_TITLE}")

    def _on_finished(self, job_id: str, state: JobState, error: JobError | None) -> None:
        job = self._tracker.get(job_id)
        if job is None or job.kind not in LONG_KINDS:
            return
        self.update_title()
        if self._window.isActiveWindow():
            return  # the user is looking: the tab's own status says it
        text = f"{job_title(job)} {ENDINGS[state]}"
        if error is not None and error.message:
            text += f": {error.message.splitlines()[0]}"
        self.notify(text + ".")

    def notify(self, text: str) -> None:
        QApplication.alert(self._window)  # flashes the task bar entry until the window is activated
        if QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages():
            if self._tray is None:
                icon = self._window.windowIcon()
                if icon.isNull():  # a tray entry needs an icon to be shown at all
                    icon = self._window.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)
                self._tray = QSystemTrayIcon(icon, self)
            self._tray.show()
            self._tray.showMessage(APP_TITLE, text, QSystemTrayIcon.MessageIcon.Information, 10_000)
        self.notified.emit(text)
