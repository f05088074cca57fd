"""Auto-mask…: the ``mask`` job (CLIPSeg) for the open dataset, followed like auto-captioning.

The worker writes ``name.mask.png`` beside each picture that has none; when it is done the
Masks toggle's flags and the preview's overlay are read again, so the new masks show at once.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.core.configs import ConfigError
from app.core.dataset.mask_config import MaskRequest
from app.core.events import ArtifactKind, ArtifactSaved, LogLevel, LogLine, Progress
from app.ui.dataset.dataset_ops import DatasetSession
from app.ui.jobs import JobError, JobHandle, JobState
from app.worker.protocol import JobKind


class AutoMasks(QObject):
    finished = Signal(int)  # masks written

    def __init__(self, session: DatasetSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.job: str | None = None
        self.written = 0
        self.model = ""  # the CLIPSeg model (Hub id or folder); "": CIDAS/clipseg-rd64-refined

    def start(self, prompt: str) -> str | None:
        """Submit a ``mask`` job for what ``prompt`` names; the job id, or None (a sentence said why)."""
        session = self.session
        if session.tracker is None or session.root is None:
            session.errorOccurred.emit("open a dataset folder first")
            return None
        if self.job is not None:
            session.errorOccurred.emit("automatic masking is already running")
            return None
        params = {
            "folder": str(session.root),
            "prompt": prompt.strip(),
            "min_side": session.min_side,
            "model": self.model,
        }
        try:
            request = MaskRequest.from_dict(params, where="auto-mask")
        except ConfigError as exc:
            session.errorOccurred.emit(str(exc))
            return None
        self.written = 0
        return session.tracker.submit(JobKind.MASK.value, request.to_dict(), connect=self._follow).id

    def _follow(self, handle: JobHandle) -> None:
        self.job = handle.id
        handle.artifact.connect(self._on_artifact)
        handle.log.connect(self._on_log)
        handle.progress.connect(self._on_progress)
        handle.finished.connect(self._on_finished)
        self.session.message.emit("automatic masking: starting the worker …")

    def _on_artifact(self, saved: ArtifactSaved) -> None:
        if saved.kind is ArtifactKind.MASK:
            self.written += 1

    def _on_log(self, line: LogLine) -> None:
        if line.level is LogLevel.WARNING:
            self.session.message.emit(line.message)

    def _on_progress(self, progress: Progress) -> None:
        if progress.message:
            self.session.message.emit(f"automatic masking: {progress.message}")

    def _on_finished(self, state: JobState, error: JobError | None) -> None:
        self.job = None
        session = self.session
        if error is not None:
            session.errorOccurred.emit(f"automatic masking failed: {error.message}")
        else:
            session.message.emit(
                f"automatic masking {state.value}: {self.written} mask(s) written as name.mask.png beside the "
                "pictures (edit them in any paint program)"
            )
        if session.masking:
            session.set_masking(True)
        self.finished.emit(self.written)
