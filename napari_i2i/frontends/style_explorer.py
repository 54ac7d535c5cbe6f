"""The style explorer: sliders over a multimodal model's style axes, a live preview of the visible
region and *Apply* for the whole image.

Opened from the Translate widget (*Explore styles…*) on its first source layer, starting from the
style its controls choose (one random style, the references' style, or the first end of an
interpolation). The engine says what the axes are (:meth:`TranslationModel.style_axes`); each slider
spans ``±StyleAxes.SPAN`` standard deviations of the training styles. Moving a slider copies the
visible region (at most :data:`PREVIEW_SIDE`² pixels around its centre) in the main thread and hands
it to a worker that computes only the newest request; the preview layer is updated in the main thread.
The worker keeps the crop's content code while the crop stays the same, so a slider move decodes only
(:class:`~napari_i2i.frontends.style_explorer_job.ContentCache`).
"""

from __future__ import annotations

from typing import Any

import napari
import numpy as np
import torch
from magicgui.widgets import Container, FloatSlider, Label, ProgressBar, PushButton
from napari.layers import Image
from napari.utils.notifications import show_error

from napari_i2i.contract.engine_api import EngineError, StyleAxes, StyleMode
from napari_i2i.core.layer_data import ImageData, arrange
from napari_i2i.core.model_file import ModelFileError
from napari_i2i.core.translate import Progress, TranslationResult
from napari_i2i.frontends.layer_choosers import PROGRESS_STEPS, snapshot
from napari_i2i.frontends.style_explorer_job import (
    Exploration,
    ExplorationJob,
    LatestOnly,
    PreviewRequest,
    PreviewResult,
    apply_worker,
    preview,
    start_exploration,
)
from napari_i2i.frontends.translate_job import Placement, TranslationCrashed

PREVIEW_SIDE = 256  # the preview's largest side in pixels: the visible region's centre beyond that
SLIDER_STEP = 0.01
# The Translate widget's style modes an exploration can start from (its first style).
START_MODES = (StyleMode.RANDOM, StyleMode.REFERENCE, StyleMode.INTERPOLATE, StyleMode.TYPICAL)


def check_start_mode(mode: StyleMode | None) -> None:
    if mode not in START_MODES:
        raise EngineError("style exploration starts from a random, reference, interpolated or typical style: "
                          "choose one of those style modes")


def visible_crop(viewer: napari.viewer.Viewer, layer: Image, in_channels: int) -> tuple[ImageData, tuple[int, ...]]:
    """The displayed plane's visible region (its centre, at most :data:`PREVIEW_SIDE` a side),
    copied, and the data index of its first pixel along every axis of the layer."""
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(n) for n in data.shape)
    planes = arrange(layer.name, shape, layer.rgb, in_channels)
    n_stack = len(planes.stack_shape)
    rows_axis = len(shape) - (3 if layer.rgb else 2)
    point = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    index: list[Any] = [int(np.clip(round(point[k]), 0, shape[k] - 1)) for k in range(n_stack)]
    origin = list(index) + [0] * (len(shape) - n_stack)
    between = list(range(n_stack, rows_axis))  # a channel axis before Y/X: kept whole
    index += [slice(None)] * len(between)
    corners = np.asarray(layer.corner_pixels)
    for axis in (rows_axis, rows_axis + 1):
        low, high = int(corners[0, axis]), int(corners[1, axis]) + 1
        if high - low < 2:  # not drawn yet: the whole extent
            low, high = 0, shape[axis]
        size = min(high - low, PREVIEW_SIDE, shape[axis])
        start = int(np.clip((low + high - size) // 2, 0, shape[axis] - size))
        index.append(slice(start, start + size))
        origin[axis] = start
    crop = np.array(data[tuple(index)])  # a copy: the worker never sees the layer's array
    source = snapshot(layer)
    return ImageData(crop, name=layer.name, rgb=layer.rgb, contrast_limits=source.contrast_limits), tuple(origin)


class StyleExplorer(Container):
    """Sliders over the style axes, a live preview layer and *Apply*; see the module docstring."""

    user_errors = (ModelFileError, EngineError, ValueError)

    def __init__(self, viewer: napari.viewer.Viewer, job: ExplorationJob, source: Image) -> None:
        super().__init__()
        self._viewer, self._job, self._source = viewer, job, source
        self.exploration: Exploration | None = None
        self.preview_layer: Image | None = None
        self.sliders: list[FloatSlider] = []
        self.title = Label(value=f"{source.name}: loading {job.model_path.name}…")
        self.axes_box = Container(labels=True)
        self.reset_button = PushButton(text="Reset", enabled=False)
        self.apply_button = PushButton(text="Apply", enabled=False,
                                       tooltip="translate the whole image with this style")
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_STEPS, visible=False)
        self.status = Label(value="")
        self.extend([self.title, self.axes_box, self.reset_button, self.apply_button, self.progress,
                     self.status])
        self.title.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self._queue = LatestOnly(self._preview_off_main_thread, self._show_preview, self._preview_failed)
        self.apply_worker = None
        self.reset_button.changed.connect(self.reset)
        self.apply_button.changed.connect(self.apply)
        self._start()

    # --- start: the model and its axes, in a worker -----------------------------------

    def _start(self) -> None:
        from napari.qt.threading import create_worker

        self.start_worker = create_worker(start_exploration, self._job, _start_thread=False)
        self.start_worker.returned.connect(self._show_axes)
        self.start_worker.errored.connect(self._start_failed)
        self.start_worker.start()

    def _start_failed(self, error: Exception) -> None:
        message = str(error) if isinstance(error, self.user_errors) else f"{type(error).__name__}: {error}"
        self.title.value = f"{self._source.name}: no style exploration"
        self.status.value = message
        show_error(message)

    def _show_axes(self, exploration: Exploration) -> None:
        self.exploration = exploration
        axes = exploration.axes
        self.title.value = f"{self._source.name} → {exploration.start}"
        for label, value in zip(axes.labels, axes.values.tolist()):
            slider = FloatSlider(label=label, value=value, step=SLIDER_STEP,
                                 min=min(-StyleAxes.SPAN, value), max=max(StyleAxes.SPAN, value))
            slider.changed.connect(self.update_preview)
            self.sliders.append(slider)
        self.axes_box.extend(self.sliders)
        self.reset_button.enabled = self.apply_button.enabled = True
        self.update_preview()

    # --- preview --------------------------------------------------------------------

    @property
    def values(self) -> torch.Tensor:
        return torch.tensor([slider.value for slider in self.sliders], dtype=torch.float32)

    @property
    def preview_busy(self) -> bool:
        return self._queue.busy

    def update_preview(self, _value: Any = None) -> None:
        """Copy the visible region and ask for its translation at the sliders' values."""
        if self.exploration is None or self._source not in self._viewer.layers:
            return
        try:
            crop, origin = visible_crop(self._viewer, self._source, self.exploration.channels[0])
        except self.user_errors as error:
            self._preview_failed(str(error))
            return
        self._queue.submit(PreviewRequest(self.values, crop, origin))

    def _preview_off_main_thread(self, request: PreviewRequest) -> PreviewResult:
        return preview(self.exploration, request)

    def _show_preview(self, result: PreviewResult) -> None:
        if self._source not in self._viewer.layers:
            return
        placement = Placement.of(self._source)
        rows_axis = self._source.ndim - 2  # napari's ndim leaves out the RGB axis
        spatial = [rows_axis, rows_axis + 1]
        place = placement.along(spatial)
        origin = [result.request.origin[a] for a in spatial]
        place["translate"] = tuple(t + o * s for t, o, s in zip(place["translate"], origin, place["scale"]))
        if self.preview_layer is None or self.preview_layer not in self._viewer.layers:
            self.preview_layer = self._viewer.add_image(
                result.data, name=f"{self._source.name} [style preview]", rgb=result.rgb,
                contrast_limits=result.request.crop.contrast_limits, **place)
        else:
            self.preview_layer.data = result.data
            self.preview_layer.translate = place["translate"]
        self.status.value = f"preview {result.data.shape[0]}×{result.data.shape[1]} px in {result.seconds * 1000:.0f} ms"

    def _preview_failed(self, message: str) -> None:
        self.status.value = f"preview failed: {message}"
        show_error(message)

    def reset(self, _value: Any = None) -> None:
        """Every slider back to the starting style."""
        if self.exploration is None:
            return
        for slider, value in zip(self.sliders, self.exploration.axes.values.tolist()):
            with slider.changed.blocked():
                slider.value = value
        self.update_preview()

    # --- apply: the whole image -----------------------------------------------------------

    def apply(self, _value: Any = None) -> None:
        """Translate the whole source at the sliders' style in a worker; add it as a result layer."""
        if self.exploration is None or (self.apply_worker is not None and self.apply_worker.is_running):
            return
        if self._source not in self._viewer.layers:
            show_error(f"the layer {self._source.name!r} is gone")
            return
        placement = Placement.of(self._source)
        worker = apply_worker(self.exploration, snapshot(self._source), self.values)
        worker.yielded.connect(self._show_progress)
        worker.returned.connect(lambda result: self._add_result(result, placement))
        worker.errored.connect(self._apply_failed)
        worker.finished.connect(self._apply_finished)
        self.apply_worker = worker
        self.apply_button.enabled = False
        self.progress.visible, self.progress.value = True, 0
        worker.start()

    def _show_progress(self, progress: Progress) -> None:
        self.progress.value = round(progress.fraction * PROGRESS_STEPS)
        self.status.value = progress.message

    def _add_result(self, result: TranslationResult, placement: Placement) -> None:
        self._viewer.add_image(result.data, name=f"{result.source} [{result.description}]", rgb=result.rgb,
                               contrast_limits=result.contrast_limits, metadata={"napari_i2i": result.metadata},
                               **placement.along(result.axes))
        self.status.value = "done: added 1 layer"

    def _apply_failed(self, error: Exception) -> None:
        crashed = isinstance(error, (RuntimeError, TranslationCrashed))
        message = f"{type(error).__name__}: {error}" if crashed else str(error)
        self.status.value = f"failed: {message}"
        show_error(message)

    def _apply_finished(self) -> None:
        self.apply_button.enabled = True
        self.progress.visible = False


def dock_style_explorer(viewer: napari.viewer.Viewer, job: ExplorationJob, source: Image) -> StyleExplorer:
    """A new explorer on *source*, docked on the right of the viewer's window."""
    check_start_mode(job.options.mode)
    explorer = StyleExplorer(viewer, job, source)
    viewer.window.add_dock_widget(explorer, name=f"Style explorer: {source.name}", area="right")
    return explorer
