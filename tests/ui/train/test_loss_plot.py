"""The loss plot: a note instead of empty axes, ranges from step 1, a legend that covers nothing."""

from __future__ import annotations

import os

from app.ui.train.loss_plot import EMPTY_TEXT, LossPlot

SHOTS = os.environ.get("LORALOOM_SHOTS")  # a folder: the test also saves what it drew


def _plot(qtbot) -> LossPlot:
    plot = LossPlot()
    plot.resize(520, 260)
    qtbot.addWidget(plot)
    plot.show()
    qtbot.waitExposed(plot)
    return plot


def test_no_axes_before_the_first_point_then_the_curve(qtbot):
    plot = _plot(qtbot)
    assert plot.stack.currentWidget() is plot.empty_label and plot.empty_label.text() == EMPTY_TEXT
    assert not plot.legend.isVisible()
    plot.set_series([1], [0.25], [1e-4], now=True)
    assert plot.stack.currentWidget() is plot.plot and plot.legend.isVisible()
    plot.set_series([], [], [], now=True)  # a new run starts: back to the note
    assert plot.stack.currentWidget() is plot.empty_label


def test_ranges_follow_the_data_from_step_one(qtbot):
    plot = _plot(qtbot)
    plot.set_series([1], [0.25], [1e-4], now=True)
    (x0, x1), (y0, y1) = plot.view_ranges()
    assert x0 == 1 and x1 == 10, "a first point sits at the left of steps 1..10, not alone mid-axis"
    assert y0 < 0.25 < y1 and y1 - y0 < 0.2
    steps = list(range(1, 41))
    losses = [0.3 - i * 0.005 for i in steps]
    plot.set_series(steps, losses, [1e-4] * 40, now=True)
    (x0, x1), (y0, y1) = plot.view_ranges()
    assert (x0, x1) == (1, 40)
    assert y0 < min(losses) and max(losses) < y1 and (y1 - y0) < 2 * (max(losses) - min(losses))
    if SHOTS:
        plot.grab().save(os.path.join(SHOTS, "loss-plot-40-steps.png"))


def test_a_user_zoom_is_kept_until_auto_range(qtbot):
    plot = _plot(qtbot)
    plot.set_series([1, 2, 3], [0.3, 0.2, 0.1], [1e-4] * 3, now=True)
    vb = plot.plot.getPlotItem().vb
    vb.setRange(xRange=(2, 3), padding=0)
    vb.sigRangeChangedManually.emit([True, True])  # what a wheel or drag in the view sends
    plot.set_series([1, 2, 3, 4], [0.3, 0.2, 0.1, 0.1], [1e-4] * 4, now=True)
    assert plot.view_ranges()[0] == [2, 3]
    plot.plot.getPlotItem().autoBtn.clicked.emit(plot.plot.getPlotItem().autoBtn)
    assert plot.view_ranges()[0] == [1, 10]


def test_the_legend_is_outside_the_plotting_area(qtbot):
    plot = _plot(qtbot)
    plot.set_series([1, 2], [0.3, 0.2], [1e-4, 1e-4], now=True)
    assert plot.plot.getPlotItem().legend is None, "no legend drawn over the curves"
    legend_bottom = plot.legend.mapTo(plot, plot.legend.rect().bottomLeft()).y()
    assert legend_bottom <= plot.stack.geometry().top()
    assert all(word in plot.legend.text() for word in ("loss", "smoothed", "learning rate"))
