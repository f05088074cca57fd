"""The Train tab: the form on the left; controls, progress, loss plot, samples, checkpoints,
queue and history on the right.

The widget binds controls to :class:`TrainOps` (queue, job events, history) and
:class:`TrainForm` (the config); it never talks to the worker nor parses protocol events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.configs import ConfigError
from app.core.events import ArtifactKind
from app.core.train_config import TrainConfig
from app.core.train_queue import EntryState
from app.ui.common.formatting import format_eta
from app.ui.recent_models import RecentModels
from app.ui.train.checkpoints_panel import CheckpointsPanel
from app.ui.train.compare import CompareDialog, CompareOps
from app.ui.train.loss_plot import LossPlot
from app.ui.train.queue_panel import HistoryPanel, QueuePanel
from app.ui.train.run_history import RunInfo, adapter_label
from app.ui.train.sample_gallery import SampleGallery
from app.ui.train.train_form import FormError, TrainForm
from app.ui.train.train_ops import TrainOps
from app.ui.widgets.action_bar import action_bar
from app.worker.protocol import RequestAction

PLOT_REFRESH_MS = 150
ERROR_STYLE = "color: #c62828;"
TOML_FILTER = "Training configs (*.toml);;All files (*)"


class TrainTab(QWidget):
    useInGenerate = Signal(str, str)  # (an adapter file for the Generate tab's stack, its run's base model)

    def __init__(
        self, ops: TrainOps, recent: RecentModels, *, dataset_session: Any = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.recent = recent
        self.ops = ops
        self.compare_ops = CompareOps(ops.tracker, parent=self)
        self.compare_dialog: CompareDialog | None = None
        self._history_read = False
        self._build()
        self._connect()
        self.form.set_config(self.ops.load_settings())
        self.dataset_session = dataset_session
        if dataset_session is not None:
            dataset_session.opened.connect(self.form.datasets.set_open_folder)
            dataset_session.countsChanged.connect(
                lambda _text: (
                    dataset_session.root is not None and self.form.datasets.refresh_folder(dataset_session.root)
                )
            )
            if dataset_session.root is not None:
                self.form.datasets.set_open_folder(str(dataset_session.root))
        self.resume_box: QMessageBox | None = None
        self._update_buttons()
        self.ops.look_for_interrupted()

    # ------------------------------------------------------------ building
    def _build(self) -> None:
        left = self._build_form_column()
        self._build_run_buttons()
        controls, right = self._build_run_side()
        self._build_layout(left, right, controls)

    def _build_form_column(self) -> QWidget:
        """The scrolled settings form above Load/Save config."""
        self.form = TrainForm(self.recent, self)
        scroll = self.form_scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        scroll.setMinimumWidth(380)
        self.load_button = QPushButton("Load config…", self)
        self.load_button.setToolTip("Fill the form from a training config (.toml), e.g. one made for the CLI.")
        self.load_button.clicked.connect(self._choose_load)
        self.save_button = QPushButton("Save config…", self)
        self.save_button.setToolTip("Save the form as a .toml config with every setting (loraloom train reads it).")
        self.save_button.clicked.connect(self._choose_save)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(scroll, 1)
        file_row = QHBoxLayout()
        file_row.addWidget(self.load_button)
        file_row.addWidget(self.save_button)
        file_row.addStretch(1)
        left_layout.addLayout(file_row)
        return left

    def _build_run_buttons(self) -> None:
        self.start_button = QPushButton("Start", self)
        self.start_button.setToolTip("Check the settings and start training now.")
        self.start_button.setStyleSheet("font-weight: bold;")
        self.stop_button = QPushButton("Stop", self)
        self.checkpoint_button = QPushButton("Save checkpoint now", self)
        self.checkpoint_button.setToolTip("Save a checkpoint (and the resume state) after the current step.")
        self.sample_button = QPushButton("Sample now", self)
        self.sample_button.setToolTip("Render the sample prompts with the adapter as it is after the current step.")
        self.try_button = QPushButton("Try a prompt…", self)
        self.try_button.setToolTip(
            "Render a prompt of your own with the adapter as it is after the current step, in the running "
            "job (no model reload); it shows in Samples with its step and does not count in the run's time."
        )
        self.try_dialog: QInputDialog | None = None
        self.queue_button = QPushButton("Add to queue", self)
        self.queue_button.setToolTip("Check the settings and queue them: queued runs start one after another.")
        self.progress = QProgressBar(self)
        self.progress.setFormat("%v / %m steps")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta_label = QLabel("Not training.", self)
        self.status_label = QLabel("", self)
        self.status_label.setWordWrap(True)
        self.view_label = QLabel("", self)
        self.live_button = QPushButton("Show running run", self)
        self.live_button.setToolTip("Show the loss, samples and checkpoints of the run that is training now.")
        self.live_button.clicked.connect(lambda: self.ops.show_live())

    def _build_run_side(self) -> tuple[QVBoxLayout, QWidget]:
        """The button rows (returned for the action bar) and the loss plot above the run's views."""
        self.plot = LossPlot(self)
        self.gallery = SampleGallery(self)
        self.checkpoints = CheckpointsPanel(self)
        self.queue_panel = QueuePanel(self.ops, self)
        self.history_panel = HistoryPanel(self.ops, self)
        self.views = QTabWidget(self)
        self.views.addTab(self.gallery, "Samples")
        self.views.addTab(self.checkpoints, "Checkpoints")
        self.views.addTab(self.queue_panel, "Queue")
        self.views.addTab(self.history_panel, "History")

        # Two rows of buttons keep the tab narrow enough for a laptop screen.
        run_row = QHBoxLayout()
        for button in (self.start_button, self.stop_button):
            run_row.addWidget(button)
        run_row.addStretch(1)
        run_row.addWidget(self.queue_button)
        during_row = QHBoxLayout()
        for button in (self.checkpoint_button, self.sample_button, self.try_button):
            during_row.addWidget(button)
        during_row.addStretch(1)
        controls = QVBoxLayout()
        controls.addLayout(run_row)
        controls.addLayout(during_row)
        shown = QHBoxLayout()
        shown.addWidget(self.view_label, 1)
        shown.addWidget(self.live_button)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(shown)
        vertical = QSplitter(Qt.Orientation.Vertical, right)
        vertical.addWidget(self.plot)
        vertical.addWidget(self.views)
        vertical.setStretchFactor(0, 2)
        vertical.setStretchFactor(1, 3)
        right_layout.addWidget(vertical, 1)
        return controls, right

    def _build_layout(self, left: QWidget, right: QWidget, controls: QVBoxLayout) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([430, 750])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        # On a small screen the whole tab scrolls instead of forcing the window wider.
        outer = QScrollArea(self)
        outer.setWidget(splitter)
        outer.setWidgetResizable(True)
        outer.setFrameShape(QFrame.Shape.NoFrame)
        layout.addWidget(outer, 1)
        # The action bar stays below the scrolled tab: Start, Stop, progress and the
        # status/error line are always in view, whatever the window height.
        self.fix_button = QPushButton("", self)  # the fix for settings that cannot work
        self.fix_button.setVisible(False)
        self.fix_button.clicked.connect(self.apply_fix)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.fix_button)
        self.action_bar = action_bar(self, [controls, self.progress, self.eta_label, status_row], margins=(4, 4, 4, 0))
        layout.addWidget(self.action_bar)
        self._plot_timer = QTimer(self)
        self._plot_timer.setSingleShot(True)
        self._plot_timer.setInterval(PLOT_REFRESH_MS)
        self._plot_timer.timeout.connect(self._redraw_plot)

    def _connect(self) -> None:
        ops = self.ops
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(ops.stop)
        self.checkpoint_button.clicked.connect(lambda: ops.request(RequestAction.CHECKPOINT))
        self.sample_button.clicked.connect(lambda: ops.request(RequestAction.SAMPLE))
        self.try_button.clicked.connect(self.open_try)
        self.queue_button.clicked.connect(self.add_to_queue)
        ops.progressChanged.connect(self._on_progress)
        ops.currentChanged.connect(self._update_buttons)
        ops.viewReset.connect(self._on_view_reset)
        ops.lossAdded.connect(lambda: self._plot_timer.isActive() or self._plot_timer.start())
        ops.sampleAdded.connect(self.gallery.add)
        ops.adapterAdded.connect(self._on_adapter)
        ops.message.connect(self._show_status)
        ops.interruptedFound.connect(self._offer_resume)
        self.checkpoints.useInGenerate.connect(lambda path: self.useInGenerate.emit(path, self._view_base()))
        self.checkpoints.compareRequested.connect(self.open_compare)
        self.history_panel.loadConfigRequested.connect(self.form.set_config)

    # ------------------------------------------------------------ actions
    def start(self) -> bool:
        config = self._checked_config()
        if config is None:
            return False
        self.ops.start(config)
        return True

    def add_to_queue(self) -> bool:
        config = self._checked_config()
        if config is None:
            return False
        self.ops.enqueue(config)
        if self.ops.current is None:
            self._show_status(f"Queued {config.name}; Start queue (Queue tab) runs the waiting runs.")
        else:
            self._show_status(f"Queued {config.name}; it starts when the running run ends.")
        return True

    def _offer_resume(self, run: RunInfo) -> None:
        """Ask (without blocking) whether to resume a run that a crash, kill or power loss ended."""
        if self.ops.current is not None or self.resume_box is not None:
            return
        box = self.resume_box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Resume training?")
        box.setText(
            f"The training run {run.name} was interrupted at step {run.saved_step} of {run.total} "
            f"(the app or the computer stopped). Resume it from step {run.saved_step}?"
        )
        box.setInformativeText(
            f"{run.path}\nNot now: it stays in History, whose Resume continues it; this is not asked again."
        )
        resume = box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(resume)

        def answered() -> None:
            self.resume_box = None
            if box.clickedButton() is resume:
                self.ops.resume(run.path)
                self._show_status(f"Resuming {run.name} from step {run.saved_step}.")
            else:
                self.ops.decline_resume(run.path)

        box.finished.connect(answered)
        box.open()

    def _checked_config(self) -> TrainConfig | None:
        config = self.form.ready_config()
        if config is None:
            self._show_status(self.form.error_label.text(), error=True)  # in the action bar, always in view
            marked = self.form.marked_widget()
            if marked is not None:
                self.form_scroll.ensureWidgetVisible(marked)  # and next to the field
            problem = self.form.problem
            self.fix_button.setText(problem.fix_label if problem else "")
            self.fix_button.setVisible(problem is not None)
            return None
        self.fix_button.setVisible(False)
        self.ops.save_settings(config)
        self.recent.add(config.base)
        return config

    def apply_fix(self) -> None:
        if self.form.apply_fix():
            self.fix_button.setVisible(False)
            self._show_status("Fixed; press Start again.")

    def save_settings(self) -> None:
        """Remember the form for the next start (nothing is saved while it holds an error)."""
        try:
            self.ops.save_settings(self.form.config())
        except FormError:
            pass

    def save_config_to(self, path: str) -> bool:
        try:
            config = self.form.config()
        except FormError as exc:
            self.form.show_error(exc.key, str(exc))
            return False
        try:
            config.save_toml(path)
        except OSError as exc:
            self.form.show_error("", f"Could not save {path}: {exc}")
            return False
        self._show_status(f"Saved the settings to {path}.")
        return True

    def load_config_from(self, path: str) -> bool:
        try:
            config = TrainConfig.load_toml(path)
        except ConfigError as exc:
            self.form.show_error("", str(exc))
            return False
        self.form.set_config(config)
        self._show_status(f"Loaded {path}.")
        return True

    def _choose_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a training config", str(Path.home()), TOML_FILTER)
        if path:
            self.load_config_from(path)

    def _choose_save(self) -> None:
        try:
            name = self.form.config().name
        except FormError:
            name = "training"
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the training config", str(Path.home() / f"{name}.toml"), TOML_FILTER
        )
        if path:
            self.save_config_to(path if path.lower().endswith(".toml") else path + ".toml")

    def open_try(self) -> QInputDialog:
        """Ask for the prompt (not modal: training and the plot go on meanwhile); OK sends it."""
        if self.try_dialog is None:
            dialog = self.try_dialog = QInputDialog(self)
            dialog.setWindowTitle("Try a prompt")
            dialog.setLabelText("Prompt ({trigger} becomes the trigger word):")
            dialog.textValueSelected.connect(self.ops.try_prompt)
            config = self.ops.current.config if self.ops.current is not None else None
            prompts = config.sample.prompts if config is not None else []
            dialog.setTextValue(prompts[0] if prompts else "{trigger}")
        self.try_dialog.open()
        return self.try_dialog

    def open_compare(self, chosen: list[str]) -> CompareDialog | None:
        view = self.ops.view
        adapters = [(label, path) for label, path in view.adapter_list()]
        if not adapters:
            return None
        if self.compare_dialog is not None:
            self.compare_dialog.close()
            self.compare_dialog.deleteLater()
        self.compare_dialog = CompareDialog(
            self.compare_ops, adapters, compare_defaults(view.config, view.run_dir), chosen, self
        )
        self.compare_dialog.show()
        return self.compare_dialog

    # ------------------------------------------------------------ events
    def _on_progress(self, step: int, total: int, eta_s: object, message: str) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(step, max(1, total)))
        parts = [f"Step {step} / {total}"] if total else []
        if message:
            parts.append(message)
        eta = format_eta(eta_s if isinstance(eta_s, (int, float)) else None)
        if eta and step:
            parts.append(f"ETA {eta}")
        view = self.ops.live_view
        if view.points:
            parts.append(f"loss {view.points[max(view.points)][0]:.4f}")
        self.eta_label.setText(" · ".join(parts))

    def _redraw_plot(self) -> None:
        view = self.ops.view
        self.plot.set_series(*view.series(), val=view.val_series(), now=True)

    def _on_view_reset(self) -> None:
        view = self.ops.view
        self._redraw_plot()
        self.gallery.clear()
        for path, (step, meta) in sorted(view.samples.items(), key=lambda kv: kv[1][0]):
            self.gallery.add(step, path, meta)
        self.checkpoints.set_adapters(view.run_dir, view.adapter_list())
        self._update_buttons()

    def _view_base(self) -> str:
        """The base model of the run shown (its adapters only make sense on it); "" when unknown."""
        config = self.ops.view.config
        return config.base if config is not None else ""

    def _update_view_label(self) -> None:
        """What the plot and gallery show. The run's folder name, not its config name: a second run
        called "shapes_a" lives in shapes_a-2. "(training now)" only while its job runs."""
        view = self.ops.view
        name = Path(view.run_dir).name if view.run_dir else view.name
        live = view.live and self.ops.current is not None
        self.view_label.setText(f"Showing: {name}" + (" (training now)" if live else "") if name else "")

    def _on_adapter(self, step: int, path: str, kind: ArtifactKind) -> None:
        view = self.ops.view
        if view.val_points:  # the best one may have changed: label them all again
            self.checkpoints.set_adapters(view.run_dir, view.adapter_list())
        else:
            self.checkpoints.add(adapter_label(step, kind is ArtifactKind.ADAPTER), path)

    def _show_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setStyleSheet(ERROR_STYLE if error else "")
        self.status_label.setText(text)

    def _update_buttons(self) -> None:
        self._update_view_label()
        current = self.ops.current
        running = current is not None and current.state is EntryState.RUNNING
        self.start_button.setEnabled(current is None)
        self.stop_button.setEnabled(current is not None)
        if current is not None and current.state is EntryState.STOPPING:
            self.stop_button.setText("Stop now")
            self.stop_button.setToolTip(
                "Stop at once (the worker process is ended); only the steps since the last "
                "save are lost, and Resume continues from there."
            )
        else:
            self.stop_button.setText("Stop")
            self.stop_button.setToolTip(
                "Finish the current step, save a checkpoint and the resume state, then "
                "stop; press again to stop at once."
            )
        self.checkpoint_button.setEnabled(running and current.training)
        has_prompts = bool(current and current.config is not None and current.config.sample.prompts)
        self.sample_button.setEnabled(running and current.training and (has_prompts or current.config is None))
        self.try_button.setEnabled(running and current.training)
        self.live_button.setVisible(current is not None and self.ops.view is not self.ops.live_view)
        if current is None and not self.ops.waiting():
            last = self.ops.entries[-1] if self.ops.entries else None
            if last is not None and last.state.final:
                self.eta_label.setText(f"{last.name}: {last.state.value} at step {last.step}.")

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._history_read:
            self._history_read = True
            self.ops.refresh_history()

    def hideEvent(self, event) -> None:  # noqa: N802 - switching tab or closing the window
        super().hideEvent(event)
        self.save_settings()


def compare_defaults(config: TrainConfig | None, run_dir: str) -> dict[str, Any]:
    """GenerateRequest fields for comparing a run's checkpoints: its base and its sample settings."""
    if config is None:
        return {"output_dir": str(Path(run_dir) / "compare") if run_dir else ""}
    sample = config.sample
    prompts = config.sample_prompts()
    return {
        "base": config.base,
        "prompt": prompts[0] if prompts else config.trigger,
        "negative": sample.negative,
        "seed": sample.seed,
        "steps": sample.steps,
        "guidance": sample.guidance,
        "width": sample.width or config.data.resolution,
        "height": sample.height or config.data.resolution,
        "scheduler": sample.scheduler.value,
        "output_dir": str(Path(run_dir) / "compare") if run_dir else "",
    }
