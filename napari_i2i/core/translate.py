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
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_i2i.core.device import autocast
from napari_i2i.contract.engine_api import (
    EngineError,
    ReferenceImageError,
    StyleMode,
    StyleRequest,
)
from napari_i2i.core.layer_data import (
    ImageData,
    LayerDataError,
    iter_planes,
    layout,
    output_axes,
    to_image_array,
)
from napari_i2i.core.model_file import LoadedModel
from napari_i2i.core.tiling import DEFAULT_TILE, TilePlan, reference_crops, translate_tiled


@dataclass
class TranslateOptions:
    direction: str
    mode: StyleMode = StyleMode.RANDOM
    n_samples: int = 1
    seed: int = 0
    tile: int = DEFAULT_TILE


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0…1 over the whole job
    message: str


@dataclass
class TranslationResult:
    source: str
    data: np.ndarray
    rgb: bool
    # for each non-RGB output axis, the source axis it comes from (None: new)
    axes: list[int | None]
    description: str  # e.g. "a2b, 3 random styles (seed 0)"
    contrast_limits: tuple[float, float]
    metadata: dict = field(default_factory=dict)


# Class example layers named in a result's description; more are counted, not named.
NAMED_EXAMPLES = 3


@dataclass(frozen=True)
class ClassExample:
    """One class example image (layer or file) as the engine gets it: one tensor per plane."""

    name: str
    planes: list[torch.Tensor]  # each (n_crops, C, h, w) in [-1, 1]


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
    else:
        styles = options.mode.value
    return f"{options.direction}, {styles}"


def class_examples(
    references: Sequence[ImageData], channels: int, tile: int
) -> list[ClassExample]:
    """Each example image's planes as model tensors, large ones cut into ``tile``-sized crops.

    Raises :class:`EngineError` without examples and :class:`LayerDataError`
    (naming the example) for one the model cannot take.
    """
    if not references:
        raise EngineError(
            "few-shot translation needs at least one class example: an image of the class "
            "to translate into (several images, or one stack whose planes are the examples)"
        )
    examples = []
    for reference in references:
        try:
            plan = layout(reference, channels)
        except LayerDataError as error:
            raise LayerDataError(f"class example {error}") from None
        planes = [reference_crops(plane, tile) for plane in iter_planes(reference, plan, channels)]
        examples.append(ClassExample(reference.name, planes))
    return examples


def interpolation_ends(references: Sequence[ImageData], channels: int, tile: int) -> list[torch.Tensor]:
    """The two ends of a style interpolation: per reference image one tensor, its planes' crops.

    Raises :class:`EngineError` unless there are exactly two references and
    :class:`LayerDataError` (naming the reference) for one the model cannot take.
    """
    if len(references) != 2:
        raise EngineError(
            "style interpolation goes from the style of one reference image to that of another: "
            f"choose exactly 2 reference images, not {len(references)}"
        )
    ends = []
    for number, reference in enumerate(references, 1):
        try:
            plan = layout(reference, channels)
        except LayerDataError as error:
            raise LayerDataError(f"reference {number} {error}") from None
        ends.append(torch.cat([reference_crops(plane, tile) for plane in iter_planes(reference, plan, channels)]))
    return ends


def _plane_labels(images: Sequence[ImageData], planes: Sequence[int], quoted: bool = True) -> list[str]:
    """How to name each image (each plane of a stack) that a style request carries."""
    return [(repr(image.name) if quoted else image.name) + ("" if count == 1 else f" plane {plane + 1}")
            for image, count in zip(images, planes, strict=True) for plane in range(count)]


def run_translation(
    loaded: LoadedModel,
    sources: Sequence[ImageData],
    options: TranslateOptions,
    references: Sequence[ImageData] = (),
) -> Generator[Progress, None, list[TranslationResult]]:
    model = loaded.model
    capabilities = model.capabilities
    if options.direction not in capabilities.directions:
        raise EngineError(
            f"this {loaded.info.engine} model translates {', '.join(capabilities.directions)}, "
            f"not {options.direction!r}"
        )
    if options.mode not in capabilities.style_modes:
        modes = ", ".join(m.value for m in capabilities.style_modes)
        raise EngineError(f"{loaded.info.engine} offers style modes {modes}, not {options.mode.value!r}")
    if not sources:
        raise EngineError("nothing to translate: no source image given")
    in_channels, out_channels = capabilities.directions[options.direction]
    device = next(model.parameters()).device
    layouts = [layout(source, in_channels) for source in sources]  # fail early, before work

    reference_tensors: list[torch.Tensor] = []
    examples: list[ClassExample] = []
    labels: list[str] = []  # what each of reference_tensors is, for errors
    _, style_channels = capabilities.directions[options.direction]
    if options.mode in (StyleMode.REFERENCE, StyleMode.MATCHED):
        planes = []
        for reference in references:
            crops = [reference_crops(plane, options.tile)
                     for plane in iter_planes(reference, layout(reference, style_channels), style_channels)]
            reference_tensors += crops
            planes.append(len(crops))
        labels = _plane_labels(references, planes)
        reference_names = _plane_labels(references, planes, quoted=False)
    elif options.mode is StyleMode.FEW_SHOT:  # examples of the output class: output channels
        examples = class_examples(references, style_channels, options.tile)
        reference_tensors = [plane for example in examples for plane in example.planes]
        labels = _plane_labels(references, [len(example.planes) for example in examples])
    elif options.mode is StyleMode.INTERPOLATE:  # two references of the output domain
        reference_tensors = interpolation_ends(references, style_channels, options.tile)
        labels = [repr(reference.name) for reference in references]
    try:
        with torch.inference_mode(), autocast(device):
            conditioning = model.condition(
                StyleRequest(
                    mode=options.mode,
                    direction=options.direction,
                    n_samples=options.n_samples,
                    seed=options.seed,
                    references=reference_tensors,
                )
            )
    except ReferenceImageError as error:
        if not 1 <= error.position <= len(labels):
            raise
        raise ReferenceImageError(f"{error} (image {labels[error.position - 1]})", error.position) from error

    def on_device(stage: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(tile: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), autocast(device):
                return stage(tile)

        return run

    def plane_stages(plane: torch.Tensor) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], str | None]:
        """The model's stages for one source plane and, for matched styles, the chosen reference."""
        if not matching:
            return shared_stages, None
        with torch.inference_mode(), autocast(device):
            matched, position = model.match(conditioning, reference_crops(plane, options.tile))
        return [on_device(stage) for stage in model.stages(matched)], reference_names[position - 1]

    matching = options.mode is StyleMode.MATCHED  # stages per plane, once its reference is chosen
    shared_stages = [] if matching else [on_device(stage) for stage in model.stages(conditioning)]

    # random styles and interpolation steps get a leading axis (napari's slider scrubs it)
    samples_axis = (options.mode is StyleMode.RANDOM and options.n_samples > 1) or (
        options.mode is StyleMode.INTERPOLATE
    )
    total_planes = sum(p.n_planes for p in layouts)
    done_planes = 0
    results = []
    for source, plan in zip(sources, layouts):
        translated, matched_references = [], []
        for plane in iter_planes(source, plan, in_channels):
            stages, matched_reference = plane_stages(plane)
            if matched_reference is not None:
                matched_references.append(matched_reference)
            tile_plan = TilePlan.make(
                plane.shape[-2],
                plane.shape[-1],
                tile=options.tile,
                context=capabilities.context,
                multiple=capabilities.size_multiple,
            )
            steps = translate_tiled(stages, plane, tile_plan, model.shared_statistics(), device)
            while True:
                try:
                    done = next(steps)
                except StopIteration as finished:
                    translated.append(finished.value)
                    break
                yield Progress(
                    (done_planes + done) / total_planes,
                    f"{source.name}: plane {len(translated) + 1}/{plan.n_planes}, "
                    f"{tile_plan.n_tiles} tile(s), {done:.0%}",
                )
            done_planes += 1
        data, rgb = to_image_array(translated, plan, samples_axis)
        results.append(
            TranslationResult(
                source=source.name,
                data=data,
                rgb=rgb,
                axes=output_axes(plan, out_channels, samples_axis),
                description=describe_style(options, references, len(reference_tensors), matched_references),
                contrast_limits=plan.intensity_range,
                metadata={
                    "model": str(loaded.path),
                    "engine": loaded.info.engine,
                    "trained": loaded.info.trained,
                    "direction": options.direction,
                    "style_mode": options.mode.value,
                    **(
                        {"n_samples": options.n_samples, "seed": options.seed}
                        if options.mode is StyleMode.RANDOM
                        else {}
                    ),
                    "references": [r.name for r in references],
                    # per source plane, the reference whose style it got
                    **({"matched_references": matched_references} if matched_references else {}),
                    **(
                        {
                            "class_examples": [
                                {"name": example.name, "planes": len(example.planes)}
                                for example in examples
                            ],
                            "n_examples": len(reference_tensors),
                        }
                        if options.mode is StyleMode.FEW_SHOT
                        else {}
                    ),
                    **(
                        {
                            "interpolation": {
                                "from": references[0].name,
                                "to": references[1].name,
                                "steps": options.n_samples,
                            }
                        }
                        if options.mode is StyleMode.INTERPOLATE
                        else {}
                    ),
                    "device": str(device),
                    "tile": options.tile,
                },
            )
        )
    return results


def run_to_completion(steps: Generator[Progress, None, list[TranslationResult]]) -> list[TranslationResult]:
    """Drive :func:`run_translation` without reporting progress."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value
