"""The Library tab: adapters on this computer and LoRAs on the Hugging Face Hub, as card grids.

The widget binds controls to a :class:`LibraryOps`; it never reads a file or opens a
connection itself. ``addToMixRequested(path)`` hands an adapter to the Generate tab.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.families import FAMILIES, Family
from app.core.hub.models import HubFile, HubRepo, HubSort, SearchQuery
from app.core.library import LibraryEntry
from app.ui.library.cards import CardGrid, CardItem
from app.ui.library.details_pane import DetailsPane
from app.ui.library.library_ops import LibraryOps, download_key

# (label, family, Hub base id): a family's distilled model has adapters of its own on the Hub.
FAMILY_CHOICES = [("Any base", None, "")] + [
    choice
    for f in FAMILIES
    for choice in [(f.label, f.id, "")] + ([(f.distilled.label, f.id, f.distilled.hub_base)] if f.distilled else [])
]
SORT_CHOICES = [
    ("Most downloads", HubSort.DOWNLOADS),
    ("Most likes", HubSort.LIKES),
    ("Trending", HubSort.TRENDING),
    ("Recently updated", HubSort.UPDATED),
]
OFFLINE_STYLE = "background: #fff3cd; color: #664d03; padding: 6px; border-radius: 4px;"
ERROR_STYLE = "color: #c62828;"


def entry_card(entry: LibraryEntry, image: QImage | None) -> CardItem:
    return CardItem(
        entry.path,
        entry.title,
        f"{entry.source.value} · {entry.name}",
        entry.family.value if entry.family else None,
        entry.rank,
        entry.trigger_words,
        entry.problem,
        entry,
        image,
    )


def repo_card(repo: HubRepo, image: QImage | None) -> CardItem:
    return CardItem(
        f"hub:{repo.repo_id}",
        repo.repo_id.split("/")[-1],
        f"{repo.author} · {repo.downloads:,} downloads",
        repo.family.value if repo.family else None,
        None,
        repo.trigger_words,
        "",
        repo,
        image,
    )


class LibraryTab(QWidget):
    addToMixRequested = Signal(str)  # the path of an adapter for the Generate tab's stack

    def __init__(self, ops: LibraryOps | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ops = ops or LibraryOps(parent=self)
        self.images: dict[str, QImage] = {}
        self._started = False
        self._hub_searched = False
        self._results_text = ""
        self._build()
        self._connect()
        self._show_offline(self.ops.offline, self.ops.offline_reason)

    # -------------------------------------------------------- layout

    def _build(self) -> None:
        bar = self._build_search_bar()
        local_page = self._build_local_page()
        hub_page = self._build_hub_page()
        self._build_layout(bar, local_page, hub_page)

    def _build_search_bar(self) -> QHBoxLayout:
        """Local/Hub switch, search, family and sort, and the folder buttons."""
        self.local_button = QToolButton(self)
        self.local_button.setText("On this computer")
        self.hub_button = QToolButton(self)
        self.hub_button.setText("Hugging Face Hub")
        self.modes = QButtonGroup(self)
        for i, button in enumerate((self.local_button, self.hub_button)):
            button.setCheckable(True)
            self.modes.addButton(button, i)
        self.local_button.setChecked(True)

        self.search_box = QLineEdit(self)
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setPlaceholderText("Search by name, trigger word or tag")
        self.family_box = QComboBox(self)
        for label, fam, base in FAMILY_CHOICES:
            self.family_box.addItem(label, (fam, base))
        self.family_box.setToolTip("Show adapters for this base family (adapters of unknown family stay listed).")
        self.sort_box = QComboBox(self)
        for label, sort in SORT_CHOICES:
            self.sort_box.addItem(label, sort)
        self.search_button = QPushButton("Search", self)
        self.search_button.setToolTip("Search LoRA repos on the Hub.")
        self.add_folder_button = QPushButton("Add folder…", self)
        self.add_folder_button.setToolTip("Add a folder of adapters, e.g. the models/Lora folder of A1111.")
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("Look for new, changed or removed adapter files.")
        bar = QHBoxLayout()
        bar.addWidget(self.local_button)
        bar.addWidget(self.hub_button)
        bar.addSpacing(12)
        bar.addWidget(self.search_box, 1)
        bar.addWidget(self.family_box)
        bar.addWidget(self.sort_box)
        bar.addWidget(self.search_button)
        bar.addWidget(self.add_folder_button)
        bar.addWidget(self.refresh_button)

        self.offline_banner = QLabel(self)
        self.offline_banner.setWordWrap(True)
        self.offline_banner.setStyleSheet(OFFLINE_STYLE)
        return bar

    def _build_local_page(self) -> QWidget:
        self.local_grid = CardGrid(self)
        self.local_status = QLabel(self)
        local_page = QWidget(self)
        local_layout = QVBoxLayout(local_page)
        local_layout.setContentsMargins(0, 0, 0, 0)
        local_layout.addWidget(self.local_grid, 1)
        local_layout.addWidget(self.local_status)
        return local_page

    def _build_hub_page(self) -> QWidget:
        """Hub results with Load more, and the token box for gated repos."""
        self.hub_grid = CardGrid(self)
        self.hub_status = QLabel(self)
        self.hub_status.setWordWrap(True)
        self.more_button = QPushButton("Load more", self)
        self.more_button.setVisible(False)
        self.token_box = QLineEdit(self)
        self.token_box.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_box.setPlaceholderText("hf_… (for gated repos; kept in huggingface_hub's token store)")
        self.save_token_button = QPushButton("Save token", self)
        self.forget_token_button = QPushButton("Remove", self)
        self.token_status = QLabel(self)
        token_group = QGroupBox("Hub account", self)
        token_layout = QHBoxLayout(token_group)
        token_layout.addWidget(self.token_box, 1)
        token_layout.addWidget(self.save_token_button)
        token_layout.addWidget(self.forget_token_button)
        token_layout.addWidget(self.token_status, 1)
        hub_page = QWidget(self)
        hub_layout = QVBoxLayout(hub_page)
        hub_layout.setContentsMargins(0, 0, 0, 0)
        hub_layout.addWidget(self.hub_grid, 1)
        row = QHBoxLayout()
        row.addWidget(self.hub_status, 1)
        row.addWidget(self.more_button)
        hub_layout.addLayout(row)
        hub_layout.addWidget(token_group)
        return hub_page

    def _build_layout(self, bar: QHBoxLayout, local_page: QWidget, hub_page: QWidget) -> None:
        self.pages = QStackedWidget(self)
        self.pages.addWidget(local_page)
        self.pages.addWidget(hub_page)
        self.details = DetailsPane(self)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.pages)
        # Scrolls rather than forcing the whole window taller than a laptop screen.
        details_scroll = QScrollArea(self)
        details_scroll.setWidget(self.details)
        details_scroll.setWidgetResizable(True)
        details_scroll.setFrameShape(QFrame.Shape.NoFrame)
        splitter.addWidget(details_scroll)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.offline_banner)
        layout.addWidget(splitter, 1)
        self._set_mode(0)

    def _connect(self) -> None:
        ops = self.ops
        self.modes.idClicked.connect(self._set_mode)
        self.search_box.textChanged.connect(self._on_text)
        self.search_box.returnPressed.connect(self._search_if_hub)
        self.search_button.clicked.connect(self.search_hub)
        self.family_box.currentIndexChanged.connect(self._on_filter)
        self.sort_box.currentIndexChanged.connect(self._search_if_hub)
        self.more_button.clicked.connect(self._load_more)
        self.add_folder_button.clicked.connect(self._choose_folder)
        self.refresh_button.clicked.connect(ops.refresh_local)
        self.save_token_button.clicked.connect(self._save_token)
        self.forget_token_button.clicked.connect(ops.forget_token)
        self.local_grid.cardActivated.connect(self._open_card)
        self.hub_grid.cardActivated.connect(self._open_card)
        self.details.downloadRequested.connect(self._download)
        self.details.cancelRequested.connect(ops.cancel_download)
        self.details.addToMixRequested.connect(self.addToMixRequested)

        ops.localChanged.connect(self.show_local)
        ops.scanningChanged.connect(
            lambda busy: self.local_status.setText("Reading adapter files…" if busy else self.local_status.text())
        )
        ops.hubResults.connect(self._on_results)
        ops.hubBusyChanged.connect(self._on_hub_busy)
        ops.hubFailed.connect(self._on_hub_failed)
        ops.detailsReady.connect(self._on_details)
        ops.thumbnailReady.connect(self._on_thumbnail)
        ops.downloadProgress.connect(self._on_download_progress)
        ops.downloadFinished.connect(self._on_download_finished)
        ops.downloadFailed.connect(self._on_download_failed)
        ops.offlineChanged.connect(self._show_offline)
        ops.tokenStatusChanged.connect(self.token_status.setText)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._started:  # the first look at the tab reads the folders, not the app's start
            self._started = True
            self.ops.start()

    # -------------------------------------------------------- modes and filters

    @property
    def hub_mode(self) -> bool:
        return self.pages.currentIndex() == 1

    def _set_mode(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        self.modes.button(index).setChecked(True)
        hub = index == 1
        self.sort_box.setVisible(hub)
        self.search_button.setVisible(hub)
        self.add_folder_button.setVisible(not hub)
        self.refresh_button.setVisible(not hub)
        self.search_box.setPlaceholderText(
            "Search LoRA repos on the Hub (Enter)" if hub else "Search by name, trigger word or tag"
        )
        self.details.clear()
        if hub and not self._hub_searched and not self.ops.offline:
            self.search_hub()

    def show_hub(self) -> None:
        self._set_mode(1)

    def show_local_view(self) -> None:
        self._set_mode(0)

    def family_filter(self) -> Family | None:
        return self.family_box.currentData()[0]

    def _on_text(self, _text: str) -> None:
        if not self.hub_mode:
            self.show_local()

    def _on_filter(self) -> None:
        self.show_local()
        self._search_if_hub()

    def _search_if_hub(self) -> None:
        if self.hub_mode:
            self.search_hub()

    def set_current_family(self, family: str | None) -> None:
        """The family of the model loaded for Generate: other families' adapters get marked."""
        family = family or None
        self.local_grid.cards.set_current_family(family)
        self.hub_grid.cards.set_current_family(family)
        self.details.set_current_family(family)

    # -------------------------------------------------------- local

    def show_local(self) -> None:
        entries = self.ops.local_entries(self.search_box.text(), self.family_filter())
        key = self.details.entry.path if self.details.entry else None
        self.local_grid.cards.set_items([entry_card(e, self.images.get(e.path)) for e in entries])
        for e in entries:
            self.ops.local_thumbnail(e)
        total = len(self.ops.library.entries)
        problems = sum(1 for e in entries if e.problem)
        text = (
            f"{len(entries)} of {total} adapters"
            if len(entries) != total
            else f"{total} adapter{'s' if total != 1 else ''}"
        )
        if problems:
            text += f", {problems} cannot be used"
        if not total:
            text = "No adapters yet: train one, add a folder (e.g. A1111's models/Lora) or download from the Hub."
        self.local_status.setText(text)
        if key and self.local_grid.select_key(key):
            self.details.show_entry(self.ops.library.get(key) or self.details.entry, self.images.get(key))

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of adapters")
        if folder:
            self.ops.add_folder(folder)

    # -------------------------------------------------------- hub

    def query(self) -> SearchQuery:
        return SearchQuery(
            text=self.search_box.text(),
            family=self.family_filter(),
            base_id=self.family_box.currentData()[1],
            sort=self.sort_box.currentData(),
        )

    def search_hub(self) -> None:
        self._hub_searched = True
        self.ops.search(self.query())

    def _load_more(self) -> None:
        self.ops.load_more()

    def _on_hub_busy(self, busy: bool) -> None:
        if busy:
            self.hub_status.setStyleSheet("")
            self.hub_status.setText("Asking the Hub…")
        self.more_button.setEnabled(not busy)

    def _on_results(self, repos: list, more: bool, append: bool) -> None:
        cards = [repo_card(r, self.images.get(f"hub:{r.repo_id}")) for r in repos]
        if append:
            self.hub_grid.cards.append(cards)
        else:
            self.hub_grid.cards.set_items(cards)
        for r in repos:
            self.ops.hub_thumbnail(r)
        count = len(self.hub_grid.cards.items)
        self._results_text = (
            f"{count} LoRA repos" + (" (more on the Hub)" if more else "") if count else "No LoRA repos match."
        )
        self.hub_status.setText(self._results_text)
        self.more_button.setVisible(more)

    def _on_hub_failed(self, kind: str, message: str) -> None:
        self.hub_status.setStyleSheet(ERROR_STYLE)
        self.hub_status.setText(message)
        if self.details.repo is not None:
            self.details.download_ended(False, message)

    def _on_details(self, repo: HubRepo) -> None:
        if self.details.repo is None or self.details.repo.repo_id != repo.repo_id:
            return  # the user moved on
        self.hub_status.setText(self._results_text)
        self.details.show_repo(repo, self.images.get(f"hub:{repo.repo_id}"))
        self._reflect_download(repo)

    def _reflect_download(self, repo: HubRepo) -> None:
        f = self.details.selected_file()
        if f is None:
            return
        key = download_key(repo.repo_id, f.name)
        state = self.ops.downloads.get(key)
        if state is not None:
            self.details.download_started(key)
            self.details.download_progress(state.done, state.total)
        path = self.ops.downloaded_path(repo.repo_id, f.name)
        if path:
            self.details.set_local_path(path)
            self.details.status.setText("Downloaded: it is under “On this computer”.")

    def _download(self, repo: HubRepo, file: HubFile) -> None:
        key = self.ops.download(repo, file)
        self.details.download_started(key)

    def _on_download_progress(self, key: str, done: object, total: object) -> None:
        if self.details.download_key == key:
            self.details.download_progress(int(done), int(total) if total else None)

    def _on_download_finished(self, key: str, path: str) -> None:
        if self.details.download_key == key and self.details.repo is not None:
            self.details.download_ended(True, "Downloaded and verified (sha256); it is under “On this computer”.")
            self.details.set_local_path(path)

    def _on_download_failed(self, key: str, kind: str, message: str) -> None:
        if self.details.download_key == key:
            self.details.download_ended(False, message)

    # -------------------------------------------------------- cards, pictures, token, offline

    def _open_card(self, card: CardItem) -> None:
        if isinstance(card.payload, LibraryEntry):
            self.details.show_entry(card.payload, self.images.get(card.key))
        elif isinstance(card.payload, HubRepo):
            self.details.show_repo(card.payload, self.images.get(card.key))
            self.details.download_button.setEnabled(False)  # until the files and their sha256 arrive
            self.details.status.setText("Reading the repo…")
            self.ops.open_repo(card.payload.repo_id)

    def _on_thumbnail(self, key: str, image: QImage) -> None:
        self.images[key] = image
        self.local_grid.cards.set_image(key, image)
        self.hub_grid.cards.set_image(key, image)
        shown = (
            self.details.entry.path
            if self.details.entry
            else f"hub:{self.details.repo.repo_id}"
            if self.details.repo
            else None
        )
        if shown == key:
            self.details.set_image(image)

    def _save_token(self) -> None:
        token = self.token_box.text()
        self.token_box.clear()  # never kept in a widget longer than needed
        if token.strip():
            self.ops.save_token(token)

    def _show_offline(self, offline: bool, reason: str) -> None:
        self.offline_banner.setVisible(offline)
        self.offline_banner.setText(
            f"Offline — {reason}. The adapters on this computer and everything downloaded before still work."
            if offline
            else ""
        )
