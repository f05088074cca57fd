"""One editor per config setting, made from the setting's type, plus a collapsible group box.

A :class:`Field` knows how to show a value and read it back; reading a value that cannot
be a value (a number field holding "abc") raises :class:`FieldError` naming the field,
so the form can highlight it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import Enum
from typing import Any

from PySide6.QtCore import QLocale, QRegularExpression, Qt
from PySide6.QtGui import QDoubleValidator, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.train.settings_help import HELP, INT_MAX, Setting
from app.ui.widgets.spin_boxes import MultipleSpinBox
from app.ui.widgets.styles import FIELD_ERROR_STYLE

ERROR_STYLE = FIELD_ERROR_STYLE
FOLDER_KEYS = ("output_dir", "cache_dir")


class FieldError(ValueError):
    """A value that cannot be read from its editor; ``key`` says which setting."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def setting(key: str) -> Setting:
    return HELP.get(key) or Setting(key.rsplit(".", 1)[-1].replace("_", " ").capitalize(), "")


def format_float(value: float) -> str:
    """Short and exact enough: 0.0001 -> '0.0001', 1e-05 -> '1e-05', 8.0 -> '8'."""
    return f"{value:.10g}"


class Field:
    """An editor bound to one setting: ``get()``, ``set(value)``, ``on_change(callback)``."""

    def __init__(
        self,
        key: str,
        editor: QWidget,
        get: Callable[[], Any],
        set_: Callable[[Any], None],
        signal: Any,
        row: QWidget | None = None,
    ) -> None:
        self.key = key
        self.editor = editor  # what gets the focus and the red frame
        self.row = row or editor  # what goes into the layout
        self._get = get
        self._set = set_
        self._signal = signal
        info = setting(key)
        self.label = info.label
        self.row.setToolTip(info.tip)
        editor.setToolTip(info.tip)
        editor.setObjectName(f"field:{key}")

    def get(self) -> Any:
        return self._get()

    def set(self, value: Any) -> None:
        self._set(value)

    def on_change(self, callback: Callable[[], None]) -> None:
        self._signal.connect(lambda *_: callback())

    def mark(self, error: bool) -> None:
        self.editor.setStyleSheet(ERROR_STYLE if error else "")


def make_field(key: str, default: Any, parent: QWidget) -> Field:
    """The editor that suits ``default``'s type (bool, Enum, int, float, str or list of str)."""
    info = setting(key)
    if isinstance(default, bool):
        box = QCheckBox(parent)
        return Field(key, box, box.isChecked, lambda v: box.setChecked(bool(v)), box.toggled)
    if isinstance(default, Enum):
        combo = QComboBox(parent)
        for member in type(default):
            combo.addItem(str(member.value), member.value)
        return Field(key, combo, combo.currentData, lambda v: _select(combo, _plain(v)), combo.currentIndexChanged)
    if isinstance(default, int):
        return _int_field(key, info, parent)
    if isinstance(default, float):
        return _float_field(key, info, parent)
    if isinstance(default, list):
        edit = QPlainTextEdit(parent)
        edit.setTabChangesFocus(True)
        edit.setFixedHeight(64)
        edit.setPlaceholderText("one per line")
        return Field(
            key,
            edit,
            lambda: [ln.strip() for ln in edit.toPlainText().splitlines() if ln.strip()],
            lambda v: edit.setPlainText("\n".join(str(x) for x in (v or []))),
            edit.textChanged,
        )
    line = QLineEdit(parent)
    if key in FOLDER_KEYS:
        return _folder_field(key, line, parent)
    return Field(key, line, line.text, lambda v: line.setText("" if v is None else str(v)), line.textChanged)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _select(combo: QComboBox, value: Any) -> None:
    index = combo.findData(value)
    if index < 0:  # a value the combo does not list yet (a newer config): keep it selectable
        combo.addItem(str(value), value)
        index = combo.count() - 1
    combo.setCurrentIndex(index)


def _int_field(key: str, info: Setting, parent: QWidget) -> Field:
    low = int(info.minimum) if info.minimum is not None else 0
    high = int(info.maximum) if info.maximum is not None else INT_MAX
    if info.choices:
        combo = QComboBox(parent)
        for value in info.choices:
            combo.addItem(str(value), value)
        return Field(key, combo, combo.currentData, lambda v: _select(combo, int(v)), combo.currentIndexChanged)
    if high > INT_MAX or low < -INT_MAX:  # seeds: beyond a QSpinBox's 32 bits
        line = QLineEdit(parent)
        line.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,20}"), line))

        def get() -> int:
            text = line.text().strip()
            if not text:
                raise FieldError(key, f"{info.label} is empty: give a whole number")
            value = int(text)
            if not low <= value <= high:
                raise FieldError(key, f"{info.label} = {value} must be between {low} and {high}")
            return value

        return Field(key, line, get, lambda v: line.setText(str(int(v))), line.textChanged)
    spin = MultipleSpinBox(info.multiple, parent) if info.multiple else QSpinBox(parent)
    spin.setRange(low, high)
    if info.suffix:
        spin.setSuffix(info.suffix)
    spin.setKeyboardTracking(False)
    spin.setMinimumWidth(90)
    return Field(key, spin, spin.value, lambda v: spin.setValue(int(v)), spin.valueChanged)


def _float_field(key: str, info: Setting, parent: QWidget) -> Field:
    line = QLineEdit(parent)
    low = info.minimum if info.minimum is not None else -1e30
    high = info.maximum if info.maximum is not None else 1e30
    validator = QDoubleValidator(low, high, 12, line)
    validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
    validator.setLocale(QLocale.c())  # "1e-4" and "0.5" everywhere, never "0,5"
    line.setValidator(validator)
    line.setMaximumWidth(140)

    def get() -> float:
        text = line.text().strip()
        try:
            value = float(text)
        except ValueError:
            raise FieldError(key, f"{info.label} = {text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise FieldError(key, f"{info.label} = {text} must be between {format_float(low)} and {format_float(high)}")
        return value

    return Field(key, line, get, lambda v: line.setText(format_float(float(v))), line.textChanged)


def _folder_field(key: str, line: QLineEdit, parent: QWidget) -> Field:
    row = QWidget(parent)
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(line, 1)
    browse = QToolButton(row)
    browse.setText("…")
    browse.setToolTip("Choose a folder.")
    layout.addWidget(browse)
    line.setPlaceholderText("default")

    def choose() -> None:
        folder = QFileDialog.getExistingDirectory(row, setting(key).label, line.text() or "")
        if folder:
            line.setText(folder)

    browse.clicked.connect(choose)
    return Field(key, line, line.text, lambda v: line.setText(str(v or "")), line.textChanged, row=row)


class Collapsible(QWidget):
    """A header button that shows or hides a form of settings (closed at first)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton(self)
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.toggle.setStyleSheet("QToolButton { font-weight: bold; text-align: left; }")
        self.body = QWidget(self)
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(18, 0, 0, 6)
        self.body.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.toggle.toggled.connect(self.set_open)

    def set_open(self, open_: bool) -> None:
        self.toggle.blockSignals(True)
        self.toggle.setChecked(open_)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.body.setVisible(open_)

    def is_open(self) -> bool:
        return self.body.isVisibleTo(self)

    def add(self, field: Field) -> None:
        self.form.addRow(field.label, field.row)
        label = self.form.labelForField(field.row)
        if label is not None:
            label.setToolTip(setting(field.key).tip)
