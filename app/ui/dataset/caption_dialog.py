"""Auto-caption settings: backend and model, mode, prefix (trigger word), suffix, batch size,
and each backend's own fields (tagger thresholds, Florence-2 task, a VLM's prompt)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
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

from app.core.dataset.caption_config import (
    BACKEND_LABELS,
    CPU_NOTES,
    DEFAULT_MODELS,
    DEFAULT_VLM_PROMPT,
    FLORENCE_TASKS,
    KNOWN_MODELS,
    CaptionBackend,
    CaptionMode,
)

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
        self.cpu_notes = QLabel("\n".join(CPU_NOTES.values()), self)  # core's table: one line a backend
        self.cpu_notes.setWordWrap(True)
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
        self._add_prompt_fields(form)
        self._form = form
        note = QLabel("Captions are written beside each picture as .txt; Undo restores them.", self)
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Caption")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.cpu_notes)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.backend.currentIndexChanged.connect(self._show_fields)
        self._show_fields()

    def _add_prompt_fields(self, form: QFormLayout) -> None:
        """Florence-2's task and a vision-language model's prompt, discouraged words and 4-bit."""
        self.florence_task = QComboBox(self)
        for task, meaning in FLORENCE_TASKS.items():
            self.florence_task.addItem(f"{task} — {meaning}", task)
        self.florence_task.setCurrentIndex(self.florence_task.findData("<DETAILED_CAPTION>"))
        self.vlm_prompt = QLineEdit(DEFAULT_VLM_PROMPT, self)
        self.vlm_prompt.setToolTip("{tags}: the image's caption now; {trigger}: the prefix above.")
        self.discouraged = QLineEdit(self)
        self.discouraged.setPlaceholderText("words the model must not write, separated by commas")
        self.four_bit = QCheckBox("Load in 4-bit (bitsandbytes, CUDA GPU; a quarter of the memory)", self)
        form.addRow("Task", self.florence_task)
        form.addRow("Prompt", self.vlm_prompt)
        form.addRow("Discouraged words", self.discouraged)
        form.addRow("", self.four_bit)

    def _show_fields(self) -> None:
        backend = CaptionBackend(self.backend.currentData())
        self.model.setPlaceholderText(DEFAULT_MODELS[backend])
        completer = QCompleter(list(KNOWN_MODELS[backend]), self.model)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.model.setCompleter(completer)  # the known repo ids; any other id or folder works too
        tagger = backend is CaptionBackend.WD14
        vlm = backend is CaptionBackend.VLM
        for widget in (
            self.general_threshold,
            self.character_threshold,
            self.max_tags,
            self.exclude_tags,
            self.underscores,
        ):
            self._form.setRowVisible(widget, tagger)
        self._form.setRowVisible(self.max_new_tokens, not tagger)
        self._form.setRowVisible(self.florence_task, backend is CaptionBackend.FLORENCE)
        for widget in (self.vlm_prompt, self.discouraged, self.four_bit):
            self._form.setRowVisible(widget, vlm)

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
            "florence_task": self.florence_task.currentData(),
            "vlm_prompt": self.vlm_prompt.text().strip() or DEFAULT_VLM_PROMPT,
            "discouraged_words": self.discouraged.text(),
            "load_in_4bit": self.four_bit.isChecked(),
        }


def _prob(value: float, parent: QWidget) -> QDoubleSpinBox:
    box = QDoubleSpinBox(parent)
    box.setRange(0.0, 1.0)
    box.setSingleStep(0.05)
    box.setDecimals(2)
    box.setValue(value)
    return box
