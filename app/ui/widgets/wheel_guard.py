"""Scrolling a form never changes a value.

A spin box, combo box or slider inside a scroll area takes the mouse wheel only once it
has the focus (a click or Tab gives it); otherwise the wheel scrolls the area, as the
user meant. One filter on the application covers every form, rows added later included:
it gives those widgets ``Qt.StrongFocus`` (no focus by wheel) when they are polished.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollArea,
    QScrollBar,
    QWidget,
)

GUARDED = (QAbstractSpinBox, QComboBox, QAbstractSlider)


def _guarded(widget: QObject) -> bool:
    return isinstance(widget, GUARDED) and not isinstance(widget, QScrollBar)  # a scroll bar is what scrolls


def _scroll_area(widget: QWidget) -> QScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea):
            return parent
        parent = parent.parentWidget()
    return None


class WheelGuard(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if kind == QEvent.Type.Polish and _guarded(watched):
            if watched.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                watched.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        elif kind == QEvent.Type.Wheel and _guarded(watched) and not watched.hasFocus():
            area = _scroll_area(watched)
            if area is not None:
                vertical = abs(event.angleDelta().y()) >= abs(event.angleDelta().x())
                bar = area.verticalScrollBar() if vertical else area.horizontalScrollBar()
                QCoreApplication.sendEvent(bar, event)
                return True
        return False


def install_wheel_guard() -> WheelGuard:
    """Install the filter on the running application (once; later calls return the same one)."""
    app = QApplication.instance()
    guard = app.findChild(WheelGuard)
    if guard is None:
        guard = WheelGuard(app)
        app.installEventFilter(guard)
    return guard
