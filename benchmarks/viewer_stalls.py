"""Main-thread stalls of a real napari viewer while the Translate widget runs and adds its result.

A QTimer asks to fire every 5 ms on the main thread; a gap between two firings longer than that
is a stall the user feels (the viewer cannot redraw or take input). Prints the worst stall and
the count over 50 and 100 ms, during the translation (worker thread) and when the result layer
is added, and beside them what one redraw of the canvas costs (the floor: under Xvfb the OpenGL
is software, so every draw of a large texture is main-thread CPU work). Needs a display: run under
Xvfb, e.g.

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/viewer_stalls.py --size 2048
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch  # noqa: F401  (before Qt: napari + torch)
import torch._dynamo  # noqa: F401  (before napari's OpenGL)

TICK_MS = 5


class StallMeter:
    """Gaps between QTimer firings, filed under the phase current when they ended."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.phase, self.gaps, self._last = "start-up", {}, time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.setdefault(self.phase, []).append((now - self._last) * 1000 - TICK_MS)
        self._last = now

    def report(self) -> None:
        for phase, gaps in self.gaps.items():
            print(f"{phase:12s} worst {max(gaps):6.0f} ms; over 50 ms: {sum(g > 50 for g in gaps):3d}; "
                  f"over 100 ms: {sum(g > 100 for g in gaps):3d}")


def open_viewer(size: int, tile: int):
    """A shown viewer with a ``size``² RGB source and the Translate widget set up for it."""
    import napari
    import numpy as np

    from engines.munit import MunitEngine
    from napari_i2i.contract.engine_api import StyleMode
    from napari_i2i.core.model_file import save_model
    from napari_i2i.frontends.translate_widget import TranslateWidget

    engine = MunitEngine()
    torch.manual_seed(0)
    model_path = Path(tempfile.mkdtemp()) / "munit_small.safetensors"
    save_model(model_path, engine, engine.build(engine.config("small")).eval())
    viewer = napari.Viewer(show=True)
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    source = viewer.add_image(image, name="source", rgb=True)
    widget = TranslateWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model_file.value = model_path
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.RANDOM
    widget.device.value, widget.tile_size.value, widget.compile.value = "cpu", tile, "off"
    return viewer, widget


def redraw_floor(viewer, app, meter, times: int = 10) -> None:
    """Force ``times`` redraws of the canvas, filed as their own phase: no plugin work, only drawing."""
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    meter.phase = "redraw"
    for _ in range(times):
        canvas.update()
        app.processEvents()
        time.sleep(0.02)
        app.processEvents()


def gl_renderer() -> str:
    from vispy.gloo import gl

    return gl.glGetParameter(gl.GL_RENDERER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--progress-interval", type=float, default=None,
                        help="seconds between progress signals (default: the widget's throttle; 0: every tile)")
    args = parser.parse_args()

    from qtpy.QtWidgets import QApplication

    from napari_i2i.core import translate

    if args.progress_interval is not None:  # throttled() reads its default at definition: patch it
        translate.throttled.__defaults__ = (args.progress_interval, *translate.throttled.__defaults__[1:])
    viewer, widget = open_viewer(args.size, args.tile)

    app, meter = QApplication.instance(), StallMeter()
    add_results = widget._add_results  # the widget's slot that adds the result layers

    def timed_add(*a, **k):
        meter.phase = "adding"
        try:
            return add_results(*a, **k)
        finally:
            app.processEvents()  # the first draw of the new layer belongs to adding it
            meter.phase = "after"

    widget._add_results = timed_add
    for phase, seconds in (("start-up", 1), ("idle", 3)):  # idle: the machine's own noise
        meter.phase, until = phase, time.perf_counter() + seconds
        while time.perf_counter() < until:
            app.processEvents()
            time.sleep(0.001)
    redraw_floor(viewer, app, meter)
    started = time.perf_counter()
    meter.phase = "translating"
    widget.run()
    while not widget.run_button.enabled:
        app.processEvents()
        time.sleep(0.001)
    for _ in range(50):
        app.processEvents()
        time.sleep(0.005)
    print(f"{args.size}² RGB, small MUNIT, tile {args.tile}, cpu; {time.perf_counter() - started:.1f} s; "
          f"{widget.status.value}; OpenGL: {gl_renderer()}")
    meter.report()
    viewer.close()


if __name__ == "__main__":
    main()
