"""Batch tag tools: pick an operation and the images, see how many captions will change, apply.

The dialog builds a :class:`TagOperation` from its fields and asks the session for a
plan; nothing is written until Apply (and Undo restores every file).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.dataset.captions import split_tags
from app.core.dataset.scan import ImageItem
from app.core.dataset.tag_ops import Plan, Position, TagOperation, TagOpError, TagOpKind
from app.ui.dataset.dataset_ops import DatasetSession

OPERATIONS = [
    ("Add tags at the front", TagOpKind.ADD, Position.FRONT),
    ("Add tags at the back", TagOpKind.ADD, Position.BACK),
    ("Remove tags", TagOpKind.REMOVE, Position.BACK),
    ("Rename / replace", TagOpKind.REPLACE, Position.BACK),
    ("Remove duplicate tags", TagOpKind.DEDUPE, Position.BACK),
    ("Sort tags", TagOpKind.SORT, Position.BACK),
    ("Move trigger word to the front", TagOpKind.TRIGGER_FRONT, Position.BACK),
]


class BatchDialog(QDialog):
    def __init__(
        self, session: DatasetSession, scopes: list[tuple[str, list[ImageItem]]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch tag tools")
        self.session = session
        self.scopes = scopes
        self.plan: Plan | None = None
        self.operation = QComboBox(self)
        for label, _kind, _pos in OPERATIONS:
            self.operation.addItem(label)
        self.scope = QComboBox(self)
        for label, items in scopes:
            self.scope.addItem(f"{label} ({len(items)})")
        # A selection of several images is what the user means; one selected image is just "current".
        several = [i for i, (_label, items) in enumerate(scopes) if len(items) > 1]
        self.scope.setCurrentIndex(several[0] if several and several[0] == 0 else len(scopes) - 1)
        self.tags = QLineEdit(self)
        self.tags.setPlaceholderText("tags, separated by commas")
        self.find = QLineEdit(self)
        self.replacement = QLineEdit(self)
        self.replacement.setPlaceholderText("empty: remove what matches")
        self.regex = QCheckBox("Regular expression", self)
        self.whole_tag = QCheckBox("Match whole tags only", self)
        self.whole_tag.setChecked(True)
        self.ignore_case = QCheckBox("Ignore case", self)
        self.keep_first = QSpinBox(self)
        self.keep_first.setRange(0, 50)
        self.keep_first.setToolTip("Leave the first N tags (e.g. the trigger word) where they are.")
        self.add_missing = QCheckBox("Add it where it is missing", self)
        self.add_missing.setChecked(True)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Operation", self.operation)
        form.addRow("Images", self.scope)
        form.addRow("Tags", self.tags)
        form.addRow("Find", self.find)
        form.addRow("Replace with", self.replacement)
        form.addRow("", self.regex)
        form.addRow("", self.whole_tag)
        form.addRow("", self.ignore_case)
        form.addRow("Keep first", self.keep_first)
        form.addRow("", self.add_missing)
        self._form = form
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.clicked.connect(self.apply)
        # Enter applies (the dialog's purpose), Escape cancels; Cancel never takes the Enter key.
        self.apply_button.setDefault(True)
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setAutoDefault(False)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self.update_plan)
        for signal in (
            self.operation.currentIndexChanged,
            self.scope.currentIndexChanged,
            self.tags.textChanged,
            self.find.textChanged,
            self.replacement.textChanged,
            self.regex.toggled,
            self.whole_tag.toggled,
            self.ignore_case.toggled,
            self.keep_first.valueChanged,
            self.add_missing.toggled,
        ):
            signal.connect(self._timer.start)
        self.operation.currentIndexChanged.connect(self._show_fields)
        self._show_fields()
        self.update_plan()

    # ------------------------------------------------------------ building the operation
    def _kind(self) -> tuple[TagOpKind, Position]:
        _label, kind, position = OPERATIONS[self.operation.currentIndex()]
        return kind, position

    def _show_fields(self) -> None:
        kind, _pos = self._kind()
        visible = {
            self.tags: kind in (TagOpKind.ADD, TagOpKind.REMOVE, TagOpKind.TRIGGER_FRONT),
            self.find: kind is TagOpKind.REPLACE,
            self.replacement: kind is TagOpKind.REPLACE,
            self.regex: kind in (TagOpKind.REMOVE, TagOpKind.REPLACE),
            self.whole_tag: kind is TagOpKind.REPLACE,
            self.ignore_case: kind in (TagOpKind.REMOVE, TagOpKind.REPLACE, TagOpKind.DEDUPE),
            self.keep_first: kind is TagOpKind.SORT,
            self.add_missing: kind is TagOpKind.TRIGGER_FRONT,
        }
        for widget, show in visible.items():
            self._form.setRowVisible(widget, show)
        self.tags.setPlaceholderText(
            "the trigger word" if kind is TagOpKind.TRIGGER_FRONT else "tags, separated by commas"
        )

    def operation_from_fields(self) -> TagOperation:
        kind, position = self._kind()
        tags = tuple(split_tags(self.tags.text(), ", "))
        if kind is TagOpKind.TRIGGER_FRONT:
            tags = (self.tags.text().strip(),) if self.tags.text().strip() else ()
        return TagOperation(
            kind,
            tags=tags,
            position=position,
            find=self.find.text(),
            replacement=self.replacement.text(),
            regex=self.regex.isChecked(),
            whole_tag=self.whole_tag.isChecked(),
            keep_first=self.keep_first.value(),
            add_if_missing=self.add_missing.isChecked(),
            ignore_case=self.ignore_case.isChecked(),
        )

    def selected_items(self) -> list[ImageItem]:
        return self.scopes[self.scope.currentIndex()][1] if self.scopes else []

    def update_plan(self) -> None:
        self._timer.stop()
        try:
            op = self.operation_from_fields()
        except TagOpError as exc:
            self.plan = None
            self.summary.setText(str(exc)[0].upper() + str(exc)[1:] + ".")
            self.apply_button.setEnabled(False)
            return
        items = self.selected_items()
        self.plan = self.session.plan(op, items)
        skipped = f"; {len(self.plan.skipped)} skipped (caption not UTF-8)" if self.plan.skipped else ""
        self.summary.setText(
            f"{op.describe().capitalize()}: {self.plan.count} of {len(items)} caption files will change{skipped}."
        )
        self.apply_button.setEnabled(self.plan.count > 0)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        # Enter right after typing: the plan's refresh timer may not have enabled Apply yet.
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not event.modifiers() & ~(
            Qt.KeyboardModifier.KeypadModifier
        ):
            self.apply()
            return
        super().keyPressEvent(event)

    def apply(self) -> None:
        self.update_plan()
        if self.plan is not None and self.plan.count:
            self.session.apply(self.plan)
            self.accept()
