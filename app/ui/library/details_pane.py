"""The details of one adapter (on disk) or one Hub repo: picture, facts, trigger words, card, Download."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.core import families
from app.core.hub.models import HubFile, HubRepo
from app.core.library import LibraryEntry
from app.ui.library.cards import MISMATCH_COLOR, PROBLEM_COLOR, family_mismatch

PART_NAMES = {"unet": "UNet", "text_encoder": "text encoder", "text_encoder_2": "text encoder 2"}


def size_text(n: int | None) -> str:
    if n is None:
        return "size unknown"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    if n < 1024**3:
        return f"{n / 1024**2:.1f} MB"
    return f"{n / 1024**3:.2f} GB"


class DetailsPane(QWidget):
    downloadRequested = Signal(object, object)  # (HubRepo, HubFile)
    cancelRequested = Signal(str)  # download key
    addToMixRequested = Signal(str)  # adapter path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entry: LibraryEntry | None = None
        self.repo: HubRepo | None = None
        self.local_path: str | None = None  # what "Add to mix" sends
        self.current_family: str | None = None
        self.download_key = ""
        self._build()
        self.clear()

    def _build(self) -> None:
        self.picture = QLabel(self)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumHeight(200)
        self.picture.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.title = QLabel(self)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.title.setFont(font)
        self.subtitle = QLabel(self)
        self.subtitle.setWordWrap(True)
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning = QLabel(self)
        self.warning.setWordWrap(True)

        self.facts = QFormLayout()
        self.base = QLabel(self)
        self.shape = QLabel(self)
        self.license = QLabel(self)
        self.trigger = QLineEdit(self)
        self.trigger.setReadOnly(True)
        self.trigger.setToolTip("Words the adapter was trained on; the Generate tab adds them to the prompt.")
        for label, widget in (
            ("Base", self.base),
            ("Network", self.shape),
            ("License", self.license),
            ("Trigger words", self.trigger),
        ):
            widget.setObjectName(label)
            if isinstance(widget, QLabel):
                widget.setWordWrap(True)
                widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.facts.addRow(label, widget)

        self.files = QComboBox(self)
        self.files.setToolTip("The adapter files in this repo, with their sizes.")
        self.download_button = QPushButton("Download", self)
        self.download_button.setToolTip("Download into the Hugging Face cache, check its sha256, add it to Local.")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the download; Download again resumes where it stopped.")
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.files, 1)
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        self.add_button = QPushButton("Add to mix", self)
        self.add_button.setToolTip("Put this adapter in the Generate tab's stack.")
        self.description = QTextBrowser(self)
        self.description.setOpenExternalLinks(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.picture)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addWidget(self.warning)
        layout.addLayout(self.facts)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.add_button)
        layout.addWidget(self.description, 1)

        self.download_button.clicked.connect(self._download)
        self.cancel_button.clicked.connect(lambda: self.cancelRequested.emit(self.download_key))
        self.add_button.clicked.connect(self._add)

    # -------------------------------------------------------- showing

    def clear(self) -> None:
        self.entry, self.repo, self.local_path = None, None, None
        self.picture.clear()
        self.picture.setText("Pick an adapter to see its details.")
        for w in (self.title, self.subtitle, self.warning, self.base, self.shape, self.license, self.status):
            w.setText("")
        self.trigger.setText("")
        self.description.clear()
        self._show_hub_controls(False)
        self.add_button.setEnabled(False)

    def _show_hub_controls(self, visible: bool) -> None:
        for w in (self.files, self.download_button, self.cancel_button, self.progress):
            w.setVisible(visible)
        self.cancel_button.setEnabled(False)

    def set_image(self, image: QImage | None) -> None:
        if image is None or image.isNull():
            self.picture.setPixmap(QPixmap())
            self.picture.setText("no preview")
            return
        pix = QPixmap.fromImage(image)
        self.picture.setPixmap(
            pix.scaled(
                self.picture.width() or 240,
                200,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    def set_current_family(self, family: str | None) -> None:
        self.current_family = family
        family_of_shown = (
            self.entry.family.value
            if self.entry and self.entry.family
            else self.repo.family.value
            if self.repo and self.repo.family
            else None
        )
        self._show_warning(family_of_shown, self.entry.problem if self.entry else "")

    def _show_warning(self, family: str | None, problem: str) -> None:
        if problem:
            self.warning.setStyleSheet(f"color: {PROBLEM_COLOR};")
            self.warning.setText(problem)
        elif family_mismatch(family, self.current_family):
            self.warning.setStyleSheet(f"color: {MISMATCH_COLOR};")
            self.warning.setText(
                f"Made for {families.label(family)}; the current model is "
                f"{families.label(self.current_family)}. It will be refused by that model."
            )
        else:
            self.warning.setText("")

    def show_entry(self, entry: LibraryEntry, image: QImage | None = None) -> None:
        self.clear()
        self.entry = entry
        self.local_path = entry.path if entry.usable else None
        self.title.setText(entry.title)
        self.subtitle.setText(f"{entry.source.value}: {entry.path}")
        self.base.setText(entry.family.value.upper() if entry.family else "unknown (not in the file)")
        parts = ", ".join(PART_NAMES.get(p, p) for p in entry.parts)
        if entry.usable:
            alpha = f", alpha {entry.alpha:g}" if entry.alpha is not None else ""
            self.shape.setText(
                f"{entry.network} ({entry.layout}), rank {entry.rank or '?'}{alpha}; {parts}; {size_text(entry.size)}"
            )
        self.trigger.setText(", ".join(entry.trigger_words))
        self.license.setText(entry.license or ("" if entry.source.value != "hub" else "not stated"))
        if entry.tags:
            self.description.setPlainText("Tags: " + ", ".join(entry.tags))
        self._show_warning(entry.family.value if entry.family else None, entry.problem)
        self.add_button.setEnabled(entry.usable)
        self.set_image(image)

    def show_repo(self, repo: HubRepo, image: QImage | None = None) -> None:
        """A Hub repo; with files and description once its details have arrived."""
        self.clear()
        self.repo = repo
        self.title.setText(repo.repo_id)
        when = repo.last_modified[:10] if repo.last_modified else "?"
        self.subtitle.setText(
            f"{repo.downloads:,} downloads · {repo.likes:,} likes · updated {when}"
            + (" · gated: needs a Hub token" if repo.gated else "")
        )
        bases = ", ".join(repo.base_models) or "not stated"
        self.base.setText(f"{repo.family.value.upper() if repo.family else 'unknown'} ({bases})")
        self.license.setText(repo.license or "not stated")
        count = len(repo.adapter_files)
        self.shape.setText(f"{count} adapter file{'s' if count != 1 else ''}" if repo.files else "")
        self.trigger.setText(", ".join(repo.trigger_words))
        self.description.setMarkdown(repo.description or "")
        self._show_warning(repo.family.value if repo.family else None, "")
        self._show_hub_controls(True)
        self.files.clear()
        for f in repo.adapter_files:
            self.files.addItem(f"{f.name} ({size_text(f.size)})", f)
        refused = [f.name for f in repo.files if not f.safe]
        if refused:
            self.status.setText(f"{len(refused)} file(s) with unsafe names are not offered: " + ", ".join(refused[:3]))
        if not repo.adapter_files:
            self.status.setText("No .safetensors adapter in this repo.")
        self.download_button.setEnabled(bool(repo.adapter_files) and bool(repo.sha))
        self.progress.setValue(0)
        self.set_image(image)

    def selected_file(self) -> HubFile | None:
        return self.files.currentData()

    # -------------------------------------------------------- download state

    def set_local_path(self, path: str | None) -> None:
        """The verified local copy of the selected Hub file (enables Add to mix)."""
        self.local_path = path
        self.add_button.setEnabled(bool(path))

    def download_started(self, key: str) -> None:
        self.download_key = key
        self.download_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Connecting…")

    def download_progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(done * 1000 / total))
            self.progress.setFormat(f"{size_text(done)} of {size_text(total)} (%p%)")
        else:
            self.progress.setRange(0, 0)
        self.status.setText("Downloading…")

    def download_ended(self, ok: bool, message: str) -> None:
        self.cancel_button.setEnabled(False)
        self.download_button.setEnabled(self.repo is not None and bool(self.repo.adapter_files))
        if ok:
            self.progress.setRange(0, 1000)
            self.progress.setValue(1000)
        self.status.setStyleSheet("" if ok else f"color: {PROBLEM_COLOR};")
        self.status.setText(message)

    # -------------------------------------------------------- actions

    def _download(self) -> None:
        f = self.selected_file()
        if self.repo is not None and f is not None:
            self.downloadRequested.emit(self.repo, f)

    def _add(self) -> None:
        if self.local_path:
            self.addToMixRequested.emit(self.local_path)
