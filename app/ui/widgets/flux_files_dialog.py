"""Ask for the files a Flux.1 transformer file needs (CLIP-L, T5-XXL, VAE; a T5 tokenizer folder
optionally), offering the ones beside it by their usual names; the answer is one model choice."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.model_choice import COMPANIONS, REQUIRED, ModelChoice, usual_companions

_LABELS = {"clip_l": "CLIP-L text encoder", "t5": "T5-XXL text encoder", "vae": "VAE", "t5_tokenizer": "T5 tokenizer"}
_FILTER = "Safetensors (*.safetensors);;All files (*)"


class FluxFilesDialog(QDialog):
    """One row per companion file, filled with what lies beside the transformer file."""

    def __init__(self, transformer: str, current: ModelChoice | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Flux.1 transformer file: its text encoders and VAE")
        self.transformer = transformer
        known = {**usual_companions(transformer), **(current.companions if current else {})}
        intro = QLabel(
            f"{Path(transformer).name} holds the Flux.1 transformer only. Pick the files that go with it "
            "(ComfyUI and Forge keep them as clip_l, t5xxl and ae). The T5 tokenizer is fetched once "
            "from the Hub unless you pick a folder that has it."
        )
        intro.setWordWrap(True)
        form = QFormLayout()
        self.edits: dict[str, QLineEdit] = {}
        for key in (*REQUIRED, "t5_tokenizer"):
            edit = QLineEdit(known.get(key, ""), self)
            edit.setPlaceholderText("optional" if key == "t5_tokenizer" else COMPANIONS[key])
            edit.setToolTip(COMPANIONS[key])
            edit.textChanged.connect(self._check)
            browse = QToolButton(self)
            browse.setText("…")
            browse.clicked.connect(lambda _=False, k=key: self._browse(k))
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(browse)
            form.addRow(_LABELS[key], row)
            self.edits[key] = edit
        self.problem = QLabel(self)
        self.problem.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self._check()

    def choice(self) -> ModelChoice:
        values = {k: e.text().strip() for k, e in self.edits.items() if e.text().strip()}
        return ModelChoice(self.transformer, **values)

    def problem_text(self) -> str:
        """One sentence for the first companion that is missing or not there; "" when all are."""
        for key in REQUIRED:
            text = self.edits[key].text().strip()
            if not text:
                return f"Pick {COMPANIONS[key]}."
            if not Path(text).expanduser().is_file():
                return f"{text}: no such file ({COMPANIONS[key]})."
        folder = self.edits["t5_tokenizer"].text().strip()
        if folder and not Path(folder).expanduser().is_dir():
            return f"{folder}: no such folder ({COMPANIONS['t5_tokenizer']})."
        return ""

    def _check(self) -> None:
        problem = self.problem_text()
        self.problem.setText(problem)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problem)

    def _browse(self, key: str) -> None:
        start = self.edits[key].text().strip() or str(Path(self.transformer).parent)
        if key == "t5_tokenizer":
            path = QFileDialog.getExistingDirectory(self, "Choose a T5 tokenizer folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, f"Choose {COMPANIONS[key]}", start, _FILTER)
        if path:
            self.edits[key].setText(path)
