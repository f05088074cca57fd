"""The "Blocks…" popover of an adapter row: a strength per block of the UNet (and BASE, the text encoder).

A preset combo (the LoRA Block Weight extension's presets and the user's own), a compact
strip of bar sliders labelled IN / MID / OUT with the family's block names as tooltips, a
faint bar under each slider showing how much the adapter changes that block (‖ΔW‖, from
the worker's report after a render), reset, copy and paste as text, save as a preset, and
the part of the steps the adapter acts in. ``changed`` carries the new spec when the user
finishes an edit; turning specs into vectors is :mod:`app.core.block_weights`' work.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.core import block_weights
from app.core.families import Family, spec
from app.ui.common.tasks import TaskRunner

SCALE = 100  # slider units per unit of block factor
RANGE = 2.0  # the sliders run from -2 to 2 (typed or pasted values may go to ±10)
CUSTOM = "Custom"
UNIFORM = "Every block alike"


class NormBar(QWidget):
    """A faint bar: how much the adapter changes one block, relative to its strongest block."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fraction = 0.0
        self.setFixedSize(14, 16)

    def set_fraction(self, fraction: float) -> None:
        self.fraction = max(0.0, min(1.0, fraction))
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt's name
        if self.fraction <= 0.0:
            return
        painter = QPainter(self)
        color = QColor(self.palette().mid().color())
        color.setAlpha(110)
        h = self.height() * self.fraction
        painter.fillRect(QRectF(2, self.height() - h, self.width() - 4, h), color)
        painter.end()


def _group(block: str) -> str:
    """IN05 -> IN, MID -> MID: the label a run of sliders shares."""
    return re.sub(r"\d+$", "", block) or block


class BlocksPopover(QFrame):
    changed = Signal(str)  # the new block-weight spec ("" for every block alike)
    spanChanged = Signal(float, float)  # (start, stop) as fractions of the steps
    message = Signal(str)  # a problem to show (a pasted text that is no spec, a preset not saved)

    def __init__(
        self,
        family: Family,
        lbw: str,
        norms: dict[str, float],
        start: float = 0.0,
        stop: float = 1.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.family = family
        self.blocks = spec(family).blocks
        self.runner = TaskRunner(max_threads=1, parent=self)
        self.norms: dict[str, float] = {}
        self.problem = QLabel(self)
        self.problem.setStyleSheet("color: #c62828;")
        self.problem.setWordWrap(True)
        self.problem.hide()
        self.message.connect(self._show_problem)
        try:
            self.user = block_weights.load_user_presets()
        except block_weights.BlockWeightError as exc:
            self.user = {}
            self.message.emit(str(exc))
        self.preset = QComboBox(self)
        self.preset.setToolTip("A preset of the LoRA Block Weight extension, or one of yours.")
        self.reset_button = QPushButton("Reset", self)
        self.reset_button.setToolTip("Every block at 1: the adapter's weight as it is.")
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the block weights as text (1,0,0.5,…), as lbw= takes them.")
        self.paste_button = QPushButton("Paste", self)
        self.paste_button.setToolTip(
            "Paste block weights: numbers (17 or 26 for SD, 12 or 20 for SDXL) or a preset name."
        )
        self.save_button = QPushButton("Save preset…", self)
        self.save_button.setToolTip("Keep these block weights as a preset of your own (block_presets.toml).")
        self.sliders: list[QSlider] = []
        self.bars: list[NormBar] = []
        strip = QGridLayout()
        strip.setHorizontalSpacing(1)
        strip.setVerticalSpacing(1)
        self._build_strip(strip)
        self.start_box, self.stop_box = self._fraction_box(start), self._fraction_box(stop)
        self.start_box.setToolTip("The adapter's UNet part starts acting at this fraction of the steps.")
        self.stop_box.setToolTip("…and stops at this fraction (1: to the last step).")

        top = QHBoxLayout()
        top.addWidget(self.preset, 1)
        for b in (self.reset_button, self.copy_button, self.paste_button, self.save_button):
            top.addWidget(b)
        span = QHBoxLayout()
        span.addWidget(QLabel("Acts from", self))
        span.addWidget(self.start_box)
        span.addWidget(QLabel("to", self))
        span.addWidget(self.stop_box)
        span.addWidget(QLabel("of the steps", self))
        span.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addLayout(top)
        layout.addLayout(strip)
        layout.addLayout(span)
        layout.addWidget(self.problem)

        self._fill_presets()
        self.set_spec(lbw)
        self.set_norms(norms)
        self.preset.activated.connect(self._on_preset)
        self.reset_button.clicked.connect(lambda: self._apply(""))
        self.copy_button.clicked.connect(self.copy)
        self.paste_button.clicked.connect(lambda: self.paste(QApplication.clipboard().text()))
        self.save_button.clicked.connect(self._ask_preset_name)
        self.start_box.editingFinished.connect(self._on_span)
        self.stop_box.editingFinished.connect(self._on_span)

    # ------------------------------------------------------------ building
    def _build_strip(self, strip: QGridLayout) -> None:
        for i, block in enumerate(self.blocks):
            if i == 0 or _group(block) != _group(self.blocks[i - 1]):
                run = sum(1 for _ in _run_of(self.blocks, i))
                label = QLabel(_group(block), self)
                label.setAlignment(Qt.AlignmentFlag.AlignCenter)
                label.setStyleSheet("color: palette(mid); font-size: 10px;")
                strip.addWidget(label, 0, i, 1, run)
            slider = QSlider(Qt.Orientation.Vertical, self)
            slider.setRange(int(-RANGE * SCALE), int(RANGE * SCALE))
            slider.setSingleStep(5)
            slider.setPageStep(25)
            slider.setFixedHeight(84)
            slider.sliderReleased.connect(self._commit)
            slider.valueChanged.connect(lambda _v, i=i: self._on_slider(i))
            bar = NormBar(self)
            strip.addWidget(slider, 1, i, Qt.AlignmentFlag.AlignHCenter)
            strip.addWidget(bar, 2, i, Qt.AlignmentFlag.AlignHCenter)
            self.sliders.append(slider)
            self.bars.append(bar)

    def _fraction_box(self, value: float) -> QDoubleSpinBox:
        box = QDoubleSpinBox(self)
        box.setRange(0.0, 1.0)
        box.setDecimals(2)
        box.setSingleStep(0.05)
        box.setKeyboardTracking(False)
        box.setValue(value)
        return box

    def _fill_presets(self) -> None:
        self.preset.clear()
        self.preset.addItem(UNIFORM)
        self.preset.addItems(block_weights.presets_for(self.family, self.user))
        self.preset.addItem(CUSTOM)

    # ------------------------------------------------------------ state
    def values(self) -> tuple[float, ...]:
        return tuple(s.value() / SCALE for s in self.sliders)

    def spec(self) -> str:
        return block_weights.spec_of(self.values(), self.family, self.user)

    def set_spec(self, lbw: str) -> None:
        """Show ``lbw`` on the sliders (a spec that does not parse shows every block at 1)."""
        try:
            values = block_weights.vector(lbw, self.family, self.user) or (1.0,) * len(self.blocks)
        except block_weights.BlockWeightError as exc:
            self.message.emit(str(exc))
            values = (1.0,) * len(self.blocks)
        for slider, value in zip(self.sliders, values):
            slider.blockSignals(True)
            slider.setValue(round(max(-RANGE, min(RANGE, value)) * SCALE))
            slider.blockSignals(False)
        for i in range(len(self.sliders)):
            self._tip(i)
        self._show_preset()

    def set_norms(self, norms: dict[str, float]) -> None:
        """The faint bars: each block's ‖ΔW‖ against the largest (nothing known yet: no bars)."""
        top = max(norms.values(), default=0.0)
        for i, block in enumerate(self.blocks):
            self.bars[i].set_fraction(norms.get(block, 0.0) / top if top > 0 else 0.0)
            self.bars[i].setToolTip(f"{block}: the adapter changes it by ‖ΔW‖ = {norms.get(block, 0.0):.3g}")
        self.norms = dict(norms)
        for i in range(len(self.sliders)):
            self._tip(i)

    def _tip(self, i: int) -> None:
        block = self.blocks[i]
        norm = self.norms.get(block)
        where = "the text encoder" if block == "BASE" else f"UNet block {block}"
        extra = f"; it changes this block by ‖ΔW‖ = {norm:.3g}" if norm is not None else ""
        self.sliders[i].setToolTip(f"{block} ({where}): {self.sliders[i].value() / SCALE:g}{extra}")

    def _show_preset(self) -> None:
        current = self.spec()
        index = self.preset.findText(current if current else UNIFORM)
        self.preset.setCurrentIndex(index if index >= 0 else self.preset.count() - 1)

    # ------------------------------------------------------------ edits
    def _on_slider(self, i: int) -> None:
        self._tip(i)
        if not self.sliders[i].isSliderDown():  # a key press or wheel step: a finished edit
            self._commit()

    def _commit(self) -> None:
        self._show_preset()
        self.problem.hide()
        self.changed.emit(self.spec())

    def _apply(self, lbw: str) -> None:
        self.set_spec(lbw)
        self._commit()

    def _on_preset(self, index: int) -> None:
        text = self.preset.itemText(index)
        if text == UNIFORM:
            self._apply("")
        elif text != CUSTOM:
            self._apply(text)

    def copy(self) -> str:
        text = block_weights.format_vector(self.values())
        QApplication.clipboard().setText(text)
        return text

    def paste(self, text: str) -> bool:
        """Take block weights from text (numbers or a preset name); a bad text is named, nothing changes."""
        try:
            block_weights.vector(text.strip(), self.family, self.user)
        except block_weights.BlockWeightError as exc:
            self.message.emit(str(exc))
            return False
        self._apply(text.strip())
        return True

    def _on_span(self) -> None:
        start, stop = self.start_box.value(), self.stop_box.value()
        if start >= stop:
            self.message.emit(f"start {start:g} must come before stop {stop:g}")
            return
        self.problem.hide()
        self.spanChanged.emit(start, stop)

    def _ask_preset_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Save block weights", "Preset name:")
        if ok and name.strip():
            self.save_preset(name.strip())

    def save_preset(self, name: str) -> int:
        """Write the sliders as a user preset (on the thread pool); the combo lists it once written."""
        values = self.values()

        def done(_result) -> None:
            self.user[name] = block_weights.format_vector(values)
            self._fill_presets()
            self._show_preset()

        return self.runner.run(
            lambda: block_weights.save_user_preset(name, values), done, lambda _kind, msg: self.message.emit(msg)
        )

    def _show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()


def _run_of(blocks: tuple[str, ...], i: int):
    """The blocks from ``i`` on that share its group label."""
    group = _group(blocks[i])
    for block in blocks[i:]:
        if _group(block) != group:
            return
        yield block
