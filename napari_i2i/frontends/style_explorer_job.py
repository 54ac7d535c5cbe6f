"""What the style explorer runs off the main thread: the model and its style axes, the preview of
a crop at the sliders' values, the whole image at them (*Apply*), and a queue that computes only
the newest preview request.

Both run in the precision the Translate widget chose (``auto``: bf16 where the hardware has it),
as a whole translation does. The preview is one window over the crop, without the passes that
share normalisation statistics between tiles (its statistics are the crop's own), and it keeps
the crop's content code (:meth:`TranslationModel.encode_content`) while the crop's pixels stay
the same: a slider move then runs only the decoder.

Nothing here touches napari layers: the panel (:mod:`napari_i2i.frontends.style_explorer`) copies
the crop and the source in the main thread and adds layers when results come back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from napari.qt.threading import GeneratorWorker, thread_worker

from napari_i2i.contract.engine_api import EngineError, StyleAxes, StyleRequest, TranslationModel
from napari_i2i.core.device import precision_autocast, resolve_device, resolve_precision
from napari_i2i.core.layer_data import ImageData, iter_planes, layout, to_image_array
from napari_i2i.core.model_file import LoadedModel, load_model
from napari_i2i.core.style_edits import one_style_options
from napari_i2i.core.style_request import condition, prepare_style
from napari_i2i.core.tiling import DEFAULT_BLEND, TilePlan, translate_tiled
from napari_i2i.core.translate import (
    Progress, TranslateOptions, TranslationResult, describe_style, run_translation,
)


@dataclass(frozen=True)
class ExplorationJob:
    """The model and the style to start from, copied from the Translate widget's controls."""

    model_path: Path
    engine: str
    device: str
    options: TranslateOptions  # direction, style mode, seed, tile, precision
    references: list[ImageData]


class ContentCache:
    """The content code of the last window the preview encoded, reused while its pixels are the
    same (a slider move); a new crop or new pixels (the view moved, the layer changed) re-encode.

    Used by one preview at a time (the explorer's queue runs one request at a time).
    """

    def __init__(self, model: TranslationModel, direction: str) -> None:
        self._model, self._direction = model, direction
        self._window: torch.Tensor | None = None
        self._content: Any = None

    def of(self, window: torch.Tensor) -> Any | None:
        """The content code of *window*, or ``None`` where the engine offers none."""
        if self._window is None or self._window.shape != window.shape or not torch.equal(self._window, window):
            self._content = self._model.encode_content(window, self._direction)
            self._window = window.clone()
        return self._content


@dataclass
class Exploration:
    """A loaded model, the style axes of the starting style and what the description says."""

    loaded: LoadedModel
    axes: StyleAxes
    options: TranslateOptions
    start: str  # e.g. "to_b, 1 random style (seed 3)"
    device: torch.device
    precision: str  # resolved: fp32, bf16 or fp16
    content_cache: ContentCache

    @property
    def model(self) -> TranslationModel:
        return self.loaded.model

    @property
    def channels(self) -> tuple[int, int]:
        return self.model.capabilities.directions[self.options.direction]


def start_exploration(job: ExplorationJob) -> Exploration:
    """Load the model, condition it on the job's style and ask for that style's axes."""
    device = resolve_device(job.device)
    loaded = load_model(job.model_path, device=device, engine=job.engine)
    model, options = loaded.model, job.options
    if options.direction not in model.capabilities.directions:
        raise EngineError(f"this {job.engine} model translates {', '.join(model.capabilities.directions)}, "
                          f"not {options.direction!r}")
    out_channels = model.capabilities.directions[options.direction][1]
    style = prepare_style(options.mode, job.references, out_channels, options.tile)
    request = StyleRequest(options.mode, options.direction, n_samples=options.n_samples, seed=options.seed,
                           references=style.tensors)
    conditioning = condition(model, request, style.labels, device)
    with torch.inference_mode():
        axes = model.style_axes(conditioning)
    if axes is None:
        raise EngineError(f"the {job.engine} engine offers no style exploration")
    return Exploration(loaded, axes, options, describe_style(options, job.references), device,
                       resolve_precision(options.precision, device), ContentCache(model, options.direction))


def _finish(steps: Generator[Any, None, Any]) -> Any:
    """What a generator returns, its yields dropped."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


@dataclass(frozen=True)
class PreviewRequest:
    """One preview: the style at ``values`` over ``crop``, which starts at ``origin`` (data pixels)."""

    values: torch.Tensor
    crop: ImageData
    origin: tuple[int, ...]


@dataclass(frozen=True)
class PreviewResult:
    request: PreviewRequest
    data: np.ndarray
    rgb: bool
    seconds: float


def preview(exploration: Exploration, request: PreviewRequest, reuse_content: bool = True) -> PreviewResult:
    """The crop translated at the request's style in one window, normalised over the crop; with
    ``reuse_content`` (and an engine that offers it) from the crop's cached content code."""
    started = time.perf_counter()
    model, device, crop = exploration.model, exploration.device, request.crop
    in_channels = exploration.channels[0]
    capabilities = model.capabilities
    with torch.inference_mode(), precision_autocast(exploration.precision, device):
        conditioning = exploration.axes.place(request.values)

        def translate_window(window: torch.Tensor) -> torch.Tensor:
            content = exploration.content_cache.of(window) if reuse_content else None
            if content is None:
                return model.translate(window, conditioning)
            return model.decode_content(content, conditioning)

        plan = layout(crop, in_channels)
        planes = []
        for plane in iter_planes(crop, plan, in_channels):
            height, width = plane.shape[-2:]
            multiple = capabilities.size_multiple
            one_window = TilePlan.make(height, width, tile=max(height, width, DEFAULT_BLEND, multiple),
                                       context=capabilities.context, multiple=multiple)
            planes.append(_finish(translate_tiled([translate_window], plane, one_window, None, device)))
    data, rgb = to_image_array(planes, plan, samples_axis=False)
    return PreviewResult(request, data, rgb, time.perf_counter() - started)


def describe_values(axes: StyleAxes, values: torch.Tensor) -> str:
    """The axes moved away from the starting style, e.g. ``component 2 = 1.50``."""
    moved = [f"{label} = {float(value):.2f}" for label, value, start in zip(axes.labels, values, axes.values)
             if abs(float(value) - float(start)) > 1e-6]
    return ", ".join(moved) or "unchanged"


def apply_translation(exploration: Exploration, source: ImageData, values: torch.Tensor
                      ) -> Generator[Progress, None, TranslationResult]:
    """The whole source at the sliders' style: the conditioning the preview builds, translated by
    :func:`run_translation` as the Translate widget's results are (tiled, shared statistics)."""
    with torch.inference_mode():
        conditioning = exploration.axes.place(values)
    options = one_style_options(exploration.options)
    result = (yield from run_translation(exploration.loaded, [source], options, conditioning=conditioning))[0]
    moved = describe_values(exploration.axes, values)
    result.description = f"{exploration.start}, explored: {moved}"
    result.metadata |= {"style_mode": exploration.options.mode.value,
                        "style_axes": dict(zip(exploration.axes.labels, (float(v) for v in values)))}
    return result


@thread_worker(start_thread=False, ignore_errors=True)
def apply_worker(exploration: Exploration, source: ImageData, values: torch.Tensor
                 ) -> Generator[Progress, None, TranslationResult]:
    """:func:`apply_translation` in a napari thread worker."""
    return (yield from apply_translation(exploration, source, values))


class LatestOnly:
    """Runs ``compute`` in a worker thread on the newest submitted request only.

    A request submitted while one is being computed replaces any other one
    waiting; when the running one finishes, only the newest waiting one runs.
    Results (or the error message of a failed request) go to ``deliver`` in
    the main thread.
    """

    def __init__(self, compute: Callable[[Any], Any], deliver: Callable[[Any], None],
                 failed: Callable[[str], None]) -> None:
        self._compute, self._deliver, self._failed = compute, deliver, failed
        self._lock = threading.Lock()
        self._pending: Any = None
        self._busy = False
        self.worker: GeneratorWorker | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

    def submit(self, request: Any) -> None:
        with self._lock:
            self._pending = request
            if self._busy:
                return
            self._busy = True
        self.worker = self._drain()
        self.worker.yielded.connect(self._route)
        self.worker.start()

    def _route(self, outcome: tuple[bool, Any]) -> None:
        ok, value = outcome
        (self._deliver if ok else self._failed)(value)

    @thread_worker(start_thread=False)
    def _drain(self) -> Generator[tuple[bool, Any], None, None]:
        while True:
            with self._lock:
                request, self._pending = self._pending, None
                if request is None:
                    self._busy = False
                    return
            try:
                yield True, self._compute(request)
            except Exception as error:  # noqa: BLE001 (shown to the user; the queue goes on)
                yield False, f"{type(error).__name__}: {error}" if isinstance(error, RuntimeError) else str(error)
