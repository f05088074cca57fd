"""The adapter stack as widgets: one row per adapter, bound to an :class:`AdapterStack`.

A row: enable box, name (and its problem, in red), weight slider -2…2 with a number
box that takes typed values beyond, an optional text-encoder weight, trigger-word chips,
move up/down and remove. ``committed`` fires when the user finishes a change (slider
released, number typed, box ticked, row moved or removed): the live preview renders then.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core import paths
from app.core.configs import WEIGHT_LIMIT
from app.core.families import BlockLayout, spec
from app.ui.generate.adapter_stack import AdapterRow, AdapterStack
from app.ui.generate.blocks_popover import BlocksPopover

SLIDER_SCALE = 100  # slider units per weight unit
SLIDER_LIMIT = 2.0
ADAPTER_FILTER = "Adapters (*.safetensors);;All files (*)"
CHIP_STYLE = (
    "QLabel { border: 1px solid palette(mid); border-radius: 8px; padding: 1px 7px; "
    "background: palette(alternate-base); }"
)
PROBLEM_STYLE = "color: #c62828;"


SAVE_AS = (
    ("kohya", "kohya (A1111, ComfyUI, diffusers)…"),
    ("diffusers", "diffusers…"),
    ("peft", "peft (UNet)…"),
    ("comfy", "ComfyUI's own names…"),
)


class AdapterRowWidget(QFrame):
    committed = Signal()
    saveAsRequested = Signal(str, str, str)  # (adapter file, layout, file to write)

    def __init__(self, stack: AdapterStack, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stack = stack
        self.index = index
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.enabled_box = QCheckBox(self)
        self.enabled_box.setToolTip("Use this adapter (its trigger words join the prompt while it is on).")
        self.name_label = QLabel(self)
        self.name_label.setStyleSheet("font-weight: 600;")
        self.name_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.layers_badge = QLabel(self)  # "92/92 layers", or a warning with the load report as tooltip
        self.problem_label = QLabel(self)
        self.problem_label.setStyleSheet(PROBLEM_STYLE)
        self.problem_label.setWordWrap(True)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(int(-SLIDER_LIMIT * SLIDER_SCALE), int(SLIDER_LIMIT * SLIDER_SCALE))
        self.slider.setSingleStep(5)
        self.slider.setPageStep(25)
        self.slider.setToolTip("Weight: 0 leaves the base model as it is, negative values push away.")
        self.weight_box = QDoubleSpinBox(self)
        self.weight_box.setRange(-WEIGHT_LIMIT, WEIGHT_LIMIT)
        self.weight_box.setDecimals(2)
        self.weight_box.setSingleStep(0.05)
        self.weight_box.setKeyboardTracking(False)
        self.weight_box.setToolTip("Type a weight; values beyond the slider's -2…2 are allowed.")
        self.te_box = QCheckBox("TE", self)
        self.te_box.setToolTip("Give the text encoder its own weight (otherwise it follows the slider).")
        self.te_weight = QDoubleSpinBox(self)
        self.te_weight.setRange(-WEIGHT_LIMIT, WEIGHT_LIMIT)
        self.te_weight.setDecimals(2)
        self.te_weight.setSingleStep(0.05)
        self.te_weight.setKeyboardTracking(False)
        self.te_weight.setToolTip("Text-encoder weight of this adapter.")
        self.up_button = _tool("▲", "Move up", self)
        self.down_button = _tool("▼", "Move down", self)
        self.remove_button = _tool("✕", "Remove from the stack", self)
        self._make_blocks_controls()
        self.menu_button = _tool("⋯", "More: save this adapter in another layout", self)
        self.menu_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.menu_button)
        save_as = menu.addMenu("Save as…")
        self.save_as_actions = {
            layout: save_as.addAction(label, lambda chosen=layout: self._save_as(chosen)) for layout, label in SAVE_AS
        }
        self.menu_button.setMenu(menu)
        self.chips = QHBoxLayout()
        self.chips.setSpacing(4)

        top = QHBoxLayout()
        top.addWidget(self.enabled_box)
        top.addWidget(self.name_label, 1)
        top.addWidget(self.layers_badge)
        top.addWidget(self.te_box)
        top.addWidget(self.te_weight)
        top.addWidget(self.blocks_glyph)
        top.addWidget(self.blocks_button)
        for b in (self.up_button, self.down_button, self.remove_button, self.menu_button):
            top.addWidget(b)
        weights = QHBoxLayout()
        weights.addWidget(self.slider, 1)
        weights.addWidget(self.weight_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addLayout(weights)
        layout.addLayout(self.chips)
        layout.addWidget(self.problem_label)
        self.refresh()

        self.enabled_box.toggled.connect(self._on_enabled)
        self.slider.valueChanged.connect(self._on_slider)
        self.slider.sliderReleased.connect(self.committed)
        self.weight_box.valueChanged.connect(self._on_typed)
        self.te_box.toggled.connect(self._on_te_toggled)
        self.te_weight.valueChanged.connect(self._on_te_typed)
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(+1))
        self.remove_button.clicked.connect(self._remove)

    @property
    def row(self) -> AdapterRow:
        return self.stack.rows[self.index]

    def refresh(self) -> None:
        row = self.row
        editors = (self.enabled_box, self.slider, self.weight_box, self.te_box, self.te_weight)
        for w in editors:
            w.blockSignals(True)  # showing the row's state is not an edit
        self.enabled_box.setChecked(row.enabled)
        self.slider.setValue(round(max(-SLIDER_LIMIT, min(SLIDER_LIMIT, row.weight)) * SLIDER_SCALE))
        self.weight_box.setValue(row.weight)
        self.te_box.setChecked(row.te_weight is not None)
        self.te_weight.setValue(row.weight if row.te_weight is None else row.te_weight)
        self.te_weight.setEnabled(row.te_weight is not None)
        for w in editors:
            w.blockSignals(False)
        self.name_label.setText(row.display_name + (" …" if row.loading else ""))
        self.name_label.setToolTip(row.path)
        self.layers_badge.setText(("⚠ " if row.load_details else "") + row.layers)
        self.layers_badge.setStyleSheet(PROBLEM_STYLE if row.load_details else "color: palette(mid);")
        self.layers_badge.setToolTip(row.load_details or "Every layer and tensor of the file is applied.")
        self.layers_badge.setVisible(bool(row.layers))
        self.problem_label.setText(row.problem)
        self.problem_label.setVisible(bool(row.problem))
        shaped = bool(row.lbw) or row.start > 0.0 or row.stop < 1.0
        self.blocks_glyph.setVisible(shaped)
        span = f"; acts from {row.start:g} to {row.stop:g} of the steps" if row.start > 0.0 or row.stop < 1.0 else ""
        self.blocks_glyph.setToolTip(f"Block weights: {row.lbw or 'every block alike'}{span}")
        if self.blocks_popover is not None:
            self.blocks_popover.set_norms(row.block_norms)
        self._show_blocks_offered()
        self.up_button.setEnabled(self.index > 0)
        self.down_button.setEnabled(self.index < len(self.stack) - 1)
        self._fill_chips(row)

    def chip_texts(self) -> list[str]:
        return [
            self.chips.itemAt(i).widget().text()
            for i in range(self.chips.count())
            if self.chips.itemAt(i).widget() is not None
        ]

    def _fill_chips(self, row: AdapterRow) -> None:
        while self.chips.count():
            item = self.chips.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for word in row.trigger_words:
            chip = QLabel(word, self)
            chip.setStyleSheet(CHIP_STYLE)
            chip.setEnabled(row.enabled)
            chip.setToolTip("Trigger word: added to the prompt while this adapter is enabled.")
            self.chips.addWidget(chip)
        self.chips.addStretch(1)

    # ------------------------------------------------------------ edits
    def _on_enabled(self, on: bool) -> None:
        self.stack.set_enabled(self.index, on)
        self.committed.emit()

    def _on_slider(self, value: int) -> None:
        weight = value / SLIDER_SCALE
        self.weight_box.blockSignals(True)
        self.weight_box.setValue(weight)
        self.weight_box.blockSignals(False)
        self.stack.set_weight(self.index, weight)

    def _on_typed(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(max(-SLIDER_LIMIT, min(SLIDER_LIMIT, value)) * SLIDER_SCALE))
        self.slider.blockSignals(False)
        self.stack.set_weight(self.index, value)
        self.committed.emit()

    def _on_te_toggled(self, on: bool) -> None:
        self.te_weight.setEnabled(on)
        self.stack.set_te_weight(self.index, self.te_weight.value() if on else None)
        self.committed.emit()

    def _on_te_typed(self, value: float) -> None:
        if self.te_box.isChecked():
            self.stack.set_te_weight(self.index, value)
            self.committed.emit()

    def _make_blocks_controls(self) -> None:
        self.blocks_button = _tool("Blocks…", _BLOCKS_TIP, self)
        self.blocks_button.clicked.connect(self.open_blocks)
        self.blocks_glyph = QLabel("▥", self)  # shown when the blocks are not all at 1
        self.blocks_popover: BlocksPopover | None = None

    def _show_blocks_offered(self) -> None:
        """ "Blocks…" only where the family has per-block weights (a new family may have none yet)."""
        family = spec(self.stack.family_of(self.index))
        offered = family.block_layout is not BlockLayout.NONE
        self.blocks_button.setEnabled(offered)
        self.blocks_button.setToolTip(
            _BLOCKS_TIP
            if offered
            else f"{family.label} has no per-block weights yet: the weight applies to every layer alike."
        )

    def open_blocks(self) -> BlocksPopover:
        """The row's "Blocks…" popover, under its button."""
        row = self.row
        popover = BlocksPopover(self.stack.family_of(self.index), row.lbw, row.block_norms, row.start, row.stop, self)
        popover.changed.connect(self._on_blocks)
        popover.spanChanged.connect(self._on_span)
        self.blocks_popover = popover
        popover.move(self.blocks_button.mapToGlobal(self.blocks_button.rect().bottomLeft()))
        popover.show()
        return popover

    def _on_blocks(self, lbw: str) -> None:
        self.stack.set_blocks(self.index, lbw)
        self.committed.emit()

    def _on_span(self, start: float, stop: float) -> None:
        self.stack.set_span(self.index, start, stop)
        self.committed.emit()

    def _move(self, step: int) -> None:
        self.stack.move(self.index, self.index + step)
        self.committed.emit()

    def _remove(self) -> None:
        self.stack.remove(self.index)
        self.committed.emit()

    def _save_as(self, layout: str) -> None:
        src = Path(self.row.path)
        suggested = src.with_name(f"{src.stem}-{layout}.safetensors")
        out, _ = QFileDialog.getSaveFileName(self, f"Save {src.name} as {layout}", str(suggested), ADAPTER_FILTER)
        if out:
            self.saveAsRequested.emit(str(src), layout, out)


class AdapterStackWidget(QWidget):
    committed = Signal()  # the user finished a change to the mix
    saveAsRequested = Signal(str, str, str)  # a row's "Save as…": (adapter file, layout, file to write)
    libraryRequested = Signal()  # "Add from the Library": the window shows the Library tab

    def __init__(self, stack: AdapterStack, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stack = stack
        self.row_widgets: list[AdapterRowWidget] = []
        self.add_button = QToolButton(self)
        self.add_button.setText("Add adapter")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_button.setToolTip("Add a LoRA / LyCORIS adapter to the mix.")
        menu = QMenu(self.add_button)
        self.add_file_action = menu.addAction("From a file…", self.add_from_file)
        self.add_run_action = menu.addAction("From a training run…", self.add_from_run)
        self.add_library_action = menu.addAction("From the Library…", self.libraryRequested.emit)
        self.add_button.setMenu(menu)
        self.empty_label = QLabel("No adapters: the base model alone.", self)
        self.empty_label.setEnabled(False)
        self.rows_layout = QVBoxLayout()
        self.rows_layout.setSpacing(4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.rows_layout)
        layout.addWidget(self.empty_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        stack.rowsChanged.connect(self.rebuild)
        stack.rowChanged.connect(self._refresh_row)
        self.rebuild()

    def rebuild(self) -> None:
        for w in self.row_widgets:
            self.rows_layout.removeWidget(w)
            w.deleteLater()
        self.row_widgets = []
        for i in range(len(self.stack)):
            w = AdapterRowWidget(self.stack, i, self)
            w.committed.connect(self.committed)
            w.saveAsRequested.connect(self.saveAsRequested)
            self.rows_layout.addWidget(w)
            self.row_widgets.append(w)
        self.empty_label.setVisible(not self.row_widgets)

    def _refresh_row(self, index: int) -> None:
        if 0 <= index < len(self.row_widgets):
            self.row_widgets[index].refresh()

    def add_paths(self, files: list[str]) -> None:
        for f in files:
            self.stack.add(f)
        if files:
            self.committed.emit()

    def add_from_file(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add adapters", str(Path.home()), ADAPTER_FILTER)
        self.add_paths(files)

    def add_from_run(self) -> None:
        start = paths.runs_dir()
        files, _ = QFileDialog.getOpenFileNames(
            self, "Add a checkpoint of a training run", str(start if start.is_dir() else Path.home()), ADAPTER_FILTER
        )
        self.add_paths(files)


_BLOCKS_TIP = "A strength per block of the UNet or transformer (and the text encoders)"


def _tool(text: str, tip: str, parent: QWidget) -> QToolButton:
    button = QToolButton(parent)
    button.setText(text)
    button.setToolTip(tip)
    button.setAutoRaise(True)
    return button
