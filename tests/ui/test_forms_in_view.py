"""Nothing hidden: action bars stay in view at 1024x700, and scrolling a form never changes a value."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

SMALL = (1024, 700)


def inside_window(window, widget: QWidget) -> bool:
    """Whether the whole widget is shown inside the window's visible area (not clipped by a scroll)."""
    if not widget.isVisible():
        return False
    top_left = widget.mapTo(window, QPoint(0, 0))
    rect = widget.rect().translated(top_left)
    visible = widget.visibleRegion().boundingRect()
    return window.rect().contains(rect) and visible.size() == widget.size()


def small_window(qtbot, make_window):
    window = make_window()
    window.resize(*SMALL)
    qtbot.waitUntil(lambda: window.size().height() == SMALL[1])
    return window


def test_generate_and_train_action_bars_are_in_view_at_1024x700(qtbot, make_window):
    window = small_window(qtbot, make_window)
    tab = window.generate_tab
    window.tabs.setCurrentWidget(tab)
    qtbot.wait(10)
    for widget in (tab.generate_button, tab.cancel_button, tab.progress, tab.status_label):
        assert inside_window(window, widget), widget
    # An empty required field: said in the bar and next to the field.
    tab.model_picker.setText("")
    tab.generate()
    assert tab.error_label.text() == "base is empty: pick a base model"
    assert inside_window(window, tab.error_label)
    assert tab.base_error.isVisible() and tab.base_error.text() == tab.error_label.text()
    assert "c62828" in tab.model_picker.combo.styleSheet()
    tab.model_picker.setText("tiny")
    tab.generate()
    assert not tab.base_error.isVisible() and tab.model_picker.combo.styleSheet() == ""

    train = window.train_tab
    window.tabs.setCurrentWidget(train)
    qtbot.wait(10)
    for widget in (train.start_button, train.stop_button, train.progress, train.eta_label):
        assert inside_window(window, widget), widget
    train.form.model_picker.setText("")
    assert not train.start()
    assert train.status_label.text().startswith("Base model:") and inside_window(window, train.status_label)
    assert train.form.error_label.text() == train.status_label.text()
    assert "c62828" in train.form.model_picker.combo.styleSheet()


def wheel(widget: QWidget, up: bool = False) -> None:
    delta = 120 if up else -120
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(
        pos,
        QPointF(widget.mapToGlobal(pos.toPoint())),
        QPoint(0, 0),
        QPoint(0, delta),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_form_and_changes_a_value_only_when_focused(qtbot, make_window, tmp_path):
    window = small_window(qtbot, make_window)
    tab = window.generate_tab
    (tmp_path / "a.safetensors").write_bytes(b"")
    tab.add_adapter(str(tmp_path / "a.safetensors"))  # a row with a weight slider, added after the window showed
    qtbot.waitUntil(lambda: len(tab.stack_widget.row_widgets) == 1 and not tab.model.stack.rows[0].loading)
    window.tabs.setCurrentWidget(tab)
    qtbot.wait(10)
    scroll = tab.steps.parentWidget()
    while type(scroll).__name__ != "QScrollArea":
        scroll = scroll.parentWidget()
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0, "the settings must overflow at 1024x700 for this test"
    assert tab.steps.focusPolicy() == Qt.FocusPolicy.StrongFocus
    assert tab.scheduler.focusPolicy() == Qt.FocusPolicy.StrongFocus
    window.activateWindow()
    tab.prompt.setFocus()
    steps, sampler = tab.steps.value(), tab.scheduler.currentIndex()
    slider = tab.stack_widget.row_widgets[0].slider
    weight = slider.value()
    before = bar.value()
    wheel(tab.steps)
    wheel(tab.scheduler)
    wheel(slider)
    assert (tab.steps.value(), tab.scheduler.currentIndex(), slider.value()) == (steps, sampler, weight)
    assert bar.value() > before, "the wheel scrolled the settings instead"

    tab.steps.setFocus()
    qtbot.waitUntil(tab.steps.hasFocus)
    wheel(tab.steps, up=True)
    assert tab.steps.value() == steps + 1  # a focused box takes the wheel as before

    # Rows made later (a Train form field) are guarded as well.
    field = window.train_tab.form.fields["steps"].editor
    assert field.focusPolicy() == Qt.FocusPolicy.StrongFocus or not field.isVisible()
