"""``napari-i2i demo``: napari with the stain sample and the Translate widget ready to run.

The viewer gets the two sample layers (:mod:`napari_i2i.frontends.sample_data`: an IHC
tile and a synthetic H&E-like style reference) and the docked Translate
widget set to the bundled stain model, the IHC tile as source and — where
the model takes references (MUNIT) — the reference layer as style. With a
screenshot file it translates once, shows source, reference and result side
by side, writes the window to a PNG and closes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import napari
import numpy as np
from napari.layers import Image
from PIL import Image as PILImage

from napari_i2i.core.bundled_models import STAIN_MODEL, bundled_model
from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.frontends.translate_widget import TranslateWidget  # imports torch, before Qt starts

PLUGIN = "napari-i2i"
WINDOW_SIZE = (1500, 760)
RUN_TIMEOUT_S = 600.0


class DemoError(Exception):
    """The demo cannot run or its translation failed; the message says why."""


def display_problem() -> str | None:
    """Why Qt could not open a window here (Linux without a display), else None.

    Checked before Qt starts: without a display Qt aborts the process instead
    of raising.
    """
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith(("xcb", "wayland")):
        return None  # the user chose a platform that needs no display server
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display (neither DISPLAY nor WAYLAND_DISPLAY is set); run it in a desktop "
            "session, or headless under Xvfb: xvfb-run -a napari-i2i demo --screenshot FILE")


def new_viewer() -> napari.Viewer:
    """The demo's viewer (tests replace this with their viewer fixture)."""
    return napari.Viewer(title="napari-i2i demo")


def set_up(viewer: napari.Viewer) -> tuple[TranslateWidget, Image, Image]:
    """Add the sample layers and the Translate widget set to the bundled stain model."""
    model = bundled_model(STAIN_MODEL)  # a missing file is a ModelFileError naming the folder
    [source] = viewer.open_sample(PLUGIN, "ihc")
    [reference] = viewer.open_sample(PLUGIN, "he_reference")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Translate")
    widget.model.value = model.path
    if widget.model_path != model.path:
        raise DemoError(f"the Translate widget cannot use {model.path}: {widget.status.value}")
    widget.sources.value = [source]
    if StyleMode.REFERENCE in widget.style_mode.choices:
        widget.style_mode.value = StyleMode.REFERENCE
        widget.references.value = [reference]
    return widget, source, reference


def translate(widget: TranslateWidget, viewer: napari.Viewer, timeout_s: float = RUN_TIMEOUT_S) -> Image:
    """Press Run and process Qt events until the worker is done; the layer it added."""
    before = len(viewer.layers)
    app = napari.qt.get_qapp()
    widget.run()
    deadline = time.monotonic() + timeout_s
    while widget.worker is not None and not widget.run_button.enabled:
        if time.monotonic() > deadline:
            widget.cancel()
            raise DemoError(f"the translation did not finish within {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()
    if len(viewer.layers) != before + 1:
        raise DemoError(f"the translation failed: {widget.status.value}")
    return viewer.layers[-1]


def screenshot(viewer: napari.Viewer, path: Path) -> np.ndarray:
    """Source, reference and result side by side; the whole window (with the dock) to *path*."""
    viewer.canvas.grid.shape = (1, len(viewer.layers))  # one row: source, reference, result
    viewer.canvas.grid.spacing = 0.05
    viewer.canvas.grid.enabled = True
    viewer.reset_view()
    app = napari.qt.get_qapp()
    for _ in range(5):  # let the canvas and the dock lay out and draw
        app.processEvents()
        time.sleep(0.05)
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).convert("RGB").save(path, optimize=True)
    return pixels


def run_demo(screenshot_path: Path | None = None) -> int:
    """Open the demo; with *screenshot_path*, translate, write the PNG and close."""
    problem = display_problem()
    if problem:
        raise DemoError(problem)
    bundled_model(STAIN_MODEL)  # fail before a window opens if the model is missing
    viewer = new_viewer()
    try:
        viewer.window.resize(*WINDOW_SIZE)
        widget, _, _ = set_up(viewer)
        if screenshot_path is None:
            napari.run()  # until the window is closed
            return 0
        result = translate(widget, viewer)
        screenshot(viewer, screenshot_path)
    except BaseException:
        viewer.close()
        raise
    viewer.close()
    print(f"added layer {result.name!r}")
    print(f"wrote {screenshot_path}")
    return 0
