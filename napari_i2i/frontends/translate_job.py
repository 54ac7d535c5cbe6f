"""What the Translate widget runs, apart from its Qt controls: the job copied from the layers,
where results go, the style rule in the widget's words, and the worker thread.

The worker only loads the model and runs :func:`napari_i2i.core.translate.run_translation`;
it never touches napari layers (the widget snapshots them before and adds results after).
The result of a large layer (:func:`writes_into_store`) goes into a
:class:`~napari_i2i.core.filling_store.FillingStore` instead of memory: the worker creates it
and yields a :class:`StoredResult`, which the widget shows at once as a layer that fills in.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from napari.layers import Image
from napari.qt.threading import thread_worker

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.device import resolve_device
from napari_i2i.core.diversity import diversity_result
from napari_i2i.core.filling_store import FillingStore
from napari_i2i.core.image_metadata import translated_metadata
from napari_i2i.core.layer_data import ImageData, layout, output_axes
from napari_i2i.core.model_file import LoadedModel, load_model
from napari_i2i.core.style_inputs import StyleInputs, StyleWords, Wording
from napari_i2i.core.translate import (
    Progress, TranslateOptions, TranslationResult, has_samples_axis, planned_output, run_translation, throttled,
)

# Layers with planes of more pixels than this (or multiscale, or not in memory: dask, zarr) are
# translated into a store on disk rather than into memory: 4096².
STORE_ABOVE_PIXELS = 2**24

# The references list serves four style modes: its label and tooltip say which.
REFERENCE_LABELS = {
    StyleMode.REFERENCE: ("Style reference(s)", "image layers whose style the output takes; codes averaged"),
    StyleMode.MATCHED: (
        "Style references",
        "image layers of several looks (e.g. different tissues): each source plane takes the style "
        "of the one whose content is closest to its own",
    ),
    StyleMode.INTERPOLATE: (
        "Interpolate between",
        "exactly two image layers: the output goes in Steps steps from the style of the first of "
        "them in this list to that of the second (a stack layer counts as one reference)",
    ),
    StyleMode.FEW_SHOT: (
        "Class example(s)",
        "images of the class to translate into: several image layers (any sizes) or one stack "
        "layer whose planes are the examples; K = all their planes",
    ),
}

# The style inputs as the widget names them, for the style rule's refusals.
WIDGET_WORDS = StyleWords(
    references=Wording("style references", "the list of style references"),
    match=Wording("matched mode", "the matched style mode"),
    class_examples=Wording("class examples", "the list of class examples"),
    interpolate=Wording("interpolate mode", "the interpolate style mode"),
    steps=Wording("Steps", "Steps"),
    samples=Wording("Number of samples", "Number of samples"),
    typical=Wording("typical mode", "the typical style mode"),
    front_end="this widget",
)


def style_inputs(mode: StyleMode, n_references: int, n_samples: int) -> StyleInputs:
    """What the widget's controls give in *mode*: its one layer list holds the style references,
    the class examples or the ends of an interpolation; its spinbox counts samples or steps."""
    if mode in (StyleMode.REFERENCE, StyleMode.MATCHED):
        return StyleInputs(references=n_references, match=mode is StyleMode.MATCHED)
    if mode is StyleMode.FEW_SHOT:
        return StyleInputs(class_examples=n_references)
    if mode is StyleMode.INTERPOLATE:
        return StyleInputs(interpolation_ends=n_references, steps=n_samples)
    if mode is StyleMode.TYPICAL:
        return StyleInputs(typical=True)
    return StyleInputs(n_samples=n_samples if mode is StyleMode.RANDOM else 1)


@dataclass(frozen=True)
class TranslationJob:
    """All the worker thread needs, copied from the widget and layers in the main thread."""

    model_path: Path
    engine: str
    device: str
    options: TranslateOptions
    sources: list[ImageData]
    references: list[ImageData]
    # also return, after the translations, each one's diversity map (random styles, 2 or more)
    diversity_map: bool = False
    # per source, the OME-Zarr store its result is written into (writes_into_store), or None: in memory
    stores: tuple[Path | None, ...] = ()


def writes_into_store(layer: Image) -> bool:
    """Whether the result of *layer* goes into a store: a multiscale or lazy (dask, zarr) layer, or
    one of planes over :data:`STORE_ABOVE_PIXELS`."""
    if layer.multiscale or not isinstance(layer.data, np.ndarray):
        return True
    height, width = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
    return height * width > STORE_ABOVE_PIXELS


@dataclass(frozen=True)
class StoredResult:
    """A result being written into a store, yielded by the worker before any tile so that the
    widget shows it at once (with the contrast limits and axes of the finished result)."""

    number: int  # the source it is the result of, by its place in the job
    source: str  # that source's name
    store: FillingStore
    axes: list[int | None]
    contrast_limits: tuple[float, float]


@dataclass(frozen=True)
class Placement:
    """Where a source layer sits in the world, so its translation sits on top of it."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[Any, ...]
    axis_labels: tuple[str, ...]

    @classmethod
    def of(cls, layer: Image) -> Placement:
        return cls(
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
            units=tuple(layer.units),
            axis_labels=tuple(layer.axis_labels),
        )

    def along(self, axes: Sequence[int | None], new_label: str = "sample") -> dict[str, tuple[Any, ...]]:
        """Layer keyword arguments for output axes mapped onto source axes (None: a new axis,
        labelled ``new_label``)."""

        def pick(values: tuple[Any, ...], new: Any) -> tuple[Any, ...]:
            return tuple(new if axis is None else values[axis] for axis in axes)

        return {
            "scale": pick(self.scale, 1.0),
            "translate": pick(self.translate, 0.0),
            "units": pick(self.units, "pixel"),
            "axis_labels": pick(self.axis_labels, new_label),
        }


class TranslationCrashed(Exception):
    """A RuntimeError (most torch failures) from the worker, re-raised under a type superqt reports.

    superqt takes a RuntimeError out of a generator worker for a deleted Qt
    object: it only warns, and emits neither ``errored`` nor ``finished``.
    """


def open_store(loaded: LoadedModel, job: TranslationJob, number: int, path: Path) -> StoredResult:
    """The store at *path* for the result of source *number*, laid out as the result will be."""
    source, options = job.sources[number], job.options
    in_channels, out_channels = loaded.model.capabilities.directions[options.direction]
    plan = layout(source, in_channels)
    planned = planned_output(loaded, options, source.name, plan.shape, source.rgb, plan.dtype)
    spatial = plan.shape[-3:-1] if source.rgb else plan.shape[-2:]
    shape = (*planned.leading_shape, *spatial, *((3,) if planned.rgb else ()))
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = output_axes(plan, out_channels, has_samples_axis(options))
    metadata = translated_metadata(source.image_metadata, axes, has_samples_axis(options), planned.rgb, shape)
    store = FillingStore(path, shape, planned.dtype, planned.rgb, source.pixel_size, metadata)
    return StoredResult(number, source.name, store, axes, plan.intensity_range)


# ignore_errors: the widget reports errors itself instead of re-raising them in Qt's event loop
@thread_worker(start_thread=False, ignore_errors=True)
def translation_worker(
    job: TranslationJob,
) -> Generator[Progress | StoredResult, None, list[TranslationResult]]:
    """Load the model and translate in a worker thread (results of large layers into their
    stores, each announced first); never touches napari layers."""
    try:
        device = resolve_device(job.device)
        yield Progress(0.0, f"loading {job.model_path.name} on {device}")
        loaded = load_model(job.model_path, device=device, engine=job.engine)
        outputs = None
        if any(job.stores):
            outputs = [None] * len(job.stores)
            for number, path in enumerate(job.stores):
                if path is not None:
                    stored = open_store(loaded, job, number, path)
                    yield stored  # the widget shows it before any tile
                    outputs[number] = stored.store
        results = yield from throttled(run_translation(loaded, job.sources, job.options, job.references,
                                                       outputs=outputs))
        if job.diversity_map:
            out_channels = loaded.model.capabilities.directions[job.options.direction][1]
            results += [diversity_result(result, out_channels) for result in results]
        return results
    except RuntimeError as error:
        hint = "; try a smaller tile size" if isinstance(error, torch.OutOfMemoryError) else ""
        raise TranslationCrashed(f"{type(error).__name__}: {error}{hint}") from error
