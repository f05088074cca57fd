"""The Dataset tab: thumbnail grid, preview, caption editor, tag panel, batch tools, auto-caption.

Binds widgets to a :class:`DatasetSession`; no file is read or written here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QObject, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.dataset.filter import rename_tag_in_filter, tag_filter_text
from app.core.dataset.scan import ImageItem
from app.core.dataset.tag_ops import rename_tag
from app.ui.common.formatting import format_eta
from app.ui.dataset import item_actions
from app.ui.dataset.batch_dialog import BatchDialog
from app.ui.dataset.caption_dialog import CaptionDialog
from app.ui.dataset.caption_editor import CaptionEditor
from app.ui.dataset.dataset_ops import DatasetSession
from app.ui.dataset.list_model import BadgeDelegate, DatasetFilterProxy, DatasetListModel, ItemRole
from app.ui.dataset.mask_overlay import MaskControls
from app.ui.dataset.preview import PreviewPane
from app.ui.dataset.tag_panel import TagPanel
from app.ui.dataset.thumbnails import THUMB_SIZE, ThumbnailLoader
from app.ui.widgets.details_line import DetailsLine

ERROR_STYLE = "color: #c62828;"


def local_paths(event) -> list[str]:
    mime = event.mimeData()
    if not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]


class DatasetTab(QWidget):
    def __init__(self, session: DatasetSession | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session if session is not None else DatasetSession(None, parent=self)  # no worker
        self.thumbnails = ThumbnailLoader(self)
        self.model = DatasetListModel(self.session, self.thumbnails, self)
        self.proxy = DatasetFilterProxy(self.session.separator, self)
        self.proxy.setSourceModel(self.model)
        self._editing: ImageItem | None = None
        self._build()
        self._connect()
        self.setAcceptDrops(True)
        # Scans and thumbnails run Python in pool threads; with the default 5 ms GIL switch
        # interval every Python call the GUI makes (each model.data()) may wait that long.
        # 1 ms keeps the event loop's stalls well under 100 ms (bench/dataset_scan.py).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.flush)
        QTimer.singleShot(0, self, self.reopen_last)  # after the window is built; cancelled if the tab goes

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        self.preview = PreviewPane(self)  # first: the toolbar's Masks toggle draws on it
        top = self._build_toolbar()
        strip = self._build_progress_strip()
        self._build_grid()
        right = self._build_side_panel()
        self._build_layout(top, strip, right)

    def _build_toolbar(self) -> QHBoxLayout:
        """Open (with the recent folders), Rescan, the filter, Undo/Redo, the batch tools."""
        self.open_action = QAction("Open dataset…", self)
        self.open_action.setToolTip("Open a folder of pictures (searched recursively).")
        self.open_action.triggered.connect(self.choose_folder)
        self.recent_menu = QMenu("Recent datasets", self)
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        open_button = QToolButton(self)
        open_button.setDefaultAction(self.open_action)
        open_button.setMenu(self.recent_menu)
        open_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.rescan_button = QPushButton("Rescan", self)
        self.rescan_button.clicked.connect(self.session.rescan)
        self.filter_box = QLineEdit(self)
        self.filter_box.setPlaceholderText('Filter: text, tag:"long hair", has:problem, uncaptioned, -tag:solo')
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.textChanged.connect(self._on_filter)
        self.undo_action = QAction("Undo", self)
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.undo_action.triggered.connect(self.undo)
        self.redo_action = QAction("Redo", self)
        self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)
        self.redo_action.triggered.connect(self.redo)
        undo_button, redo_button = QToolButton(self), QToolButton(self)
        undo_button.setDefaultAction(self.undo_action)
        redo_button.setDefaultAction(self.redo_action)
        self.batch_button = QPushButton("Batch tools…", self)
        self.batch_button.clicked.connect(self.open_batch_tools)
        self.caption_button = QPushButton("Auto-caption…", self)
        self.caption_button.clicked.connect(self.open_auto_caption)
        self.masks = MaskControls(self, self.preview, self.session)
        top = QHBoxLayout()
        widgets = (open_button, self.rescan_button, self.filter_box, undo_button, redo_button, self.masks.toggle)
        for w in (*widgets, self.masks.button, self.batch_button, self.caption_button):
            top.addWidget(w)
        top.setStretch(2, 1)
        return top

    def _build_progress_strip(self) -> QHBoxLayout:
        """Auto-captioning's progress and its Cancel button."""
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.progress_label = QLabel("", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.session.cancel_captioning)
        strip = QHBoxLayout()
        strip.addWidget(self.progress, 1)
        strip.addWidget(self.progress_label, 2)
        strip.addWidget(self.cancel_button)
        return strip

    def _build_grid(self) -> None:
        self.grid = QListView(self)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(400)
        self.grid.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.grid.setGridSize(QSize(THUMB_SIZE + 20, THUMB_SIZE + 40))
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setWordWrap(False)
        self.grid.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.grid.setItemDelegate(BadgeDelegate(self.grid))
        self.grid.setModel(self.proxy)
        for action in (self.undo_action, self.redo_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.grid.addAction(action)
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid.customContextMenuRequested.connect(lambda pos: item_actions.show_context_menu(self, pos))
        self.grid.doubleClicked.connect(self.enlarge)
        self.context_menu = None
        self.viewer: item_actions.PictureViewer | None = None

    def _build_side_panel(self) -> QSplitter:
        """The selected picture, its caption editor and save error, above the tag panel."""
        self.info = QLabel("", self)
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.editor = CaptionEditor(self.session.separator, self)
        self.editor.setEnabled(False)
        self.editor.setMaximumHeight(110)
        self.editor.setMinimumHeight(40)
        self.save_error = QLabel("", self)
        self.save_error.setStyleSheet(ERROR_STYLE)
        self.save_error.setWordWrap(True)
        self.retry_button = QPushButton("Retry saving", self)
        self.retry_button.setVisible(False)
        self.retry_button.clicked.connect(self.session.retry_pending)
        self.tag_panel = TagPanel(self)
        right = QSplitter(Qt.Orientation.Vertical, self)
        top_right = QWidget(right)
        tr = QVBoxLayout(top_right)
        tr.setContentsMargins(0, 0, 0, 0)
        tr.addWidget(self.preview, 1)
        tr.addWidget(self.info)
        tr.addWidget(self.editor)
        error_row = QHBoxLayout()
        error_row.addWidget(self.save_error, 1)
        error_row.addWidget(self.retry_button)
        tr.addLayout(error_row)
        right.addWidget(top_right)
        right.addWidget(self.tag_panel)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        return right

    def _build_layout(self, top: QHBoxLayout, strip: QHBoxLayout, right: QSplitter) -> None:
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.grid)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.status = DetailsLine("Drop a folder of pictures here.", self)
        self.counts_label = QLabel("", self)
        self.counts_label.setToolTip("Pictures in the folder, usable for training, and still without a caption.")
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(strip)
        layout.addWidget(split, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.counts_label, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(bottom)
        self._tags_timer = QTimer(self)
        self._tags_timer.setSingleShot(True)
        self._tags_timer.setInterval(150)
        self._tags_timer.timeout.connect(self._refresh_tags)
        self._update_history()

    def _connect(self) -> None:
        s = self.session
        s.opened.connect(self._on_opened)
        s.scanProgress.connect(self._on_scan_progress)
        s.scanFinished.connect(self._on_scan_finished)
        s.itemsChanged.connect(self._on_items_changed)
        s.itemsAdded.connect(lambda *_: self._tags_timer.start())
        s.tagsChanged.connect(self._tags_timer.start)
        s.historyChanged.connect(self._update_history)
        s.message.connect(self.status.setText)
        s.errorOccurred.connect(self._on_error)
        s.errorDetail.connect(self.status.setText)
        s.countsChanged.connect(self.counts_label.setText)
        s.opened.connect(lambda _root: self.counts_label.setText(""))
        s.captionRunning.connect(self._on_caption_running)
        s.captionProgress.connect(self._on_caption_progress)
        self.grid.selectionModel().currentChanged.connect(self._on_current)
        self.editor.saveRequested.connect(self._save_editor)
        self.tag_panel.tagClicked.connect(lambda tag: self.filter_box.setText(tag_filter_text(tag)))
        self.tag_panel.renameRequested.connect(self.rename_tag)
        self.tag_panel.deleteRequested.connect(lambda tag: self.rename_tag(tag, ""))

    # ------------------------------------------------------------ opening and dropping
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open dataset folder", str(self.session.root or Path.home()))
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str) -> bool:
        self.flush()
        return self.session.open(folder)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for folder in self.session.recent.items():
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _=False, f=folder: self.open_folder(f))
        if not self.session.recent.items():
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def handle_drop(self, paths: list[str]) -> bool:
        """A folder opens as the dataset; picture files are copied into the open dataset."""
        folders = [p for p in paths if Path(p).is_dir()]
        if folders:
            return self.open_folder(folders[0])
        files = [p for p in paths if Path(p).is_file()]
        if files:
            self.session.copy_in(files)
            return True
        return False

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if local_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        if self.handle_drop(local_paths(event)):
            event.acceptProposedAction()

    def install_window_drop(self, window: QWidget, show_tab=None) -> None:
        """Let a folder dropped anywhere on ``window`` open here (``show_tab`` brings the tab forward)."""
        window.setAcceptDrops(True)
        self._window_drop = _WindowDrop(self, show_tab, window)
        window.installEventFilter(self._window_drop)

    # ------------------------------------------------------------ session events
    def _on_opened(self, root: str) -> None:
        self._editing = None
        self.editor.set_caption("")
        self.editor.setEnabled(False)
        self.preview.show_text("Pick a picture.")
        self.info.setText(root)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)

    def _on_scan_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress_label.setText(f"scanning: {done} of {total}")
        if done and not self.grid.currentIndex().isValid():
            self.grid.setCurrentIndex(self.proxy.index(0, 0))

    def _on_scan_finished(self) -> None:
        if self.session.caption_job is None:
            self.progress.setVisible(False)
        self.progress_label.setText("")
        self.proxy.invalidate()

    def _on_items_changed(self, items: list) -> None:
        if self.proxy.filter_text():
            self.proxy.invalidateRowsFilter()
        if self._editing is not None and self._editing in items:
            self._show_info(self._editing)
            if not self.editor.is_dirty() and self.editor.toPlainText() != self._editing.caption:
                self.editor.set_caption(self._editing.caption)
        pending = any(self.session.is_pending(i) for i in self.session.items) if self.session.store else False
        self.retry_button.setVisible(pending)
        if not pending:
            self.save_error.setText("")
        self._tags_timer.start()

    def _on_error(self, message: str) -> None:
        self.save_error.setText(message)
        self.status.setText(message)

    def _update_history(self) -> None:
        store = self.session.store
        can_undo, can_redo = bool(store and store.can_undo()), bool(store and store.can_redo())
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.undo_action.setToolTip(f"Undo {store.undo_label()}" if can_undo else "Nothing to undo")
        self.redo_action.setToolTip(f"Redo {store.redo_label()}" if can_redo else "Nothing to redo")

    def _refresh_tags(self) -> None:
        counts = self.session.tag_frequencies()
        self.tag_panel.set_frequencies(counts)
        self.editor.set_tags([t for t, _c in counts.most_common()])

    # ------------------------------------------------------------ selection and editing
    def current_item(self) -> ImageItem | None:
        index = self.grid.currentIndex()
        return index.data(ItemRole) if index.isValid() else None

    def selected_items(self) -> list[ImageItem]:
        rows = sorted(self.grid.selectionModel().selectedIndexes(), key=lambda i: i.row())
        return [i.data(ItemRole) for i in rows]

    def shown_items(self) -> list[ImageItem]:
        return [self.proxy.index(r, 0).data(ItemRole) for r in range(self.proxy.rowCount())]

    def select_row(self, row: int) -> None:
        index = self.proxy.index(row, 0)
        self.grid.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.editor.flush()  # the edit belongs to the image it was typed for
        item = current.data(ItemRole) if current.isValid() else None
        self._editing = item
        if item is None:
            self.editor.set_caption("")
            self.editor.setEnabled(False)
            return
        self.editor.setEnabled(True)
        self.editor.set_caption(item.caption)
        self._show_info(item)
        self.preview.show_path(str(item.path), (item.width, item.height))

    def _show_info(self, item: ImageItem) -> None:
        size = f"{item.width}×{item.height}" if item.width else "size unknown"
        lines = [f"<b>{item.path.name}</b> — {size}, repeats {item.repeats}"]
        for p in item.problems:
            color = "#c62828" if p.blocking else "#8d6e00"
            lines.append(f"<span style='color:{color}'>{'✖' if p.blocking else '•'} {p.message}</span>")
        self.info.setText("<br>".join(lines))

    def _save_editor(self, text: str) -> None:
        if self._editing is not None:
            self.session.save_caption(self._editing, text)

    def flush(self) -> None:
        """Save the edit being typed and wait for every queued write."""
        self.editor.flush()
        self.session.flush()

    def hideEvent(self, event) -> None:  # noqa: N802 - switching tab or closing the window
        self.editor.flush()
        super().hideEvent(event)

    # ------------------------------------------------------------ tools
    def _on_filter(self, text: str) -> None:
        self.proxy.set_filter_text(text)

    def undo(self) -> None:
        self.editor.flush()
        self.session.undo()

    def redo(self) -> None:
        self.editor.flush()
        self.session.redo()

    def enlarge(self, index) -> None:
        item = index.data(ItemRole) if index.isValid() else None
        if item is not None:
            if self.viewer is None:
                self.viewer = item_actions.PictureViewer(self.window())
            self.viewer.show_item(item)

    def delete_captions(self, items: list[ImageItem]) -> None:
        self.editor.flush()
        self.session.delete_captions(items)

    def reopen_last(self) -> bool:
        """Open the dataset used last time, when it is still there (the app starts where it was)."""
        recent = self.session.recent.items()
        if self.session.root is not None or not recent or not Path(recent[0]).is_dir():
            return False
        return self.open_folder(recent[0])

    def rename_tag(self, old: str, new: str) -> None:
        """Rename (or, with an empty name, delete) a tag in every caption."""
        self.editor.flush()
        self.session.flush()
        self.session.apply(self.session.plan(rename_tag(old, new)))
        renamed = rename_tag_in_filter(self.filter_box.text(), old, new)
        if renamed != self.filter_box.text():
            self.filter_box.setText(renamed)

    def batch_scopes(self) -> list[tuple[str, list[ImageItem]]]:
        scopes = []
        selected = self.selected_items()
        if len(selected) > 0:
            scopes.append(("Selected images", selected))
        if self.proxy.filter_text():
            scopes.append(("Images shown by the filter", self.shown_items()))
        scopes.append(("All images", list(self.session.items)))
        return scopes

    def make_batch_dialog(self) -> BatchDialog:
        self.editor.flush()
        self.session.flush()
        return BatchDialog(self.session, self.batch_scopes(), self)

    def open_batch_tools(self) -> None:
        if self.session.root is None:
            self._on_error("Open a dataset folder first.")
            return
        self.make_batch_dialog().exec()

    def open_auto_caption(self) -> None:
        if self.session.root is None:
            self._on_error("Open a dataset folder first.")
            return
        dialog = CaptionDialog(bool(self.selected_items()), self)
        if dialog.exec():
            images = self.selected_items() if dialog.only_selected.isChecked() else None
            self.start_auto_caption(dialog.values(), images)

    def start_auto_caption(self, values: dict, images: list[ImageItem] | None = None) -> str | None:
        self.editor.flush()
        return self.session.start_captioning(values, images)

    def _on_caption_running(self, running: bool) -> None:
        self.caption_button.setEnabled(not running)
        self.cancel_button.setVisible(running)
        self.progress.setVisible(running or self.session.scanning)
        if running:
            self.progress.setRange(0, 0)
        else:  # "auto-caption: loading …" must not outlive the job (the outcome is in the status line)
            self.progress_label.setText("")

    def _on_caption_progress(self, done: int, total: int, eta, message: str) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        eta_text = format_eta(eta)
        self.progress_label.setText(f"auto-caption: {message}" + (f" — about {eta_text} left" if eta_text else ""))


class _WindowDrop(QObject):
    def __init__(self, tab: DatasetTab, show_tab, parent: QObject) -> None:
        super().__init__(parent)
        self.tab, self.show_tab = tab, show_tab

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if any(Path(p).is_dir() for p in local_paths(event)):
                event.acceptProposedAction()
                return True
        elif event.type() == QEvent.Type.Drop:
            folders = [p for p in local_paths(event) if Path(p).is_dir()]
            if folders:
                if self.show_tab is not None:
                    self.show_tab()
                self.tab.open_folder(folders[0])
                event.acceptProposedAction()
                return True
        return False
