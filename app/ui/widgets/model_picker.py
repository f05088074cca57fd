"""Pick a base model: a Hub id typed in, a diffusers folder, or a single checkpoint file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDialog, QFileDialog, QHBoxLayout, QSizePolicy, QToolButton, QWidget

from app.core import model_choice
from app.ui.recent_models import RecentModels
from app.ui.widgets.flux_files_dialog import FluxFilesDialog

CHECKPOINT_FILTER = "Checkpoints (*.safetensors *.ckpt);;All files (*)"


class ModelPicker(QWidget):
    """An editable combo of recent models plus Browse buttons; reusable by any tab.

    The picker only chooses; whoever uses the model calls ``RecentModels.add`` when it
    is actually used, so typos typed here do not pile up in the list.
    """

    modelChanged = Signal(str)

    def __init__(self, recent: RecentModels, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._recent = recent
        self.combo = QComboBox(self)
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.combo.setMinimumContentsLength(12)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.lineEdit().setPlaceholderText("Hub id (owner/name), model folder or .safetensors file")
        self.combo.setToolTip("The base model: a Hugging Face Hub id, a diffusers folder, or a single checkpoint file.")
        self.combo.currentTextChanged.connect(self.modelChanged)

        self.browse_folder = QToolButton(self)
        self.browse_folder.setText("Folder…")
        self.browse_folder.setToolTip("Choose a diffusers model folder (one with model_index.json).")
        self.browse_folder.clicked.connect(self._choose_folder)
        self.browse_file = QToolButton(self)
        self.browse_file.setText("File…")
        self.browse_file.setToolTip(
            "Choose a single-file checkpoint (.safetensors or .ckpt) as A1111 and ComfyUI keep them; "
            "for a Flux.1 transformer file you then pick its text encoder and VAE files."
        )
        self.browse_file.clicked.connect(self._choose_file)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse_folder)
        layout.addWidget(self.browse_file)

        self._fill()
        recent.changed.connect(self._fill)

    def text(self) -> str:
        return self.combo.currentText().strip()

    def setText(self, model: str) -> None:  # noqa: N802 (Qt naming, like QLineEdit.setText)
        self.combo.setEditText(model)

    def _fill(self) -> None:
        current = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(self._recent.items())
        self.combo.setEditText(current)
        self.combo.blockSignals(False)

    def _start_dir(self) -> str:
        text = self.text()
        current = Path(model_choice.parse(text).main if model_choice.has_companions(text) else text).expanduser()
        if current.exists():
            return str(current if current.is_dir() else current.parent)
        return str(Path.home())

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder", self._start_dir())
        if folder:
            self.setText(folder)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint file", self._start_dir(), CHECKPOINT_FILTER)
        if path:
            self.setText(self.with_companions(path))

    def with_companions(self, path: str) -> str:
        """``path``, or, for a Flux.1 transformer file alone, the choice of it with the companion
        files the user picks (the ones beside it offered); Cancel keeps the file alone."""
        if not model_choice.needs_companions(path):
            return path
        current = self.text()
        known = model_choice.parse(current) if model_choice.has_companions(current) else None
        dialog = FluxFilesDialog(path, known if known and known.main == path else None, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return path
        return dialog.choice().text()
