"""A read-only log view: the worker's stderr and the application's own messages.

Every line gets one timestamp (the worker's own ``asctime`` is taken off its lines), its own
colour set explicitly (a line never inherits the colour of the one before it, which made old
INFO lines red after a crash's traceback), long 32-hex job ids shortened to 8, and it wraps.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QFontDatabase, QGuiApplication, QTextCharFormat, QTextCursor, QTextOption
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app.core.files import atomic_write_text

MAX_LINES = 5000  # older lines scroll away so a long training run cannot eat memory
JOB_ID_CHARS = 8

_LEVEL_COLOURS = {"warning": "#b36b00", "error": "#c62828", "critical": "#c62828"}
# "2026-12-01 21:40:02,123 WARNING app.engine.x: message" (app/worker/loop.py's format)
_WORKER_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d+)? (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$")
_JOB_ID = re.compile(rf"\b([0-9a-f]{{{JOB_ID_CHARS}}})[0-9a-f]{{24}}\b")  # uuid4().hex
_TRACEBACK_PART = re.compile(r"^(Traceback |\s+|\w+(\.\w+)*(Error|Exception|Interrupt)\b)")


def short_ids(text: str) -> str:
    return _JOB_ID.sub(r"\1", text)


class LogPanel(QWidget):
    """Appends timestamped lines; keeps the view at the bottom unless the user scrolled up."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._view = QPlainTextEdit(self)
        self._view.setReadOnly(True)
        self._view.setMaximumBlockCount(MAX_LINES)
        self._view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._view.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)  # long paths too
        self._view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self._view.setPlaceholderText("Worker output and application messages appear here.")
        self._last_worker_level = "info"
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the selected lines, or the whole log when nothing is selected.")
        self.copy_button.clicked.connect(self.copy)
        self.save_button = QPushButton("Save log…", self)
        self.save_button.setToolTip("Write the log shown here to a text file (to attach to a bug report).")
        self.save_button.clicked.connect(self._ask_and_save)
        clear = QPushButton("Clear", self)
        clear.setToolTip("Remove all lines from the log view (nothing on disk is touched).")
        clear.clicked.connect(self._view.clear)
        side = QVBoxLayout()
        for button in (self.copy_button, self.save_button, clear):
            side.addWidget(button)
        side.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 6)
        layout.addWidget(self._view, 1)
        layout.addLayout(side)

    # ------------------------------------------------------------ lines
    def append(self, source: str, level: str, text: str) -> None:
        bar = self._view.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 2
        fmt = QTextCharFormat()
        colour = _LEVEL_COLOURS.get(level.lower())
        # Always set: the document's current format would otherwise carry the last colour on.
        fmt.setForeground(QColor(colour) if colour else self._view.palette().text().color())
        cursor = QTextCursor(self._view.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not self._view.document().isEmpty():
            cursor.insertBlock()
        cursor.insertText(f"{time.strftime('%H:%M:%S')} {source:<6} {short_ids(text)}", fmt)
        if at_bottom:
            bar.setValue(bar.maximum())

    def append_worker_line(self, text: str) -> None:
        match = _WORKER_LINE.match(text)
        if match:  # the worker's logging: its level, and our timestamp instead of its own
            level, text = match.group(1).lower(), match.group(2)
        elif self._last_worker_level in ("error", "critical") and _TRACEBACK_PART.match(text):
            level = self._last_worker_level  # the rest of a traceback
        elif text.startswith("Traceback ") or re.match(r"^\w+(Error|Exception):", text):
            level = "error"
        else:
            level = "info"
        self._last_worker_level = level
        self.append("worker", level, text)

    def append_app_message(self, level: str, text: str) -> None:
        self.append("app", level, text)

    def append_job(self, job_id: str, level: str, text: str) -> None:
        self.append("job", level, f"{job_id[:JOB_ID_CHARS]}: {text}" if job_id else text)

    def text(self) -> str:
        return self._view.toPlainText()

    def line_colours(self) -> list[str]:
        """The colour each line is drawn in, "#rrggbb" (what the user sees; for tests)."""
        out = []
        block = self._view.document().begin()
        while block.isValid():
            it = block.begin()
            out.append(it.fragment().charFormat().foreground().color().name() if not it.atEnd() else "")
            block = block.next()
        return out

    # ------------------------------------------------------------ copy and save
    def copy(self) -> None:
        selected = self._view.textCursor().selectedText().replace("\u2029", "\n")
        QGuiApplication.clipboard().setText(selected or self.text())

    def save_to(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.text() + "\n")
        return path

    def _ask_and_save(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self,
            "Save log",
            f"loraloom-log-{time.strftime('%Y%m%d-%H%M%S')}.txt",
            "Text files (*.txt *.log);;All files (*)",
        )
        if not name:
            return
        try:
            self.save_to(name)
        except OSError as exc:
            self.append_app_message("error", f"{name}: the log could not be saved ({exc.strerror or exc})")
        else:
            self.append_app_message("info", f"log saved to {name}")


class _LogBridge(QObject):
    # Signals are queued across threads, so records logged from a pool thread reach
    # the panel on the GUI thread.
    record = Signal(str, str)


class QtLogHandler(logging.Handler):
    """Sends Python log records (from any thread) to a :class:`LogPanel`."""

    def __init__(self, panel: LogPanel, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._bridge = _LogBridge()
        self._bridge.record.connect(panel.append_app_message, Qt.ConnectionType.QueuedConnection)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._bridge.record.emit(record.levelname.lower(), self.format(record))
        except RuntimeError:  # the panel is gone (window closed); nothing to show it in
            pass
