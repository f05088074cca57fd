"""A read-only log view: the worker's stderr and the application's own messages."""

from __future__ import annotations

import html
import logging
import time

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

MAX_LINES = 5000  # older lines scroll away so a long training run cannot eat memory

_LEVEL_COLOURS = {"warning": "#b36b00", "error": "#c62828", "critical": "#c62828"}


class LogPanel(QWidget):
    """Appends timestamped lines; keeps the view at the bottom unless the user scrolled up."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._view = QPlainTextEdit(self)
        self._view.setReadOnly(True)
        self._view.setMaximumBlockCount(MAX_LINES)
        self._view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self._view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self._view.setPlaceholderText("Worker output and application messages appear here.")
        clear = QPushButton("Clear", self)
        clear.setToolTip("Remove all lines from the log view (nothing on disk is touched).")
        clear.clicked.connect(self._view.clear)
        side = QVBoxLayout()
        side.addWidget(clear)
        side.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 6)
        layout.addWidget(self._view, 1)
        layout.addLayout(side)

    def append(self, source: str, level: str, text: str) -> None:
        bar = self._view.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 2
        stamp = time.strftime("%H:%M:%S")
        line = html.escape(f"{stamp} {source:<6} {text}")
        colour = _LEVEL_COLOURS.get(level.lower())
        if colour:
            line = f'<span style="color:{colour}">{line}</span>'
        self._view.appendHtml(f'<span style="white-space:pre">{line}</span>')
        if at_bottom:
            bar.setValue(bar.maximum())
            self._view.horizontalScrollBar().setValue(0)  # keep the timestamps in view

    def append_worker_line(self, text: str) -> None:
        # The worker logs "<time> LEVEL name: message"; tracebacks come without a level.
        if " ERROR " in text or " CRITICAL " in text or "Traceback" in text or "Error:" in text:
            level = "error"
        elif " WARNING " in text:
            level = "warning"
        else:
            level = "info"
        self.append("worker", level, text)

    def append_app_message(self, level: str, text: str) -> None:
        self.append("app", level, text)

    def text(self) -> str:
        return self._view.toPlainText()


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
