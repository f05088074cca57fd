"""The live loss plot (pyqtgraph): raw loss, smoothed loss, and the learning rate on a right axis.

pyqtgraph is imported when the plot is first shown, not when the window opens (it takes
about as long to import as the whole rest of the GUI). Data set before that is kept and
drawn then; redraws are throttled so a fast run cannot flood the event loop.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

REDRAW_MS = 120
SMOOTHING = 0.9
ANTIALIAS_POINTS = 400


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
        self.plot: Any = None  # pyqtgraph.PlotWidget, made on first show
        self.raw: Any = None
        self.smoothed: Any = None
        self.lr_curve: Any = None
        self._series: tuple[list[int], list[float], list[float]] = ([], [], [])
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)

    # ------------------------------------------------------------ data
    def set_series(self, steps: list[int], losses: list[float], lrs: list[float], *, now: bool = False) -> None:
        self._series = (list(steps), list(losses), list(lrs))
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
        plot = pg.PlotWidget(self)
        item = plot.getPlotItem()
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.showGrid(x=True, y=True, alpha=0.15)
        legend = item.addLegend(offset=(-10, 10))
        # Long runs have tens of thousands of steps: draw at most about one point per pixel.
        self.raw = item.plot([], [], pen=pg.mkPen((90, 140, 220, 110), width=1), name="loss", antialias=False,
                             skipFiniteCheck=True, autoDownsampleFactor=1.0)
        self.smoothed = item.plot([], [], pen=pg.mkPen((25, 85, 200), width=2.5), name="smoothed", antialias=True,
                                  skipFiniteCheck=True, autoDownsampleFactor=1.0)
        for curve in (self.raw, self.smoothed):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        # The learning rate has its own scale: a second view box bound to the right axis.
        self.lr_box = pg.ViewBox()
        item.showAxis("right")
        item.scene().addItem(self.lr_box)
        right = item.getAxis("right")
        right.linkToView(self.lr_box)
        right.setLabel("learning rate")
        self.lr_box.setXLink(item)
        self.lr_curve = pg.PlotDataItem(pen=pg.mkPen((230, 130, 30), width=1.5, style=Qt.PenStyle.DashLine),
                                        skipFiniteCheck=True, autoDownsampleFactor=1.0)
        self.lr_curve.setDownsampling(auto=True, method="mean")
        self.lr_curve.setClipToView(True)
        self.lr_box.addItem(self.lr_curve)
        legend.addItem(self.lr_curve, "learning rate")

        def sync() -> None:
            self.lr_box.setGeometry(item.vb.sceneBoundingRect())
            self.lr_box.linkedViewChanged(item.vb, self.lr_box.XAxis)

        item.vb.sigResized.connect(sync)
        self._sync = sync
        self.plot = plot
        self._layout.addWidget(plot)
        sync()

    def redraw(self) -> None:
        if self.plot is None:
            return
        steps, losses, lrs = self._series
        self.raw.setData(steps, losses)
        # Antialiasing a thick line costs ~0.1 ms a point in Qt's raster engine: only for short curves.
        self.smoothed.setData(steps, smooth(losses), antialias=len(steps) <= ANTIALIAS_POINTS)
        self.lr_curve.setData(steps, lrs)
        if lrs:
            low, high = min(lrs), max(lrs)
            pad = (high - low) * 0.1 or abs(high) * 0.1 or 1e-6
            self.lr_box.setYRange(low - pad, high + pad, padding=0)
        self._sync()

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """What is drawn now (for tests and the screenshot check): name -> (x, y)."""
        if self.plot is None:
            return {}
        out = {}
        for name, curve in (("loss", self.raw), ("smoothed", self.smoothed), ("lr", self.lr_curve)):
            x, y = curve.getData()
            out[name] = ([] if x is None else list(x), [] if y is None else list(y))
        return out
