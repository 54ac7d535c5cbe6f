"""The Train widget's live loss plot: one curve per loss term, as the run reports them.

pyqtgraph draws it: a Qt widget made for live data (``setData`` on arrays,
automatic downsampling, clipping to the view), with no plotting backend to
set up beside napari's. Points are only stored when they arrive (constant
time each); a timer redraws at most :data:`REDRAW_INTERVAL_MS` apart, so a
fast run cannot flood the main thread with redraws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QTimer

REDRAW_INTERVAL_MS = 250  # at most four redraws a second
PLOT_HEIGHT = 170  # pixels: the dock must still fit on a laptop screen

LossPoints = Iterable[tuple[int, Mapping[str, float]]]  # (iteration, {term: value})


class LossSeries:
    """One term's points, in arrays that grow by doubling: appending costs constant time and
    drawing needs no copy."""

    def __init__(self) -> None:
        self._iterations = np.empty(64)
        self._values = np.empty(64)
        self.size = 0

    @property
    def iterations(self) -> np.ndarray:
        return self._iterations[: self.size]

    @property
    def values(self) -> np.ndarray:
        return self._values[: self.size]

    def append(self, iteration: int, value: float) -> None:
        if self.size == len(self._iterations):
            self._iterations = np.resize(self._iterations, 2 * self.size)
            self._values = np.resize(self._values, 2 * self.size)
        self._iterations[self.size], self._values[self.size] = iteration, value
        self.size += 1

    def drop_from(self, iteration: int) -> None:
        """Forget the points at *iteration* and later (a resumed run redoes them)."""
        self.size = int(np.searchsorted(self.iterations, iteration))


class LossPlot:
    """A plot of a training run's losses against iterations; :attr:`native` is its Qt widget."""

    def __init__(self) -> None:
        self.native = pg.PlotWidget(background="k")
        self.native.setFixedHeight(PLOT_HEIGHT)
        self.native.setLabel("bottom", "iteration")
        self.native.setLabel("left", "loss")
        self.native.showGrid(x=True, y=True, alpha=0.2)
        self.native.addLegend(offset=(-5, 5), labelTextSize="8pt")  # click a term to hide its curve
        self.native.setToolTip("the run's losses; right-click for a log scale, drag and wheel to zoom")
        self._series: dict[str, LossSeries] = {}
        self._curves: dict[str, pg.PlotDataItem] = {}
        self._stale = False
        self._timer = QTimer(self.native)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    def terms(self) -> list[str]:
        """The loss terms plotted, in the order they first came."""
        return list(self._series)

    def points(self, term: str) -> list[tuple[int, float]]:
        """The (iteration, value) points of *term*."""
        series = self._series[term]
        return [(int(i), float(v)) for i, v in zip(series.iterations, series.values)]

    def clear(self) -> None:
        """Forget every curve: a new run starts."""
        self._series.clear()
        for curve in self._curves.values():
            self.native.removeItem(curve)
        self._curves.clear()
        self._stale = False

    def add(self, points: LossPoints) -> None:
        """Store points (cheap; drawn by the next redraw). A point at or before the last one
        replaces the points from there on, as a resumed run's log does."""
        for iteration, losses in points:
            for term, value in losses.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    continue
                series = self._series.setdefault(term, LossSeries())
                if series.size and series.iterations[-1] >= iteration:
                    series.drop_from(iteration)
                series.append(iteration, float(value))
                self._stale = True

    def redraw(self) -> None:
        """Draw what arrived since the last redraw (the timer calls this)."""
        if not self._stale:
            return
        for index, (term, series) in enumerate(self._series.items()):
            curve = self._curves.get(term)
            if curve is None:
                curve = self._curves[term] = self.native.plot(name=term, pen=pg.mkPen(pg.intColor(index, 9), width=1.5))
                curve.setDownsampling(auto=True, method="peak")
                curve.setClipToView(True)
            curve.setData(series.iterations, series.values)
        self._stale = False

    def drawn(self, term: str) -> int:
        """How many points of *term* the last redraw drew."""
        curve = self._curves.get(term)
        return 0 if curve is None else len(curve.xData if curve.xData is not None else ())
