"""Help > Report a problem… and Help > About LoRA Loom.

The report itself is made by app.core.debug_report (the same one ``loraloom doctor
--report`` writes); the checks take seconds (the worker's interpreter is asked about
torch, the Hub is contacted), so they run on a pool thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from app import __version__
from app.core import debug_report, doctor, versions
from app.ui.common.tasks import TaskRunner

REPORT_NAME = "loraloom-report.zip"


def about_html(hello: dict | None) -> str:
    commit = versions.git_commit()
    lines = [f"<h3>LoRA Loom {__version__}</h3>", "<p>Make, caption, train and blend image LoRAs.</p>"]
    if commit:
        lines.append(f"<p>Built from commit {commit}.</p>")
    if hello:
        device = str(hello.get("device") or "?")
        if hello.get("cuda_name"):
            device += f" ({hello['cuda_name']})"
        lines.append(f"<p>Worker: torch {hello.get('torch')}, diffusers {hello.get('diffusers')}, device {device}</p>")
    else:
        lines.append("<p>Worker: not started yet (its torch, diffusers and device show here once it has).</p>")
    return "".join(lines)


class HelpActions(QObject):
    """The two Help actions of a main window (which has ``client`` and ``log_panel``)."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window = window
        self._tasks = TaskRunner(max_threads=1, parent=self)
        self.summary = ""  # the last report's text, redacted (what went to the clipboard)
        self.report_action = QAction("Report a problem…", self)
        self.report_action.setToolTip(
            "Check the installation, copy a report to the clipboard, and offer "
            "to save it with logs and settings as a zip (tokens and home paths removed)."
        )
        self.report_action.triggered.connect(self.report_problem)
        self.about_action = QAction("About LoRA Loom", self)
        self.about_action.triggered.connect(self.show_about)
        self.box: QMessageBox | None = None

    def report_problem(self) -> None:
        if self._tasks.active:
            return
        self.report_action.setEnabled(False)
        hello = self.window.client.hello
        self.window.statusBar().showMessage("Checking the installation for the report…")
        self._tasks.run(
            lambda: debug_report.report_text(doctor.run_checks(), __version__, hello), self._on_report, self._on_failed
        )

    def _on_report(self, summary: str) -> None:
        self.report_action.setEnabled(True)
        self.summary = debug_report.redact(summary)
        QGuiApplication.clipboard().setText(self.summary)
        self.window.statusBar().showMessage("Problem report copied to the clipboard.", 8000)
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Report a problem",
            "The report is on the clipboard, with tokens and home paths removed: paste it into "
            "your issue.\n\nAlso save it as a zip with the logs and settings, to attach?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Close,
            self.window,
        )
        box.setDetailedText(self.summary)
        box.accepted.connect(self.choose_zip)
        self.box = box
        box.open()

    def _on_failed(self, _kind: str, message: str) -> None:
        self.report_action.setEnabled(True)
        self.window.statusBar().showMessage(f"The report could not be made: {message}", 8000)

    def choose_zip(self) -> None:
        folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Save the problem report", str(Path(folder) / REPORT_NAME), "Zip archives (*.zip)"
        )
        if path:
            self.save_zip(Path(path))

    def save_zip(self, path: Path) -> None:
        """Write the zip on a pool thread: the summary, the log panel, logs and settings."""
        extra = {"log-panel.txt": self.window.log_panel.text()}
        self._tasks.run(
            lambda: debug_report.write_report(path, self.summary, extra),
            lambda written: self.window.statusBar().showMessage(f"Report saved: {written}", 8000),
            lambda _k, message: self.window.statusBar().showMessage(
                f"{path}: the report could not be saved ({message})", 8000
            ),
        )

    def show_about(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.NoIcon,
            "About LoRA Loom",
            about_html(self.window.client.hello),
            QMessageBox.StandardButton.Close,
            self.window,
        )
        self.box = box
        box.open()


def add_help_actions(window: QWidget, menu: QMenu) -> HelpActions:
    actions = HelpActions(window)
    menu.addAction(actions.report_action)
    menu.addSeparator()
    menu.addAction(actions.about_action)
    return actions
