"""The main window: four tabs, the worker's state in the status bar, a log panel."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QTabWidget,
    QToolButton,
    QWidget,
)

from app.core import paths
from app.ui.common.settings import window_settings
from app.ui.dataset.dataset_ops import DatasetSession
from app.ui.dataset.dataset_tab import DatasetTab
from app.ui.generate.generate_ops import GenerateModel
from app.ui.generate.generate_tab import GenerateTab
from app.ui.job_notifier import JobNotifier
from app.ui.jobs import JobTracker
from app.ui.library.library_ops import LibraryOps
from app.ui.library.library_tab import LibraryTab
from app.ui.menus import build_menus
from app.ui.quit_guard import QuitGuard
from app.ui.recent_models import RecentModels
from app.ui.setup_dialog import connect_setup
from app.ui.train.train_ops import TrainOps
from app.ui.train.train_tab import TrainTab
from app.ui.widgets.log_panel import LogPanel, QtLogHandler
from app.ui.widgets.wheel_guard import install_wheel_guard
from app.ui.worker_client import WorkerClient, WorkerState

log = logging.getLogger(__name__)

STATE_TEXT = {
    WorkerState.STOPPED: "not started (starts with the first job)",
    WorkerState.STARTING: "starting…",
    WorkerState.READY: "ready",
    WorkerState.BUSY: "busy",
    WorkerState.CRASHED: "stopped unexpectedly",
}


class MainWindow(QMainWindow):
    def __init__(self, client: WorkerClient | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        install_wheel_guard()  # before any form is shown: the wheel scrolls forms, never changes a value
        self.setWindowTitle("LoRA Loom")
        self.client = client or WorkerClient(parent=self)
        self.tracker = JobTracker(self.client, self)
        self.recent_models = RecentModels(parent=self)
        # Each tab's state and work without widgets (its ``*_ops`` object), built here the same
        # way and handed to its tab: the window wires them together, tabs never meet.
        self.dataset_ops = DatasetSession(self.tracker, parent=self)
        self.train_ops = TrainOps(self.tracker, parent=self)
        self.generate_ops = GenerateModel(self.tracker, self.recent_models, parent=self)
        self.library_ops = LibraryOps(parent=self)

        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.dataset_tab = DatasetTab(self.dataset_ops, self)
        self.tabs.addTab(self.dataset_tab, "Dataset")
        self.train_tab = TrainTab(self.train_ops, self.recent_models, dataset_session=self.dataset_ops, parent=self)
        self.tabs.addTab(self.train_tab, "Train")
        self.generate_tab = GenerateTab(self.generate_ops, self)
        self.tabs.addTab(self.generate_tab, "Generate")
        self.library_tab = LibraryTab(self.library_ops, self)
        self.tabs.addTab(self.library_tab, "Library")
        self.tabs.setCurrentWidget(self.generate_tab)  # a picture from a base model needs nothing else set up
        self.setCentralWidget(self.tabs)

        self.log_panel = LogPanel(self)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("log_dock")  # saveState() needs a name
        self.log_dock.setWidget(self.log_panel)
        self.log_dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetClosable | QDockWidget.DockWidgetFeature.DockWidgetMovable
        )
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.resizeDocks([self.log_dock], [120], Qt.Orientation.Vertical)
        self._log_handler = QtLogHandler(self.log_panel)
        logging.getLogger("app").addHandler(self._log_handler)

        self.quit_guard = QuitGuard(self, self.tracker, self.train_ops, self.dataset_ops)
        self.notifier = JobNotifier(self, self.tracker)  # progress in the title, a notice when a long job ends
        self._build_actions()
        self._build_menus()
        self._build_status_bar()
        self._connect_client()
        connect_setup(self)  # the first job without a worker environment opens the setup dialog
        self._restore_geometry()
        self.dataset_tab.install_window_drop(self, lambda: self.tabs.setCurrentWidget(self.dataset_tab))

    # ------------------------------------------------------------ building

    def _build_actions(self) -> None:
        self.open_data_action = QAction("Open data folder", self)
        self.open_data_action.setToolTip("Show the folder with outputs, runs and models in the file manager.")
        self.open_data_action.triggered.connect(self.open_data_folder)
        self.quit_action = QAction("Quit", self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.quit_action.triggered.connect(self.close)
        self.restart_action = QAction("Restart worker", self)
        self.restart_action.setToolTip("Stop the worker process (cancelling its jobs) and start a fresh one.")
        self.restart_action.triggered.connect(self.restart_worker)

    def _build_menus(self) -> None:
        build_menus(self)  # app/ui/menus.py: File, Edit, View, Worker, Help

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.model_label = QLabel("", self)
        self.worker_label = QLabel("", self)
        self.restart_button = QToolButton(self)
        self.restart_button.setDefaultAction(self.restart_action)
        self.restart_button.setVisible(False)
        status.addPermanentWidget(self.model_label)
        status.addPermanentWidget(self.worker_label)
        status.addPermanentWidget(self.restart_button)
        self._show_worker_state(self.client.state.value)

    def _connect_client(self) -> None:
        self.tracker.modelChanged.connect(lambda model: self.library_tab.set_current_family(model.get("family")))
        self.library_tab.addToMixRequested.connect(self._on_add_to_mix)
        self.train_tab.useInGenerate.connect(self._on_use_run_adapter)
        self.generate_tab.stack_widget.libraryRequested.connect(lambda: self.tabs.setCurrentWidget(self.library_tab))
        self.library_ops.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.client.stateChanged.connect(self._show_worker_state)
        self.client.helloReceived.connect(self._on_hello)
        self.client.stderrLine.connect(self.log_panel.append_worker_line)
        self.client.logMessage.connect(self.log_panel.append_app_message)
        self.client.crashed.connect(self._on_crashed)
        self.tracker.modelChanged.connect(self._on_model)
        self.tracker.jobLog.connect(self.log_panel.append_job)

    # ------------------------------------------------------------ actions

    def open_data_folder(self) -> None:
        folder = paths.data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            log.warning("could not open %s in the file manager", folder)

    def restart_worker(self) -> None:
        self.statusBar().clearMessage()
        self.client.restart()

    # ------------------------------------------------------------ worker state

    @staticmethod
    def device_text(hello: dict) -> str:
        device = str(hello.get("device") or "?")
        name = hello.get("cuda_name")
        return f"{device} ({name})" if name else device

    def _show_worker_state(self, state: str) -> None:
        worker_state = WorkerState(state)
        text = f"Worker: {STATE_TEXT[worker_state]}"
        if self.client.hello and worker_state in (WorkerState.READY, WorkerState.BUSY):
            text += f" · {self.device_text(self.client.hello)}"
        self.worker_label.setText(text)
        crashed = worker_state is WorkerState.CRASHED
        self.restart_button.setVisible(crashed)
        if not crashed and worker_state is not WorkerState.STOPPED:
            self.statusBar().clearMessage()
        if worker_state in (WorkerState.STOPPED, WorkerState.CRASHED):
            self.model_label.setText("")

    def _on_hello(self, hello: dict) -> None:
        self._show_worker_state(self.client.state.value)
        self.log_panel.append_app_message(
            "info",
            f"worker ready: device {self.device_text(hello)}, torch {hello.get('torch')}, "
            f"diffusers {hello.get('diffusers')}",
        )

    def _on_model(self, model: dict) -> None:
        base = str(model.get("base") or "")
        short = base.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] if base else "?"
        family = model.get("family")
        self.model_label.setText(f"Model: {short}" + (f" ({family})" if family else ""))
        self.model_label.setToolTip(base)

    def _on_add_to_mix(self, path: str) -> None:
        self.generate_tab.add_adapter(path)
        self.tabs.setCurrentWidget(self.generate_tab)
        self.statusBar().showMessage(f"Added to the mix: {path}", 8000)

    def _on_use_run_adapter(self, path: str, base: str) -> None:
        if base:  # a run's adapter is made for its base: render on that one
            self.generate_tab.model_picker.setText(base)
        self._on_add_to_mix(path)

    def _on_crashed(self, message: str) -> None:
        first_line = message.splitlines()[0] if message else "The worker stopped."
        self.statusBar().showMessage(f"{first_line} — use Restart worker to start a new one.")

    # ------------------------------------------------------------ geometry and exit

    def _restore_geometry(self) -> None:
        settings = window_settings()
        geometry = settings.value("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1180, 800)
        state = settings.value("state")
        if state is not None:
            self.restoreState(state)

    def save_geometry(self) -> None:
        settings = window_settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("state", self.saveState())
        settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.quit_guard.allow_close():  # a job runs: the question is open, or it is saving
            event.ignore()
            return
        self.save_geometry()
        self.generate_tab.save_settings()
        self.train_tab.save_settings()
        self.dataset_tab.flush()  # the caption being typed and queued writes reach the disk
        self.hide()  # feel closed at once while the worker takes its moment to exit
        self.library_ops.shutdown()  # downloads stop at their next chunk, resumable later
        self.client.shutdown(wait=True)
        logging.getLogger("app").removeHandler(self._log_handler)
        event.accept()
