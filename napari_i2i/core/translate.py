"""The translation job shared by the widget and the CLI.

:func:`run_translation` is a generator: it yields :class:`Progress` after
every tile (so a napari thread worker can report and cancel between tiles)
and returns one :class:`TranslationResult` per source image. It reads the
source (and reference / class example) arrays but never writes to them.

The ``references`` of a job are style references (``StyleMode.REFERENCE``;
``StyleMode.MATCHED``, where each source plane gets the one the engine finds
closest) or class examples (``StyleMode.FEW_SHOT``). Either way every 2-D
plane of every reference image is one image for the engine: a stack of K
planes counts as K references or K class examples. For ``StyleMode.INTERPOLATE``
the references are exactly two images, the ends of the interpolation; each
is one reference for the engine (a stack's planes pooled), and
``n_samples`` is the number of steps from the first to the second.

A job of more than :data:`TIMED_ABOVE_PIXELS` source pixels first times the
model on a small crop (:func:`~napari_i2i.core.job_estimate.estimate_seconds`); when the estimate is
:data:`LONG_JOB_SECONDS` or more, the first :class:`Progress` is a ``notice``
that says so (e.g. "translating 144 megapixels; this will take about 6
minutes on cpu").

``TranslateOptions.precision`` and ``.compile`` choose the arithmetic and whether the model
runs compiled (:mod:`napari_i2i.core.device` decides, :mod:`napari_i2i.core.tiling` applies);
each result's metadata records both.

Lazy sources (``ImageData.lazy``: dask, zarr, a lazily opened file) are read
window by window (:mod:`napari_i2i.core.lazy_images`). With ``outputs``, a
result is written band by band into the array-like given for its source (e.g.
a :class:`napari_i2i.core.stores.PendingOutput`) instead of one array in memory;
the result's ``data`` is then that array-like. Host memory so stays bounded by
the tile, not the image (activations of large jobs go to disk, see
:func:`napari_i2i.core.tiling.translate_tiled`).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest, TranslationModel
from napari_i2i.core.device import compile_pays, precision_autocast, resolve_precision
from napari_i2i.core.image_io import megapixels
from napari_i2i.core.image_metadata import ImageMetadata, translated_metadata
from napari_i2i.core.job_estimate import WARMUP_SIDE, describe_duration, estimate_seconds, plan_tiles, plane_size
from napari_i2i.core.job_progress import run_to_completion, throttled  # noqa: F401 (re-exported)
from napari_i2i.core.layer_data import (
    ImageData, PlaneLayout, arrange, band_writer, layout, output_axes, to_image_array,
)
from napari_i2i.core.lazy_images import LazyPlane, planes_of
from napari_i2i.core.model_file import LoadedModel
from napari_i2i.core.style_request import PreparedStyle, condition, prepare_style
from napari_i2i.core.stages import CompiledStages, Stage, on_device
from napari_i2i.core.tiling import DEFAULT_TILE, reference_crops, translate_tiled


# Jobs with more source pixels than this are timed on a crop before they start.
TIMED_ABOVE_PIXELS = 2**22
# A job estimated to take this long (seconds) or longer is announced.
LONG_JOB_SECONDS = 60.0


@dataclass
class TranslateOptions:
    direction: str
    mode: StyleMode = StyleMode.RANDOM
    n_samples: int = 1
    seed: int = 0
    tile: int = DEFAULT_TILE
    precision: str = "auto"  # auto|fp32|bf16|fp16 (core.device.resolve_precision)
    compile: str = "auto"  # auto|on|off (core.device.compile_pays)


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0…1 over the whole job
    message: str
    notice: bool = False  # a line to show on its own, once (a long job's estimate)


@dataclass(frozen=True)
class PlannedOutput:
    """What :func:`run_translation` will return for one source, known before any work."""

    leading_shape: tuple[int, ...]  # the axes before the 2-D (or RGB) planes
    dtype: np.dtype
    rgb: bool
    axes: tuple[int | None, ...] = ()  # as TranslationResult.axes
    samples_axis: bool = False  # whether the first axis holds the samples (has_samples_axis)


@dataclass
class TranslationResult:
    source: str
    data: np.ndarray  # or the array-like of run_translation's ``outputs``
    rgb: bool
    # for each non-RGB output axis, the source axis it comes from (None: new)
    axes: list[int | None]
    description: str  # e.g. "a2b, 3 random styles (seed 0)"
    contrast_limits: tuple[float, float]
    metadata: dict = field(default_factory=dict)
    image_metadata: ImageMetadata | None = None  # axis and channel names, from the source's (files)


# Class example layers named in a result's description; more are counted, not named.
NAMED_EXAMPLES = 3


def describe_style(
    options: TranslateOptions,
    references: Sequence[ImageData],
    n_examples: int | None = None,
    matched: Sequence[str] = (),
) -> str:
    """E.g. ``a2b, 3 random styles (seed 0)`` or ``translate, few-shot (K=5: glyphs, a, b)``.

    ``n_examples``: for few-shot, the number of example images K, for matched
    styles the number of references (stack planes count one each); defaults to
    one per reference. ``matched``: the references matched styles chose.
    """
    if options.mode is StyleMode.NONE:  # deterministic: the direction says it all
        return options.direction
    if options.mode is StyleMode.RANDOM:
        n = options.n_samples
        styles = f"{n} random style{'s' if n > 1 else ''} (seed {options.seed})"
    elif options.mode is StyleMode.REFERENCE:
        styles = "style of " + ", ".join(r.name for r in references)
    elif options.mode is StyleMode.MATCHED:
        chosen = list(dict.fromkeys(matched))
        named = ", ".join(chosen[:NAMED_EXAMPLES]) + (
            f", +{len(chosen) - NAMED_EXAMPLES} more" if len(chosen) > NAMED_EXAMPLES else "")
        k = len(references) if n_examples is None else n_examples
        styles = f"style of {named} (closest of {k} references)"
    elif options.mode is StyleMode.INTERPOLATE:
        ends = f" from {references[0].name} to {references[1].name}" if len(references) == 2 else ""
        styles = f"{options.n_samples} steps{ends}"
    elif options.mode is StyleMode.FEW_SHOT:
        names = [r.name for r in references[:NAMED_EXAMPLES]]
        if len(references) > NAMED_EXAMPLES:
            names.append(f"+{len(references) - NAMED_EXAMPLES} more")
        k = len(references) if n_examples is None else n_examples
        styles = f"few-shot (K={k}: {', '.join(names)})"
    elif options.mode is StyleMode.TYPICAL:
        styles = "typical style"
    else:
        styles = options.mode.value
    return f"{options.direction}, {styles}"


def result_metadata(
    loaded: LoadedModel,
    options: TranslateOptions,
    references: Sequence[ImageData],
    style: PreparedStyle,
    matched: Sequence[str],
    device: torch.device,
    precision: str = "fp32",
    compiled: bool = False,
) -> dict:
    """What a result layer records of how it was made (``matched``: per source plane, the
    reference whose style it got)."""
    metadata = {
        "model": str(loaded.path),
        "engine": loaded.info.engine,
        "trained": loaded.info.trained,
        "direction": options.direction,
        "style_mode": options.mode.value,
    }
    if options.mode is StyleMode.RANDOM:
        metadata |= {"n_samples": options.n_samples, "seed": options.seed}
    metadata["references"] = [r.name for r in references]
    if matched:
        metadata["matched_references"] = list(matched)
    if options.mode is StyleMode.FEW_SHOT:
        metadata["class_examples"] = [{"name": example.name, "planes": len(example.planes)}
                                      for example in style.examples]
        metadata["n_examples"] = len(style.tensors)
    if options.mode is StyleMode.INTERPOLATE:
        metadata["interpolation"] = {"from": references[0].name, "to": references[1].name,
                                     "steps": options.n_samples}
    return metadata | {"device": str(device), "tile": options.tile, "precision": precision, "compiled": compiled}


def check_options(loaded: LoadedModel, options: TranslateOptions) -> None:
    """Refuse a direction or style mode the model lacks."""
    capabilities = loaded.model.capabilities
    if options.direction not in capabilities.directions:
        raise EngineError(
            f"this {loaded.info.engine} model translates {', '.join(capabilities.directions)}, "
            f"not {options.direction!r}"
        )
    if options.mode not in capabilities.style_modes:
        modes = ", ".join(m.value for m in capabilities.style_modes)
        raise EngineError(f"{loaded.info.engine} offers style modes {modes}, not {options.mode.value!r}")


def check_request(loaded: LoadedModel, sources: Sequence[ImageData], options: TranslateOptions) -> None:
    """Refuse a direction or style mode the model lacks, and a job without sources."""
    check_options(loaded, options)
    if not sources:
        raise EngineError("nothing to translate: no source image given")


def has_samples_axis(options: TranslateOptions) -> bool:
    """Random styles (more than one) and interpolation steps get a leading axis (napari's slider scrubs it)."""
    return (options.mode is StyleMode.RANDOM and options.n_samples > 1) or options.mode is StyleMode.INTERPOLATE


def planned_output(loaded: LoadedModel, options: TranslateOptions, name: str, shape: tuple[int, ...],
                   rgb: bool, dtype: np.dtype) -> PlannedOutput:
    """The layout and dtype of the result for a source of *shape* and *dtype* (e.g. from a file's
    header), so that front ends can check where it goes before any work."""
    check_options(loaded, options)
    in_channels, out_channels = loaded.model.capabilities.directions[options.direction]
    arrangement, samples_axis = arrange(name, shape, rgb, in_channels), has_samples_axis(options)
    leading = ((options.n_samples,) if samples_axis else ()) + arrangement.stack_shape
    if out_channels not in (1, 3):  # channels before Y/X (layer_data.to_image_array)
        leading += (out_channels,)
    dtype = np.dtype(dtype)  # to_image_array keeps integer dtypes and gives float32 otherwise
    return PlannedOutput(leading, dtype if np.issubdtype(dtype, np.integer) else np.dtype(np.float32),
                         out_channels == 3, tuple(output_axes(arrangement, out_channels, samples_axis)),
                         samples_axis)


class PlaneStages:
    """The model's stages for each source plane: the same for all planes, except for matched
    styles, where each plane gets those of the reference the engine finds closest to it."""

    def __init__(self, model: TranslationModel, conditioning: Any, options: TranslateOptions,
                 style: PreparedStyle, device: torch.device, precision: str, compiled: bool) -> None:
        self._model, self._conditioning, self._device = model, conditioning, device
        self._tile, self._names, self._precision = options.tile, style.names, precision
        self._matching, self._compile = options.mode is StyleMode.MATCHED, compiled
        self.compiled: list[CompiledStages] = []
        self._shared = None if self._matching else self._prepare(model.stages(conditioning))

    def _prepare(self, stages: Sequence[Stage]) -> tuple[list[Stage], Stage | None]:
        """Each stage on the device in the job's precision, and the compiled whole (or None)."""
        whole = None
        if self._compile:
            whole = CompiledStages(stages, self._device, self._precision)
            self.compiled.append(whole)
        return [on_device(stage, self._device, self._precision) for stage in stages], whole

    @property
    def used_compiled(self) -> bool:
        """Whether any window ran compiled (windows that share statistics run eager)."""
        return any(compiled.used for compiled in self.compiled)

    def __call__(self, plane: torch.Tensor) -> tuple[list[Stage], Stage | None, str | None]:
        """The stages for *plane*, their compiled whole (or None) and, for matched styles, the
        name of the chosen reference."""
        if self._shared is not None:
            return *self._shared, None
        if isinstance(plane, LazyPlane):
            plane = plane.whole()
        with torch.inference_mode(), precision_autocast(self._precision, self._device):
            matched, position = self._model.match(self._conditioning, reference_crops(plane, self._tile))
        return *self._prepare(self._model.stages(matched)), self._names[position - 1]


def long_job_notice(model: TranslationModel, plane_stages: PlaneStages, sources: Sequence[ImageData],
                    layouts: Sequence[PlaneLayout], options: TranslateOptions,
                    device: torch.device) -> Progress | None:
    """For a job over :data:`TIMED_ABOVE_PIXELS` estimated at :data:`LONG_JOB_SECONDS` or more:
    a notice saying how long it will take."""
    sizes = [(plan.n_planes, *plane_size(plan)) for plan in layouts]
    pixels = sum(planes * height * width for planes, height, width in sizes)
    if pixels <= TIMED_ABOVE_PIXELS:
        return None
    in_channels = model.capabilities.directions[options.direction][0]
    first = next(planes_of(sources[0], layouts[0], in_channels))
    if isinstance(first, LazyPlane):
        first = first.crop(WARMUP_SIDE, WARMUP_SIDE)
    stages = plane_stages(first)[0]  # eager: timing a crop must not compile its size
    seconds = estimate_seconds(model, stages, first, sizes, options.tile, device)
    if seconds < LONG_JOB_SECONDS:
        return None
    return Progress(0.0, f"translating {megapixels(pixels)}; this will take {describe_duration(seconds)} "
                    f"on {device.type}", notice=True)


def compilable_pixels(model: TranslationModel, layouts: Sequence[PlaneLayout], tile: int) -> int:
    """Window pixels of the planes a compiled model would run: those in one window, or all
    where tiles share no statistics (shared statistics re-run stages eagerly, pass by pass)."""
    independent = model.shared_statistics() is None
    pixels = 0
    for plan in layouts:
        tile_plan = plan_tiles(model, *plane_size(plan), tile)
        if independent or tile_plan.n_tiles == 1:
            pixels += plan.n_planes * tile_plan.window_pixels
    return pixels


def translate_plane(
    model: TranslationModel, stages: list[Stage], whole: Stage | None, plane: torch.Tensor | LazyPlane, tile: int,
    device: torch.device, where: str, planes_done: int, total_planes: int, output=None,
) -> Generator[Progress, None, torch.Tensor | None]:
    """One plane through the model tile by tile, reporting progress over the whole job
    (``whole``: the compiled stages or None; ``where`` names the plane; ``planes_done`` of the
    job's ``total_planes`` came before it; ``output``: where bands go, as translate_tiled's)."""
    tile_plan = plan_tiles(model, plane.shape[-2], plane.shape[-1], tile)
    steps = translate_tiled(stages, plane, tile_plan, model.shared_statistics(), device, whole, output)
    while True:
        try:
            done = next(steps)
        except StopIteration as finished:
            return finished.value
        yield Progress((planes_done + done) / total_planes, f"{where}, {tile_plan.n_tiles} tile(s), {done:.0%}")


def run_translation(
    loaded: LoadedModel,
    sources: Sequence[ImageData],
    options: TranslateOptions,
    references: Sequence[ImageData] = (),
    conditioning: Any = None,
    outputs: Sequence[Any] | None = None,
) -> Generator[Progress, None, list[TranslationResult]]:
    """Translate every plane of every source; see the module docstring. ``conditioning``: what
    ``model.condition`` made, already (e.g. a style moved along its axes), used instead of conditioning
    the model on *options*' style. ``outputs``: per source, an array-like of the result's shape
    to write into, or None."""
    model = loaded.model
    check_request(loaded, sources, options)
    in_channels, out_channels = model.capabilities.directions[options.direction]
    device = next(model.parameters()).device
    layouts = [layout(source, in_channels) for source in sources]  # fail early, before work
    # style references and class examples are of the output domain: output channels
    style = prepare_style(options.mode, references, out_channels, options.tile)
    request = StyleRequest(mode=options.mode, direction=options.direction, n_samples=options.n_samples,
                           seed=options.seed, references=style.tensors)
    precision = resolve_precision(options.precision, device)
    pixels = compilable_pixels(model, layouts, options.tile)
    compiled = pixels > 0 and compile_pays(options.compile, pixels, device)
    if conditioning is None:
        conditioning = condition(model, request, style.labels, device)
    plane_stages = PlaneStages(model, conditioning, options, style, device, precision, compiled)
    if (notice := long_job_notice(model, plane_stages, sources, layouts, options, device)) is not None:
        yield notice
    samples_axis = has_samples_axis(options)
    total_planes = sum(plan.n_planes for plan in layouts)
    done_planes = 0
    results = []
    for number, (source, plan) in enumerate(zip(sources, layouts)):
        target = None if outputs is None else outputs[number]
        translated, matched = [], []
        for index, plane in zip(np.ndindex(*plan.stack_shape), planes_of(source, plan, in_channels)):
            stages, whole, matched_reference = plane_stages(plane)
            if matched_reference is not None:
                matched.append(matched_reference)
            where = f"{source.name}: plane {len(translated) + 1}/{plan.n_planes}"
            write = None if target is None else band_writer(target, plan, index, samples_axis)
            translated.append((yield from translate_plane(
                model, stages, whole, plane, options.tile, device, where, done_planes, total_planes, write)))
            done_planes += 1
        data, rgb = (target, out_channels == 3) if target is not None else to_image_array(
            translated, plan, samples_axis)
        axes = output_axes(plan, out_channels, samples_axis)
        results.append(TranslationResult(
            source=source.name, data=data, rgb=rgb, axes=axes,
            description=describe_style(options, references, len(style.tensors), matched),
            contrast_limits=plan.intensity_range,
            metadata=result_metadata(loaded, options, references, style, matched, device, precision,
                                     plane_stages.used_compiled),
            image_metadata=translated_metadata(source.image_metadata, axes, samples_axis, rgb, data.shape),
        ))
    return results
