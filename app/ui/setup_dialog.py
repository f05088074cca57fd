"""The worker setup dialog: opened on the first job when no worker environment exists (the frozen app).

It creates the environment under the data folder (app.core.worker_env does the work on
a pool thread; its output lines come back to the log here), or takes an existing Python
or venv after checking that its worker answers. Cancel stops a running setup and
removes the half-made environment; declining leaves the held jobs failed with a
sentence saying how to set up later.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.core import worker_env
from app.ui.common.tasks import TaskRunner

DECLINED = "No worker environment: the job was not run. Start it again to set one up, or run `loraloom setup-worker`."


def _create(run: worker_env.SetupRun, report) -> dict:
    """On a pool thread: the whole setup, then the new worker's hello."""
    try:
        run.run(lambda line: report("line", line))
    except worker_env.SetupError as exc:
        return {"error": f"The worker environment was not created: {exc}."}
    return _check(run.plan.python)


def _check(python: Path) -> dict:
    try:
        return {"hello": worker_env.probe_worker(python), "python": str(python)}
    except worker_env.SetupError as exc:
        return {"error": str(exc)}


class SetupDialog(QDialog):
    """Choose how the worker gets its Python, then make it so; ``accept()`` once its worker answered."""

    lineLogged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set up the worker")
        self.setMinimumWidth(620)
        self._tasks = TaskRunner(max_threads=1, parent=self)
        self._run: worker_env.SetupRun | None = None
        self.env_dir = worker_env.default_env_dir()
        self.hardware: worker_env.Hardware | None = None  # nvidia-smi may take a while: asked on a pool thread

        intro = QLabel(
            "Generating, training and captioning run in a separate Python environment with PyTorch, "
            "and there is none yet. LoRA Loom can create one (a download of about 1 GB for the CPU "
            "build, up to 5 GB for a GPU build).",
            self,
        )
        intro.setWordWrap(True)
        self.hardware_label = QLabel("Looking for a GPU…", self)
        self.hardware_label.setWordWrap(True)
        self.create_radio = QRadioButton(f"Create a new environment in {self.env_dir} (recommended)", self)
        self.existing_radio = QRadioButton("Use an existing Python or venv (it must have torch and diffusers):", self)
        self.create_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.create_radio)
        group.addButton(self.existing_radio)
        self.python_edit = QLineEdit(self)
        self.python_edit.setPlaceholderText("path to python, or a venv folder")
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self._browse)
        self.python_edit.textChanged.connect(lambda _t: self.existing_radio.setChecked(True))
        row = QHBoxLayout()
        row.addWidget(self.python_edit, 1)
        row.addWidget(self.browse_button)

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status_label = QLabel("", self)
        self.status_label.setWordWrap(True)
        self.log_view = QPlainTextEdit(self)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setMinimumHeight(180)
        self.buttons = QDialogButtonBox(self)
        self.start_button = self.buttons.addButton("Set up", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

        layout = QVBoxLayout(self)
        for widget in (intro, self.hardware_label, self.create_radio, self.existing_radio):
            layout.addWidget(widget)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.log_view, 1)
        layout.addWidget(self.buttons)
        self.lineLogged.connect(self.log_view.appendPlainText)
        self.start_button.setEnabled(False)
        self._tasks.run(worker_env.detect_hardware, self._on_hardware, self._failed)

    def _on_hardware(self, hardware: worker_env.Hardware) -> None:
        self.hardware = hardware
        index = worker_env.torch_index_for(hardware)
        self.hardware_label.setText(f"Found: {hardware.describe()}.\ntorch from: {index or 'PyPI'}")
        self.start_button.setEnabled(True)

    # ------------------------------------------------------------ actions

    @property
    def busy(self) -> bool:
        return self._tasks.active > 0

    def start(self) -> None:
        if self.busy or self.hardware is None:
            return
        self.status_label.setText("")
        if self.existing_radio.isChecked():
            python = self._chosen_python()
            if python is None:
                return
            self._begin(f"Checking that {python} can run the worker…")
            self._tasks.run(lambda: _check(python), self._finished, self._failed)
            return
        uv = worker_env.find_uv()
        if uv is None:
            self._show_error("The uv installer is missing from this installation: reinstall LoRA Loom.")
            return
        options = worker_env.setup_defaults()
        try:
            plan = worker_env.plan_setup(self.env_dir, uv=uv, hardware=self.hardware, **options)
        except (FileNotFoundError, ValueError) as exc:
            self._show_error(str(exc))
            return
        if self.env_dir.exists() and any(self.env_dir.iterdir()):
            self._show_error(
                f"{self.env_dir} already exists but holds no working environment: "
                "remove it, or choose it as an existing venv."
            )
            return
        self._run = worker_env.SetupRun(plan)
        run = self._run
        self._begin("Creating the worker environment…")
        self._tasks.run(lambda report: _create(run, report), self._finished, self._failed, self._on_line)

    def cancel(self) -> None:
        """Stop a running setup (the half-made environment is removed), or close the dialog."""
        if self.busy:
            if self._run is not None:  # a check of an existing Python takes seconds: it is waited for
                self.status_label.setText("Cancelling…")
                self._run.cancel()
            return
        super().reject()

    def reject(self) -> None:  # Escape and the window's close button cancel a running setup first
        self.cancel()

    # ------------------------------------------------------------ helpers

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a Python interpreter", str(Path.home()))
        if path:
            self.python_edit.setText(path)

    def _chosen_python(self) -> Path | None:
        text = self.python_edit.text().strip()
        if not text:
            self._show_error("Choose a Python interpreter or a venv folder first.")
            return None
        path = Path(text).expanduser()
        if path.is_dir():  # a venv folder: its interpreter
            path = worker_env.env_python(path)
        if not path.is_file() or not os.access(path, os.X_OK):
            self._show_error(f"{path}: no Python interpreter there.")
            return None
        return path

    def _begin(self, text: str) -> None:
        self.status_label.setText(text)
        self.progress.setRange(0, 0)  # busy: uv gives no overall percentage
        self.start_button.setEnabled(False)
        for widget in (self.create_radio, self.existing_radio, self.python_edit, self.browse_button):
            widget.setEnabled(False)

    def _end(self) -> None:
        self.progress.setRange(0, 1)
        self.start_button.setEnabled(True)
        for widget in (self.create_radio, self.existing_radio, self.python_edit, self.browse_button):
            widget.setEnabled(True)
        self._run = None

    def _on_line(self, kind: str, line: str) -> None:
        self.lineLogged.emit(line)
        if line.startswith("[") and "] $ " in line:
            self.status_label.setText(
                f"Step {line[1 : line.index(']')]}: {'creating the environment' if ' venv ' in line else 'installing packages'}…"
            )

    def _finished(self, result: dict) -> None:
        self._end()
        if "error" in result:
            self._show_error(result["error"])
            return
        worker_env.save_python(result["python"])
        hello = result["hello"]
        self.lineLogged.emit(f"worker ready: device {hello.get('device')}, torch {hello.get('torch')}")
        self.progress.setValue(1)
        self.accept()

    def _failed(self, _kind: str, message: str) -> None:
        self._end()
        self._show_error(message)

    def _show_error(self, text: str) -> None:
        self.status_label.setText(text)
        self.lineLogged.emit(text)


def connect_setup(window) -> None:
    """Open the dialog when the window's worker client needs an environment (one dialog at a time)."""
    client = window.client

    def ask() -> None:
        if getattr(window, "setup_dialog", None) is not None:
            return
        dialog = SetupDialog(window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.setup_dialog = dialog

        def done(result: int) -> None:
            window.setup_dialog = None
            if result == QDialog.DialogCode.Accepted:
                client.start()  # the held jobs go to the new worker
            else:
                client.fail_held_jobs(DECLINED)

        dialog.finished.connect(done)
        dialog.open()

    window.setup_dialog = None
    client.setupNeeded.connect(ask)
