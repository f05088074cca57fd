"""The live loss plot (pyqtgraph): raw loss, smoothed loss, the validation loss (runs with a
[validation] split) and the learning rate on a right axis.

pyqtgraph is imported when the plot is first shown, not when the window opens (it takes
about as long to import as the whole rest of the GUI). Data set before that is kept and
drawn then; redraws are throttled so a fast run cannot flood the event loop.

Until the first step there is nothing to plot, so a sentence stands in for the (meaningless)
empty axes. The ranges follow the data from step 1 (x from the first step to at least ten
steps on, y around the values) until the user pans or zooms; pyqtgraph's "A" button goes back
to following. The legend is a row of its own above the plot, so it never covers a curve.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

REDRAW_MS = 120
SMOOTHING = 0.9
ANTIALIAS_POINTS = 400
MIN_X_SPAN = 9  # the x axis shows at least steps 1..10, so a first point is not a lone dot mid-axis
Y_PAD = 0.08  # share of the y span added above and below
RAW_COLOUR = (90, 140, 220, 110)
SMOOTH_COLOUR = (25, 85, 200)
LR_COLOUR = (230, 130, 30)
VAL_COLOUR = (200, 40, 120)
EMPTY_TEXT = "The loss is drawn here from the first training step."


def data_ranges(steps: list[int], values: list[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The (x, y) ranges that show ``values`` from the first step: never a zero span, and x grows
    with the run instead of being centred on a single point."""
    first, last = steps[0], steps[-1]
    x = (float(first), float(max(last, first + MIN_X_SPAN)))
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = (high - low) * Y_PAD or abs(high) * 0.1 or 0.1
    return x, (low - pad, high + pad)


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): starts at the
    first value instead of rising from zero."""
    out: list[float] = []
    last = 0.0
    for i, value in enumerate(values, 1):
        last = weight * last + (1.0 - weight) * value
        out.append(last / (1.0 - weight**i))
    return out


class LossPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(160)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.legend = QLabel(_legend_html(), self)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setVisible(False)
        self.stack = QStackedWidget(self)
        self.empty_label = QLabel(EMPTY_TEXT, self.stack)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setEnabled(False)  # drawn greyed: a note, not content
        self.stack.addWidget(self.empty_label)
        self._layout.addWidget(self.legend)
        self._layout.addWidget(self.stack, 1)
        self.following = True  # the ranges follow the data until the user pans or zooms
        self.plot: Any = None  # pyqtgraph.PlotWidget, made on first show
        self.raw: Any = None
        self.smoothed: Any = None
        self.lr_curve: Any = None
        self.val_curve: Any = None
        self._series: tuple[list[int], list[float], list[float]] = ([], [], [])
        self._val: tuple[list[int], list[float]] = ([], [])
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)

    # ------------------------------------------------------------ data
    def set_series(
        self,
        steps: list[int],
        losses: list[float],
        lrs: list[float],
        *,
        val: tuple[list[int], list[float]] = ([], []),
        now: bool = False,
    ) -> None:
        """The training curve, and ``val``: (steps, validation losses) drawn beside it."""
        self._series = (list(steps), list(losses), list(lrs))
        self._val = (list(val[0]), list(val[1]))
        if now:
            self.redraw()
        elif not self._timer.isActive():
            self._timer.start()

    def series(self) -> tuple[list[int], list[float], list[float]]:
        return self._series

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self.plot is None:
            self.ensure_plot()
            self.redraw()

    def ensure_plot(self) -> None:
        if self.plot is not None:
            return
        import pyqtgraph as pg

        pg.setConfigOptions(background=None, foreground=self.palette().text().color())
        plot = pg.PlotWidget(self.stack)
        item = plot.getPlotItem()
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.showGrid(x=True, y=True, alpha=0.15)
        item.vb.disableAutoRange()  # data_ranges() decides while following (see the module note)
        item.vb.sigRangeChangedManually.connect(self._stop_following)
        item.autoBtn.clicked.connect(self._follow_again)
        # Long runs have tens of thousands of steps: draw at most about one point per pixel.
        self.raw = item.plot(
            [], [], pen=pg.mkPen(RAW_COLOUR, width=1), antialias=False, skipFiniteCheck=True, autoDownsampleFactor=1.0
        )
        self.smoothed = item.plot(
            [],
            [],
            pen=pg.mkPen(SMOOTH_COLOUR, width=2.5),
            antialias=True,
            skipFiniteCheck=True,
            autoDownsampleFactor=1.0,
        )
        for curve in (self.raw, self.smoothed):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        # Validation losses are few (every K steps): a line with a dot at each measurement.
        self.val_curve = item.plot(
            [], [], pen=pg.mkPen(VAL_COLOUR, width=2), symbol="o", symbolSize=6, symbolBrush=VAL_COLOUR
        )
        # The learning rate has its own scale: a second view box bound to the right axis.
        self.lr_box = pg.ViewBox()
        item.showAxis("right")
        item.scene().addItem(self.lr_box)
        right = item.getAxis("right")
        right.linkToView(self.lr_box)
        right.setLabel("learning rate")
        self.lr_box.setXLink(item)
        self.lr_curve = pg.PlotDataItem(
            pen=pg.mkPen(LR_COLOUR, width=1.5, style=Qt.PenStyle.DashLine),
            skipFiniteCheck=True,
            autoDownsampleFactor=1.0,
        )
        self.lr_curve.setDownsampling(auto=True, method="mean")
        self.lr_curve.setClipToView(True)
        self.lr_box.addItem(self.lr_curve)

        def sync() -> None:
            self.lr_box.setGeometry(item.vb.sceneBoundingRect())
            self.lr_box.linkedViewChanged(item.vb, self.lr_box.XAxis)

        item.vb.sigResized.connect(sync)
        self._sync = sync
        self.plot = plot
        self.stack.addWidget(plot)
        sync()

    def _stop_following(self, *_args) -> None:
        self.following = False

    def _follow_again(self) -> None:
        self.following = True
        self.plot.getPlotItem().vb.disableAutoRange()  # pyqtgraph's button turned its own back on
        self.redraw()

    def redraw(self) -> None:
        if self.plot is None:
            return
        steps, losses, lrs = self._series
        has_data = bool(steps)
        self.stack.setCurrentWidget(self.plot if has_data else self.empty_label)
        self.legend.setVisible(has_data)
        self.raw.setData(steps, losses)
        # Antialiasing a thick line costs ~0.1 ms a point in Qt's raster engine: only for short curves.
        self.smoothed.setData(steps, smooth(losses), antialias=len(steps) <= ANTIALIAS_POINTS)
        self.lr_curve.setData(steps, lrs)
        val_steps, val_losses = self._val
        self.val_curve.setData(val_steps, val_losses)
        self.legend.setText(_legend_html(bool(val_steps)))
        if lrs:
            low, high = min(lrs), max(lrs)
            pad = (high - low) * 0.1 or abs(high) * 0.1 or 1e-6
            self.lr_box.setYRange(low - pad, high + pad, padding=0)
        if has_data and self.following:
            x_range, y_range = data_ranges(steps, losses + val_losses)  # x: the steps; y: both curves
            self.plot.getPlotItem().vb.setRange(xRange=x_range, yRange=y_range, padding=0)
        self._sync()

    def view_ranges(self) -> tuple[list[float], list[float]]:
        """The visible (x, y) ranges of the loss axes (for tests)."""
        return self.plot.getPlotItem().vb.viewRange()

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """What is drawn now (for tests and the screenshot check): name -> (x, y)."""
        if self.plot is None:
            return {}
        out = {}
        named = (("loss", self.raw), ("smoothed", self.smoothed), ("lr", self.lr_curve), ("validation", self.val_curve))
        for name, curve in named:
            x, y = curve.getData()
            out[name] = ([] if x is None else list(x), [] if y is None else list(y))
        return out


def _legend_html(validation: bool = False) -> str:
    def swatch(colour: tuple[int, ...], text: str, dash: bool = False) -> str:
        r, g, b = colour[:3]
        return f'<span style="color:rgb({r},{g},{b})">{"╌╌" if dash else "━━"}</span>&nbsp;{text}'

    return "&nbsp;&nbsp;&nbsp;".join(
        [
            swatch(RAW_COLOUR, "loss"),
            swatch(SMOOTH_COLOUR, "smoothed"),
            *([swatch(VAL_COLOUR, "validation loss")] if validation else []),
            swatch(LR_COLOUR, "learning rate (right axis)", dash=True),
        ]
    )
