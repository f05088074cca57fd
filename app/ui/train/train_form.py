"""The form over a TrainConfig: base model, datasets, preset, the essentials, Advanced groups.

Every field of TrainConfig has an editor (made from its type in :mod:`form_fields`), so a
config shown and read back is the same config: nothing is dropped on save. Reading the
form validates it through TrainConfig itself; an error highlights the field it names.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core import model_choice
from app.core.configs import ConfigError
from app.core.train_config import _SECTIONS, SettingProblem, TrainConfig, load_preset, setting_problems
from app.core.train_presets import base_family, presets_for
from app.ui.recent_models import RecentModels
from app.ui.train.datasets_panel import DatasetsPanel
from app.ui.train.form_fields import ERROR_STYLE as FIELD_ERROR_STYLE
from app.ui.train.form_fields import Collapsible, Field, FieldError, make_field, setting
from app.ui.train.settings_help import ADVANCED, ESSENTIALS, SPECIAL
from app.ui.widgets.model_picker import ModelPicker

ERROR_STYLE = "color: #c62828;"
NO_PRESET = "(none)"
# Kept from the form when a preset is picked: what a preset cannot know.
KEPT_BY_PRESET = ("name", "base", "trigger", "datasets", "output_dir", "cache_dir", "device")


class FormError(ValueError):
    """The form does not hold a valid config; ``key`` is the setting to highlight ("" for none)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def config_keys() -> list[tuple[str, Any]]:
    """Every setting of TrainConfig as (key, default value), top level first, then each table."""
    out: list[tuple[str, Any]] = []
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in _SECTIONS or f.name in SPECIAL:
            continue
        out.append((f.name, getattr(defaults, f.name)))
    for section, cls in _SECTIONS.items():
        instance = cls()
        for f in dataclasses.fields(cls):
            if f.name != "version":
                out.append((f"{section}.{f.name}", getattr(instance, f.name)))
    return out


def error_key(message: str) -> tuple[str, str]:
    """(setting key, message without the "config [table]:" prefix) of a ConfigError from the form."""
    found = re.match(r"^config \[(\w+)\]: (\w+)", message)
    if found:
        return f"{found.group(1)}.{found.group(2)}", message.split(": ", 1)[1]
    found = re.match(r"^config \[\[datasets\]\] #\d+: ", message)
    if found:
        return "datasets", message
    found = re.match(r"^(\w+)", message)
    return (found.group(1) if found else ""), message


class TrainForm(QWidget):
    changed = Signal()  # any value changed (for the epochs label and the saved settings)

    def __init__(self, recent: RecentModels, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loaded = TrainConfig()
        self.problem: SettingProblem | None = None  # settings that cannot work, found by ready_config
        self.fields: dict[str, Field] = {}
        self.groups: dict[str, Collapsible] = {}
        self._group_of: dict[str, Collapsible] = {}

        self.model_picker = ModelPicker(recent, self)
        self.model_picker.combo.setToolTip(setting("base").tip)
        self.model_picker.modelChanged.connect(lambda _t: self.changed.emit())
        self.preset = QComboBox(self)
        self._fill_presets("")
        self.model_picker.modelChanged.connect(self._fill_presets)
        self.preset.setToolTip(
            "Start from tuned settings for a character or a style; your model, datasets, name and trigger stay."
        )
        self.preset.activated.connect(lambda _i: self.apply_preset(self.preset.currentData() or ""))
        self.datasets = DatasetsPanel(self)
        self.datasets.changed.connect(self.changed)
        self.datasets.summariesChanged.connect(self._update_epochs)

        essentials = QFormLayout()
        essentials.addRow(setting("base").label, self.model_picker)
        essentials.addRow("Preset", self.preset)
        essentials.addRow(setting("datasets").label, self.datasets)
        tips = (setting("base").tip, self.preset.toolTip(), setting("datasets").tip)
        for widget, tip in zip((self.model_picker, self.preset, self.datasets), tips):
            widget.setToolTip(tip)
            label = essentials.labelForField(widget)
            if label is not None:
                label.setToolTip(tip)
        defaults = dict(config_keys())
        for key in ESSENTIALS:
            field = self._steps_field() if key == "steps" else make_field(key, defaults[key], self)
            self.fields[key] = field
            essentials.addRow(field.label, field.row)
            label = essentials.labelForField(field.row)
            if label is not None:
                label.setToolTip(setting(key).tip)

        self.error_label = QLabel("", self)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setWordWrap(True)
        self.error_label.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.error_label)
        layout.addLayout(essentials)
        placed = set(ESSENTIALS)
        groups = dict(ADVANCED)
        leftovers = tuple(k for k, _ in config_keys() if k not in placed and not any(k in g for g in groups.values()))
        if leftovers:
            groups["Other"] = leftovers
        for title, keys in groups.items():
            group = Collapsible(f"Advanced: {title}", self)
            for key in keys:
                if key not in defaults:
                    continue  # a setting this build's TrainConfig does not have
                field = make_field(key, defaults[key], group.body)
                self.fields[key] = field
                group.add(field)
                self._group_of[key] = group
            self.groups[title] = group
            layout.addWidget(group)
        layout.addStretch(1)

        for field in self.fields.values():
            field.on_change(self.changed.emit)
        for key in ("data.batch_size", "gradient_accumulation"):
            self.fields[key].on_change(self._update_epochs)
        self.fields["data.min_image_side"].on_change(self._on_min_side)
        self.set_config(TrainConfig())

    # ------------------------------------------------------------ steps or epochs
    def _steps_field(self) -> Field:
        row = QWidget(self)
        self.steps_box = QSpinBox(row)
        self.steps_box.setRange(1, 2**31 - 1)
        self.steps_box.setKeyboardTracking(False)
        self.steps_unit = QComboBox(row)
        self.steps_unit.addItems(["steps", "epochs"])
        self.steps_unit.setToolTip("Count the length in optimizer steps or in passes over the dataset.")
        self.steps_note = QLabel("", row)
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.steps_box)
        box.addWidget(self.steps_unit)
        box.addWidget(self.steps_note, 1)
        self.steps_box.valueChanged.connect(lambda _v: self._update_epochs())
        self.steps_unit.currentIndexChanged.connect(lambda _i: self._update_epochs())

        def set_steps(value: Any) -> None:
            self.steps_unit.setCurrentIndex(0)
            self.steps_box.setValue(int(value))

        return Field("steps", self.steps_box, self._read_steps, set_steps, self.steps_box.valueChanged, row=row)

    def steps_per_epoch(self) -> int | None:
        pictures = self.datasets.epoch_pictures()
        if not pictures:
            return None
        try:
            batch = int(self.fields["data.batch_size"].get()) * int(self.fields["gradient_accumulation"].get())
        except (FieldError, ValueError):
            return None
        return max(1, math.ceil(pictures / max(1, batch)))

    def _read_steps(self) -> int:
        value = self.steps_box.value()
        if self.steps_unit.currentText() == "steps":
            return value
        per_epoch = self.steps_per_epoch()
        if per_epoch is None:
            raise FieldError(
                "steps",
                "Length: the pictures are not counted yet, so epochs cannot be turned into "
                "steps; wait for the dataset count or give steps",
            )
        return value * per_epoch

    def _update_epochs(self) -> None:
        per_epoch = self.steps_per_epoch()
        if per_epoch is None:
            self.steps_note.setText("")
        elif self.steps_unit.currentText() == "steps":
            self.steps_note.setText(f"≈ {self.steps_box.value() / per_epoch:.3g} epochs")
        else:
            self.steps_note.setText(f"= {self.steps_box.value() * per_epoch} steps")

    def _on_min_side(self) -> None:
        try:
            self.datasets.min_side = int(self.fields["data.min_image_side"].get())
        except (FieldError, ValueError):
            return
        self.datasets.rescan()

    # ------------------------------------------------------------ values
    def set_config(self, config: TrainConfig) -> None:
        self._loaded = config
        self.model_picker.setText(config.base)
        self._fill_presets(config.base)
        self._select_preset(config.preset)
        data = config.to_dict()
        for key, field in self.fields.items():
            section, _, name = key.rpartition(".")
            value = data[section][name] if section else data[key]
            field.set(value)
        self.datasets.min_side = config.data.min_image_side
        self.datasets.set_specs(list(config.datasets))
        self.clear_error()
        self._update_epochs()

    def _fill_presets(self, base: str) -> None:
        """The presets of the base model's family (Flux ones for a Flux base); the choice stays."""
        names = presets_for(base_family(base))
        current = self.preset.currentData() or ""
        if [self.preset.itemData(i) for i in range(1, self.preset.count())] == names:
            return
        self.preset.clear()
        self.preset.addItem(NO_PRESET, "")
        for name in names:
            self.preset.addItem(name, name)
        if current:
            self._select_preset(current)

    def _select_preset(self, name: str) -> None:
        index = self.preset.findData(name or "")
        if index < 0:  # a preset this install does not have: keep its name on show
            self.preset.addItem(name, name)
            index = self.preset.count() - 1
        self.preset.setCurrentIndex(index)

    def values(self) -> dict[str, Any]:
        """The form as a TrainConfig table (unvalidated); raises FieldError for an unreadable field."""
        data = self._loaded.to_dict()
        for key, field in self.fields.items():
            section, _, name = key.rpartition(".")
            if section:
                data[section][name] = field.get()
            else:
                data[key] = field.get()
        data["base"] = self.model_picker.text()
        data["datasets"] = self.datasets.specs()
        data["preset"] = self.preset.currentData() or ""
        return data

    def config(self) -> TrainConfig:
        """The form as a valid TrainConfig; raises FormError naming the setting that is wrong."""
        try:
            data = self.values()
        except FieldError as exc:
            raise FormError(exc.key, str(exc)) from None
        try:
            return TrainConfig.from_dict(data)
        except ConfigError as exc:
            key, text = error_key(str(exc))
            label = setting(key).label if key else ""
            raise FormError(key, f"{label}: {text}" if label and not text.startswith(label) else text) from None

    def apply_preset(self, name: str) -> None:
        """Load a preset's settings, keeping model, datasets, name, trigger and folders."""
        if not name:
            return
        try:
            current = self.values()
        except FieldError:
            current = self._loaded.to_dict()
        try:
            config = load_preset(name)
        except ConfigError as exc:
            self.show_error("", str(exc))
            return
        data = config.to_dict()
        for key in KEPT_BY_PRESET:
            if key == "name" and current.get("name") in ("", TrainConfig().name):
                continue  # nothing chosen yet: the preset's name is as good as the default
            data[key] = current.get(key, data.get(key))
        data["preset"] = name
        self.set_config(TrainConfig.from_dict(data))
        self.changed.emit()

    # ------------------------------------------------------------ checks before a run
    def ready_config(self) -> TrainConfig | None:
        """The config if a run can start with it; otherwise highlight the field, say why, and None."""
        self.clear_error()
        try:
            problems = setting_problems(self.values())
        except FieldError:
            problems = []  # config() below names the unreadable field
        if problems:
            self.problem = problems[0]
            self.show_error(self.problem.key, f"{setting(self.problem.key).label}: {self.problem.message}")
            return None
        try:
            config = self.config()
            self._check_ready(config)
        except FormError as exc:
            self.show_error(exc.key, str(exc))
            return None
        return config

    def apply_fix(self) -> bool:
        """Set what the last problem's fix says (e.g. the bucket range); False when there is none."""
        problem, self.problem = self.problem, None
        if problem is None:
            return False
        for key, value in problem.fix.items():
            self.fields[key].set(value)
        self.clear_error()
        self.changed.emit()
        return True

    def _check_ready(self, config: TrainConfig) -> None:
        base = config.base.strip()
        if not base:
            raise FormError("base", "Base model: pick a Hub id, a model folder or a .safetensors file")
        if missing := model_choice.missing_files(base):
            raise FormError("base", f"Base model: {missing[0]}")
        candidate = Path(base).expanduser()
        if not model_choice.has_companions(base) and candidate.is_absolute() and not candidate.exists():
            raise FormError("base", f"Base model: {base} does not exist")
        pictures = [d for d in config.datasets if not d.regularization]
        if not pictures:
            raise FormError("datasets", "Datasets: add the folder of your training pictures")
        for spec in config.datasets:
            folder = Path(spec.path).expanduser()
            if not folder.is_dir():
                raise FormError("datasets", f"Datasets: {spec.path} is not a folder")
        summaries = {s.path: s for s in self.datasets.summaries()}
        for spec in pictures:
            summary = summaries.get(spec.path)
            if summary is not None and summary.error:
                raise FormError("datasets", f"Datasets: {summary.error}")
            if summary is not None and summary.usable == 0:
                raise FormError("datasets", f"Datasets: {spec.path} has no usable pictures ({summary.images} found)")

    def show_error(self, key: str, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        if key == "base":
            self.model_picker.combo.setStyleSheet(FIELD_ERROR_STYLE)
            self.model_picker.combo.setFocus()
        elif key == "datasets":
            self.datasets.mark(True)
            self.datasets.table.setFocus()
        elif key in self.fields:
            field = self.fields[key]
            group = self._group_of.get(key)
            if group is not None:
                group.set_open(True)
            field.mark(True)
            field.editor.setFocus()
        self.highlighted = key

    def marked_widget(self) -> QWidget | None:
        """The field the last error highlighted (to scroll it into view), or None."""
        key = self.highlighted
        if key == "base":
            return self.model_picker
        if key == "datasets":
            return self.datasets
        return self.fields[key].row if key in self.fields else None

    def clear_error(self) -> None:
        self.error_label.setVisible(False)
        self.error_label.setText("")
        self.model_picker.combo.setStyleSheet("")
        self.datasets.mark(False)
        for field in self.fields.values():
            field.mark(False)
        self.highlighted = ""
