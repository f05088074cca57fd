"""Auto-caption settings: backend and model, mode, prefix (trigger word), suffix, batch size."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.dataset.caption_config import BACKEND_LABELS, DEFAULT_MODELS, CaptionBackend, CaptionMode

MODES = [
    ("Only images without a caption", CaptionMode.FILL),
    ("Replace every caption", CaptionMode.REPLACE),
    ("Append to every caption", CaptionMode.APPEND),
]


class CaptionDialog(QDialog):
    def __init__(self, has_selection: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Auto-caption")
        self.backend = QComboBox(self)
        for backend, label in BACKEND_LABELS.items():  # the one list, shared with `loraloom caption --help`
            self.backend.addItem(label, backend.value)
        self.model = QLineEdit(self)
        self.model.setToolTip("A Hugging Face Hub id (downloaded once into its cache) or a local model folder.")
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.setToolTip("Pick a model folder on this computer (works offline).")
        self.browse_button.clicked.connect(self.browse_model)
        model_row = QHBoxLayout()
        model_row.setContentsMargins(0, 0, 0, 0)
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.browse_button)
        self.mode = QComboBox(self)
        for label, mode in MODES:
            self.mode.addItem(label, mode.value)
        self.only_selected = QCheckBox("Only the selected images", self)
        self.only_selected.setEnabled(has_selection)
        self.prefix = QLineEdit(self)
        self.prefix.setPlaceholderText("e.g. your trigger word — put first in every new caption")
        self.suffix = QLineEdit(self)
        self.batch_size = QSpinBox(self)
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(8)
        self.batch_size.setToolTip("Images per model call; bigger is faster on a GPU with memory to spare.")
        self.max_new_tokens = QSpinBox(self)
        self.max_new_tokens.setRange(5, 512)
        self.max_new_tokens.setValue(60)
        self.general_threshold = _prob(0.35, self)
        self.character_threshold = _prob(0.85, self)
        self.max_tags = QSpinBox(self)
        self.max_tags.setRange(0, 200)
        self.max_tags.setSpecialValueText("no limit")
        self.exclude_tags = QLineEdit(self)
        self.exclude_tags.setPlaceholderText("tags to leave out, separated by commas")
        self.underscores = QCheckBox("Underscores to spaces", self)
        self.underscores.setChecked(True)
        form = QFormLayout()
        form.addRow("Captioner", self.backend)
        form.addRow("Model", model_row)
        form.addRow("Which images", self.mode)
        form.addRow("", self.only_selected)
        form.addRow("Prefix", self.prefix)
        form.addRow("Suffix", self.suffix)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Max length (tokens)", self.max_new_tokens)
        form.addRow("General threshold", self.general_threshold)
        form.addRow("Character threshold", self.character_threshold)
        form.addRow("Max tags", self.max_tags)
        form.addRow("Exclude", self.exclude_tags)
        form.addRow("", self.underscores)
        self._form = form
        note = QLabel("Captions are written beside each picture as .txt; Undo restores them.", self)
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Caption")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.backend.currentIndexChanged.connect(self._show_fields)
        self._show_fields()

    def _show_fields(self) -> None:
        backend = CaptionBackend(self.backend.currentData())
        self.model.setPlaceholderText(DEFAULT_MODELS[backend])
        tagger = backend is CaptionBackend.WD14
        for widget in (
            self.general_threshold,
            self.character_threshold,
            self.max_tags,
            self.exclude_tags,
            self.underscores,
        ):
            self._form.setRowVisible(widget, tagger)
        self._form.setRowVisible(self.max_new_tokens, not tagger)

    def browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Captioning model folder", self.model.text().strip())
        if folder:
            self.model.setText(folder)

    def values(self) -> dict[str, Any]:
        """Fields for a CaptionRequest (the session adds the folder)."""
        return {
            "backend": self.backend.currentData(),
            "model": self.model.text().strip(),
            "mode": self.mode.currentData(),
            "prefix": self.prefix.text().strip(),
            "suffix": self.suffix.text().strip(),
            "batch_size": self.batch_size.value(),
            "max_new_tokens": self.max_new_tokens.value(),
            "general_threshold": self.general_threshold.value(),
            "character_threshold": self.character_threshold.value(),
            "max_tags": self.max_tags.value(),
            "exclude_tags": self.exclude_tags.text(),
            "underscores_to_spaces": self.underscores.isChecked(),
        }


def _prob(value: float, parent: QWidget) -> QDoubleSpinBox:
    box = QDoubleSpinBox(parent)
    box.setRange(0.0, 1.0)
    box.setSingleStep(0.05)
    box.setDecimals(2)
    box.setValue(value)
    return box
