"""The caption editor: plain text with tag autocompletion, saved automatically.

Completion offers the dataset's tags (most frequent first) for the tag under the
cursor (the text since the last separator). Edits are saved after a short pause
(debounced) and at once when another image is picked or the window closes, so
nothing typed is lost.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QStringListModel, Qt, QTimer, Signal
from PySide6.QtGui import QFocusEvent, QKeyEvent, QTextCursor
from PySide6.QtWidgets import QCompleter, QPlainTextEdit, QWidget

from app.core.dataset.captions import DEFAULT_SEPARATOR

SAVE_DELAY_MS = 600


class CaptionEditor(QPlainTextEdit):
    saveRequested = Signal(str)  # the text to save for the current image

    def __init__(self, separator: str = DEFAULT_SEPARATOR, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.separator = separator
        self.setPlaceholderText("Caption: tags separated by commas, or a sentence")
        self.setTabChangesFocus(True)
        self._loading = False
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)
        self.textChanged.connect(self._on_text_changed)
        self._tags = QStringListModel(self)
        self.completer = QCompleter(self._tags, self)
        self.completer.setWidget(self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.completer.activated.connect(self.insert_completion)

    # ------------------------------------------------------------ content
    def set_caption(self, text: str) -> None:
        """Show a caption without treating it as an edit."""
        self._loading = True
        try:
            self.setPlainText(text)
            self.moveCursor(QTextCursor.MoveOperation.End)  # ready to add a tag
        finally:
            self._loading = False
        self._dirty = False
        self._timer.stop()

    def set_tags(self, tags: list[str]) -> None:
        self._tags.setStringList(tags)

    def is_dirty(self) -> bool:
        return self._dirty

    def flush(self) -> None:
        """Save now if there is an unsaved edit."""
        self._timer.stop()
        if self._dirty:
            self._dirty = False
            self.saveRequested.emit(self.toPlainText())

    def _on_text_changed(self) -> None:
        if self._loading:
            return
        self._dirty = True
        self._timer.start()

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        self.flush()
        super().focusOutEvent(event)

    # ------------------------------------------------------------ completion
    def current_prefix(self) -> str:
        cursor = self.textCursor()
        before = self.toPlainText()[: cursor.position()]
        sep = self.separator.strip() or self.separator
        return before.rsplit(sep, 1)[-1].lstrip()

    def insert_completion(self, completion: str) -> None:
        prefix = self.current_prefix()
        cursor = self.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.Left, QTextCursor.MoveMode.KeepAnchor, len(prefix))
        cursor.insertText(completion)
        self.setTextCursor(cursor)
        self.completer.popup().hide()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        popup = self.completer.popup()
        if popup.isVisible() and event.key() in (
            Qt.Key.Key_Enter,
            Qt.Key.Key_Return,
            Qt.Key.Key_Escape,
            Qt.Key.Key_Tab,
            Qt.Key.Key_Backtab,
        ):
            event.ignore()  # the completer handles these
            return
        super().keyPressEvent(event)
        text = event.text()
        prefix = self.current_prefix()
        if not text or not text.isprintable() or len(prefix) < 2:
            popup.hide()
            return
        if prefix != self.completer.completionPrefix():
            self.completer.setCompletionPrefix(prefix)
            popup.setCurrentIndex(self.completer.completionModel().index(0, 0))
        if self.completer.completionCount() == 0:
            popup.hide()
            return
        self.completer.complete(self._popup_rect())

    def _popup_rect(self) -> QRect:
        """Under the cursor, as wide as the longest entry (frame and scroll bar included, else it
        is elided), moved left to stay inside the editor when it fits."""
        popup = self.completer.popup()
        width = popup.sizeHintForColumn(0) + 2 * popup.frameWidth() + popup.verticalScrollBar().sizeHint().width()
        rect = self.cursorRect()
        left = max(0, min(rect.left(), self.viewport().width() - width))
        return QRect(left, rect.top(), width, rect.height())
