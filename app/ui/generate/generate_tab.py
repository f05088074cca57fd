"""The Generate tab: settings on the left, the picture on the right.

The widget only binds controls to a :class:`GenerateModel`; it never talks to the
worker nor parses protocol events.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.core.configs import ConfigError, GenerateRequest, Scheduler
from app.core.families import FAMILIES
from app.ui.common.tasks import TaskRunner
from app.ui.generate.adapter_rows import AdapterStackWidget
from app.ui.generate.family_fit import apply_fit
from app.ui.generate.generate_ops import GenerateModel
from app.ui.generate.history_strip import HistoryStrip
from app.ui.generate.tab_actions import TabActions
from app.ui.widgets.action_bar import action_bar
from app.ui.widgets.image_preview import ImagePreview
from app.ui.widgets.model_picker import ModelPicker
from app.ui.widgets.spin_boxes import MultipleSpinBox
from app.ui.widgets.styles import FIELD_ERROR_STYLE

SEED_MAX = 2**31 - 1  # QSpinBox is 32-bit; the worker draws random seeds below this too
ERROR_STYLE = "color: #c62828;"
NOTE_STYLE = "color: #b26a00;"
# Size presets per family (the sizes each family was trained at), shown as "SD 1.x · 512 × 768".
SIZE_PRESETS = [("Tiny test model", 64, 64)] + [(f.label, w, h) for f in FAMILIES for w, h in f.size_presets]


class GenerateTab(TabActions, QWidget):
    def __init__(self, model: GenerateModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._build()
        self._connect()
        self.apply_request(model.load_settings())

    # ------------------------------------------------------------ layout

    def _build(self) -> None:
        self._build_prompt_fields()
        form = self._build_settings_form()
        buttons = self._build_action_widgets()
        column, left_width = self._build_left_column(form, buttons)
        right = self._build_picture_side()

        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(column)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([left_width, 740])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    def _build_prompt_fields(self) -> None:
        self.model_picker = ModelPicker(self.model.recent, self)

        self.prompt = QPlainTextEdit(self)
        self.prompt.setPlaceholderText("What the picture shows, e.g. a red fox in the snow, watercolour")
        self.prompt.setToolTip("The text the picture is made from.")
        self.prompt.setTabChangesFocus(True)
        self.prompt.setFixedHeight(70)
        self.negative = QPlainTextEdit(self)
        self.negative.setPlaceholderText("What to avoid, e.g. blurry, text, watermark")
        self.negative.setToolTip("Text describing what the picture should not contain.")
        self.negative.setTabChangesFocus(True)
        self.negative.setFixedHeight(46)

    def _build_settings_form(self) -> QFormLayout:
        self.seed = QSpinBox(self)
        self.seed.setRange(0, SEED_MAX)
        self.seed.setToolTip("The random seed; the same seed and settings give the same picture.")
        self.seed_lock = QCheckBox("Lock", self)
        self.seed_lock.setToolTip("Keep this seed for every render; unlocked, each render draws a new one.")
        self.steps = QSpinBox(self)
        self.steps.setRange(1, 500)
        self.steps.setToolTip("Number of sampling steps: more is slower and usually a little cleaner.")
        self.guidance = QDoubleSpinBox(self)
        self.guidance.setRange(0.0, 50.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance.setToolTip("How strongly the picture follows the prompt (CFG scale); 5–9 is typical.")
        self.width_box = MultipleSpinBox(8, self)
        self.height_box = MultipleSpinBox(8, self)
        for box, what in ((self.width_box, "Width"), (self.height_box, "Height")):
            box.setRange(64, 4096)
            box.setSuffix(" px")
            box.setToolTip(f"{what} of the picture in pixels, a multiple of 8.")
        self.scheduler = QComboBox(self)
        self.scheduler.addItems([s.value for s in Scheduler])
        self.scheduler.setToolTip("The sampler that turns noise into the picture step by step.")
        self.size_preset = QComboBox(self)
        self.size_preset.addItem("Preset…")
        for family, w, h in SIZE_PRESETS:
            self.size_preset.addItem(f"{family} · {w} × {h}", (w, h))
        self.size_preset.setToolTip("Sizes each model family was trained at.")
        self.batch = QSpinBox(self)
        self.batch.setRange(1, 16)
        self.batch.setToolTip("How many pictures one Generate makes (a locked seed counts up).")

        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.seed_lock)
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_box, 1)
        size_row.addWidget(QLabel("×", self))
        size_row.addWidget(self.height_box, 1)
        size_row.addWidget(self.size_preset)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        form.addRow("Seed", seed_row)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Size", size_row)
        form.addRow("Sampler", self.scheduler)
        form.addRow("Batch", self.batch)
        return form

    def _build_action_widgets(self) -> QHBoxLayout:
        """Generate, Cancel (returned in their row), the progress bar and the status/error lines."""
        self.generate_button = QPushButton("Generate", self)
        self.generate_button.setDefault(True)
        self.generate_button.setMinimumHeight(34)
        self.generate_button.setToolTip("Render a picture with these settings (Ctrl+Enter).")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setMinimumHeight(34)
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop the render in progress after the current step.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")
        self.progress.setTextVisible(True)
        self.status_label = QLabel("Ready.", self)
        self.status_label.setWordWrap(True)
        self.error_label = QLabel("", self)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setVisible(False)
        return buttons

    def _build_left_column(self, form: QFormLayout, buttons: QHBoxLayout) -> tuple[QWidget, int]:
        """The scrolled settings above the fixed action bar; returns it and its minimum width."""
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(10, 10, 10, 10)
        left_layout.setSpacing(8)
        base_box = _group("Base model", self.model_picker)
        self.base_error = QLabel("", self)  # a required field left empty says so here too
        self.base_error.setWordWrap(True)
        self.base_error.setStyleSheet(ERROR_STYLE)
        self.base_error.setVisible(False)
        base_box.layout().addWidget(self.base_error)
        left_layout.addWidget(base_box)
        prompt_box = QGroupBox("Prompt", self)
        prompt_layout = QVBoxLayout(prompt_box)
        prompt_layout.addWidget(self.prompt)
        self.trigger_label = QLabel("", self)
        self.trigger_label.setWordWrap(True)
        self.trigger_label.setToolTip("Trigger words of the enabled adapters, put in front of the prompt.")
        prompt_layout.addWidget(self.trigger_label)
        prompt_layout.addWidget(QLabel("Negative prompt", self))
        prompt_layout.addWidget(self.negative)
        left_layout.addWidget(prompt_box)
        left_layout.addWidget(self._build_adapters())
        settings_box = QGroupBox("Settings", self)
        settings_box.setLayout(form)
        left_layout.addWidget(settings_box)
        left_layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Never narrower than the controls: with the horizontal bar off they would be clipped.
        left_width = left.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(left_width)
        # The action bar stays below the scrolled settings: Generate, Cancel, progress and
        # the status/error line are always in view, whatever the window height.
        self.action_bar = action_bar(
            self, [buttons, self.progress, self.status_label, self.error_label], margins=(10, 4, 10, 8)
        )
        column = QWidget(self)
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        column_layout.setSpacing(0)
        column_layout.addWidget(scroll, 1)
        column_layout.addWidget(self.action_bar)
        return column, left_width

    def _build_picture_side(self) -> QSplitter:
        """The picture with its info line and buttons, above the history strip."""
        self.preview = ImagePreview(self)
        self.image_info = QLabel("", self)
        self.image_info.setWordWrap(True)
        self.image_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.image_info.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(4, 10, 10, 10)
        self.freshness = QLabel("", self)
        self.freshness.setStyleSheet(NOTE_STYLE)
        self.ab_button = QPushButton("Hold: without adapters", self)
        self.ab_button.setToolTip("Hold to see the same picture made by the base model alone (A/B).")
        self.save_button = QPushButton("Save PNG…", self)
        self.save_button.setToolTip("Save the picture with its settings (prompt, seed, adapters) inside.")
        self.save_button.setEnabled(False)
        top_row = QHBoxLayout()
        top_row.addWidget(self.freshness, 1)
        top_row.addWidget(self.ab_button)
        top_row.addWidget(self.save_button)
        self.history = HistoryStrip(self)
        right_layout.addLayout(top_row)
        right_layout.addWidget(self.preview, 1)
        right_layout.addWidget(self.image_info)
        # The history strip sits in a splitter so a short window can fold it away.
        right_split = QSplitter(Qt.Orientation.Vertical, self)
        right_split.addWidget(right)
        right_split.addWidget(self.history)
        right_split.setCollapsible(0, False)
        right_split.setStretchFactor(0, 1)
        return right_split

    def _build_adapters(self) -> QGroupBox:
        self.stack_widget = AdapterStackWidget(self.model.stack, self)
        self.live = QCheckBox("Live preview", self)
        self.live.setChecked(True)
        self.live.setToolTip("Re-render with the locked seed when a slider is released or a weight is typed.")
        self.xy_button = QPushButton("XY grid…", self)
        self.xy_button.setToolTip("A grid of pictures over the weights of two adapters.")
        self.bake_button = QPushButton("Bake…", self)
        self.bake_button.setToolTip("Merge the current mix into one adapter file (kohya layout).")
        row = QHBoxLayout()
        row.addWidget(self.live, 1)
        row.addWidget(self.xy_button)
        row.addWidget(self.bake_button)
        box = QGroupBox("Adapters", self)
        layout = QVBoxLayout(box)
        layout.addWidget(self.stack_widget)
        layout.addLayout(row)
        self.runner = TaskRunner(max_threads=2, parent=self)
        self.setAcceptDrops(True)
        self._ab_held = False
        self._ab_waiting = False  # A/B asked for: show the base picture when it arrives
        self._ab_shown = False  # the base picture is on show while the button is held
        self._live_pending = False  # a live render waits for a new row's header
        return box

    def _connect(self) -> None:
        self.generate_button.clicked.connect(self.generate)
        self.stack_widget.committed.connect(self._on_mix_committed)
        self.model.stack.rowChanged.connect(self._on_row_changed)
        self.model.stack.mixChanged.connect(self._update_triggers)
        self.model.stack.message.connect(self.status_label.setText)
        self.model.historyChanged.connect(lambda: self.history.set_history(self.model.history))
        self.model.baseImageReady.connect(self._on_base_image)
        self.model.bakeFinished.connect(self._on_baked)
        self.stack_widget.saveAsRequested.connect(self.save_adapter_as)
        self.model.savedAs.connect(self._on_baked)  # the same: status line, or the error line
        self.history.picked.connect(self._show_picture)
        self.ab_button.pressed.connect(self._ab_pressed)
        self.ab_button.released.connect(self._ab_released)
        self.save_button.clicked.connect(self.choose_save_path)
        self.bake_button.clicked.connect(self.choose_bake)
        self.xy_button.clicked.connect(self.open_xy_grid)
        self.size_preset.activated.connect(self._apply_preset)
        self.model.familyFitted.connect(lambda fit, new: apply_fit(self, fit, new))
        self.prompt.textChanged.connect(self._update_triggers)
        for signal in (
            self.negative.textChanged,
            self.seed.valueChanged,
            self.steps.valueChanged,
            self.guidance.valueChanged,
            self.width_box.valueChanged,
            self.height_box.valueChanged,
            self.scheduler.currentIndexChanged,
            self.model.busyChanged,
            self.model.imageReady,
        ):
            signal.connect(self._update_freshness)
        self.cancel_button.clicked.connect(self.model.cancel)
        self.seed_lock.toggled.connect(self.seed.setEnabled)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, activated=self.generate)
        self.model.busyChanged.connect(self._on_busy)
        self.model.progressChanged.connect(self._on_progress)
        self.model.imageReady.connect(self._on_image)
        self.model.statusChanged.connect(self.status_label.setText)
        self.model.errorChanged.connect(self._show_error)

    # ------------------------------------------------------------ binding

    def values(self) -> dict[str, Any]:
        """The form as GenerateRequest fields (validated by the model, not here).

        The prompt is the one typed: the model adds the trigger words of the enabled adapters
        to the request it renders, and never to the settings it saves.
        """
        values = {
            "base": self.model_picker.text(),
            "prompt": self.prompt.toPlainText().strip(),
            "negative": self.negative.toPlainText().strip(),
            "seed": self.seed.value() if self.seed_lock.isChecked() else -1,
            "steps": self.steps.value(),
            "guidance": round(self.guidance.value(), 2),
            "width": self.width_box.value(),
            "height": self.height_box.value(),
            "scheduler": self.scheduler.currentText(),
        }
        if len(self.model.stack):
            values["adapters"] = self.model.stack.entries()
        return values

    def apply_request(self, request: GenerateRequest) -> None:
        self.model_picker.setText(request.base)
        self.prompt.setPlainText(request.prompt)
        self.negative.setPlainText(request.negative)
        locked = request.seed >= 0
        if locked:
            self.seed.setValue(min(request.seed, SEED_MAX))
        self.seed_lock.setChecked(locked)
        self.seed.setEnabled(locked)
        self.steps.setValue(request.steps)
        self.guidance.setValue(request.guidance)
        self.width_box.setValue(request.width)
        self.height_box.setValue(request.height)
        self.scheduler.setCurrentText(Scheduler(request.scheduler).value)
        self.model.stack.set_rows(request.adapters)

    def save_settings(self) -> None:
        """Remember the form as it is (when valid), e.g. when the window closes."""
        try:
            self.model.save_settings(self.model.settings_of(self.values()))
        except ConfigError:
            pass  # an incomplete form is not worth keeping over the last good one

    # ------------------------------------------------------------ actions

    def generate(self) -> None:
        # Spin boxes commit typed text only on focus loss; take what is shown now.
        for box in (self.seed, self.steps, self.guidance, self.width_box, self.height_box):
            box.interpretText()
        self._mark_field("")
        try:
            self.model.generate(self.values(), count=self.batch.value())
        except ConfigError as exc:
            self._show_error(str(exc))
            self._mark_field(str(exc))

    def _mark_field(self, message: str) -> None:
        """Outline the field a ConfigError names (its message starts with the field), or clear the marks."""
        fields = {
            "base": self.model_picker.combo,
            "seed": self.seed,
            "steps": self.steps,
            "guidance": self.guidance,
            "width": self.width_box,
            "height": self.height_box,
            "scheduler": self.scheduler,
        }
        named = message.split(" ", 1)[0]
        for key, widget in fields.items():
            widget.setStyleSheet(FIELD_ERROR_STYLE if key == named else "")
        if named in fields:
            fields[named].setFocus()
        self.base_error.setText(message if named == "base" else "")
        self.base_error.setVisible(named == "base")

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress.setRange(0, 0)  # indeterminate until the first step (model loading)
        elif self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _on_progress(self, step: int, total: int, eta_s: object) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(step)

    def _on_image(self, path: str, meta: dict) -> None:
        self.save_button.setEnabled(True)
        if self._ab_held:
            return  # the A/B button shows the base picture until it is let go
        self._ab_waiting = self._ab_shown = False  # a newer picture wins over a late A side
        self._show_picture(path, meta)

    def _show_picture(self, path: str, meta: dict) -> None:
        error = self.preview.load(path)
        if error:
            self._show_error(error)
            return
        seed = meta.get("seed")
        if isinstance(seed, int) and not self.seed_lock.isChecked() and 0 <= seed <= SEED_MAX:
            self.seed.setValue(seed)  # lock it to keep this picture's seed
        parts = []
        if seed is not None:
            parts.append(f"Seed {seed}")
        if meta.get("steps"):
            parts.append(f"{meta['steps']} steps")
        if meta.get("width") and meta.get("height"):
            parts.append(f"{meta['width']}×{meta['height']}")
        if meta.get("scheduler"):
            parts.append(str(meta["scheduler"]))
        self.image_info.setText(" · ".join(parts) + f"\n{path}")

    # ------------------------------------------------------------ adapters and live preview

    def _on_mix_committed(self) -> None:
        self._update_triggers()
        if not (self.live.isChecked() and self.model_picker.text().strip()):
            return
        if any(row.loading for row in self.model.stack.rows):
            # A new row's header (its trigger words) is still being read: render once it is,
            # so the preview shows the prompt the mix really has, not a superseded one.
            self._live_pending = True
            return
        self.preview_now()

    def _on_row_changed(self, _index: int) -> None:
        if self._live_pending and not any(row.loading for row in self.model.stack.rows):
            self._live_pending = False
            self._on_mix_committed()

    def preview_now(self) -> None:
        """Re-render with the locked seed (locking the last picture's seed if needed)."""
        if not self.seed_lock.isChecked():
            seed = self.model.last_meta.get("seed")
            if isinstance(seed, int) and 0 <= seed <= SEED_MAX:
                self.seed.setValue(seed)
            self.seed_lock.setChecked(True)
        self.generate()

    def _update_triggers(self) -> None:
        words = self.model.stack.trigger_words()
        self.trigger_label.setText(f"Trigger words added: {', '.join(words)}" if words else "")
        self.trigger_label.setVisible(bool(words))
        self._update_freshness()

    def _update_freshness(self, *_: object) -> None:
        if self.model.busy:
            text = "Rendering… the picture shown was made from earlier settings."
        elif self.model.shown_params and not self.model.is_current(self.values()):
            text = "Settings changed since this picture was made."
        else:
            text = ""
        self.freshness.setText(text)

    def add_adapter(self, path: str) -> None:
        """Add an adapter to the stack (the Library's "Add to mix")."""
        self.stack_widget.add_paths([path])

    def _show_error(self, message: str) -> None:
        first_line = message.strip().splitlines()[0] if message.strip() else ""
        self.error_label.setText(first_line)
        self.error_label.setToolTip(message)
        self.error_label.setVisible(bool(first_line))


def _group(title: str, widget: QWidget) -> QGroupBox:
    box = QGroupBox(title, widget.parentWidget())
    layout = QVBoxLayout(box)
    layout.addWidget(widget)
    return box
