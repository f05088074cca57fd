"""Quitting while a job runs: ask first, then stop it cleanly before the window closes.

Training stops the way its Stop button does (the step finishes, a checkpoint and the
resume state are written, History offers Resume); auto-captioning stops after the
picture it is on (captions written so far stay). A render just stops. The question is
a window-modal box opened with ``open()``, never ``exec()``, so nothing blocks and a
test can press its buttons.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QMainWindow, QMessageBox

from app.core.train_queue import EntryState
from app.ui.jobs import JobTracker

STOP_TEXT = "Stop, save and quit"
QUIT_TEXT = "Quit"  # only waiting runs: nothing to stop or save


class QuitGuard(QObject):
    """Decides whether a close may go ahead; ``window.closeEvent`` asks :meth:`allow_close`."""

    def __init__(
        self, window: QMainWindow, tracker: JobTracker, train_ops, dataset_session, parent: QObject | None = None
    ) -> None:
        super().__init__(parent or window)
        self._window = window
        self._tracker = tracker
        self._train = train_ops
        self._dataset = dataset_session
        self.box: QMessageBox | None = None
        self.stopping = False  # "Stop, save and quit" pressed: the window closes once the jobs end
        tracker.jobFinished.connect(self._on_job_finished)

    def question(self) -> str:
        """What would be lost by quitting now, as the question to ask ("" when nothing is)."""
        parts = []
        current = self._train.current
        waiting = len(self._train.waiting())
        if current is not None:
            at = f"is at step {current.step} of {current.total}" if current.total else "is starting"
            parts.append(f"Training '{current.name}' {at}.")
        job = self._caption_job()
        if job is not None:
            at = f"is at picture {job.step} of {job.total}" if job.total else "is starting"
            parts.append(f"Auto-captioning {at}; the captions written so far are kept.")
        if waiting:
            runs = "1 run is" if waiting == 1 else f"{waiting} runs are"
            parts.append(f"{runs} waiting in the training queue and will not start.")
        if not parts:
            return ""
        if current is None and job is None:
            return " ".join(parts) + " Quit anyway, or keep the window open?"
        keep = "keep training" if current is not None else "keep working"
        return " ".join(parts) + f" Stop and save a resumable state, or {keep}?"

    def allow_close(self) -> bool:
        """True: close now. False: the close waits (a question is open, or the jobs are saving)."""
        if self.stopping:
            # The jobs have ended, or this is a second quit while they save: then the worker
            # stops at once, and the last save stays whole (its files are written atomically).
            return True
        text = self.question()
        if not text:
            return True
        running = self._busy()
        self.ask(text, self.stop_then_quit, STOP_TEXT if running else QUIT_TEXT)
        return False

    def ask(self, text: str, on_stop: Callable[[], None], stop_text: str = STOP_TEXT) -> QMessageBox:
        if self.box is not None:
            self.box.close()
        box = QMessageBox(
            QMessageBox.Icon.Question, "Quit LoRA Loom", text, QMessageBox.StandardButton.NoButton, self._window
        )
        stop = box.addButton(stop_text, QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)  # Enter keeps the job running: quitting is the deliberate choice
        box.setEscapeButton(cancel)
        box.buttonClicked.connect(lambda button: on_stop() if button is stop else None)
        self.box = box
        box.open()
        return box

    def stop_then_quit(self) -> None:
        self.stopping = True
        self._train.paused = True  # the queue must not start its next run while we wait
        current = self._train.current
        if current is not None and current.state is EntryState.RUNNING:
            self._train.stop()  # not when already stopping: a second stop would end the worker mid-save
        if self._caption_job() is not None:
            self._dataset.cancel_captioning()
        self._window.statusBar().showMessage("Saving a resumable state, then quitting; quit again to stop at once.")
        QTimer.singleShot(0, self._close_if_idle)

    # ------------------------------------------------------------ internals

    def _caption_job(self):
        job_id = getattr(self._dataset, "caption_job", None)
        job = self._tracker.get(job_id) if job_id else None
        return job if job is not None and not job.state.is_final else None

    def _busy(self) -> bool:
        return self._train.current is not None or self._caption_job() is not None

    def _on_job_finished(self, *_: object) -> None:
        if self.stopping:
            # From the event loop: the train ops and the dataset session see this finish first.
            QTimer.singleShot(0, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if not self._busy():
            self._window.close()
