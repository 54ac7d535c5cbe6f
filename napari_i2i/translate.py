"""The translation job shared by the widget and the CLI.

:func:`run_translation` is a generator: it yields :class:`Progress` after
every tile (so a napari thread worker can report and cancel between tiles)
and returns one :class:`TranslationResult` per source image. It reads the
source arrays but never writes to them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_i2i.device import autocast
from napari_i2i.engine_api import EngineError, StyleMode, StyleRequest
from napari_i2i.layer_data import ImageData, iter_planes, layout, output_axes, to_image_array
from napari_i2i.model_file import LoadedModel
from napari_i2i.tiling import DEFAULT_TILE, TilePlan, reference_crops, translate_tiled


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


def describe_style(options: TranslateOptions, references: Sequence[ImageData]) -> str:
    if options.mode is StyleMode.NONE:  # deterministic: the direction says it all
        return options.direction
    if options.mode is StyleMode.RANDOM:
        n = options.n_samples
        styles = f"{n} random style{'s' if n > 1 else ''} (seed {options.seed})"
    elif options.mode is StyleMode.REFERENCE:
        styles = "style of " + ", ".join(r.name for r in references)
    else:
        styles = options.mode.value
    return f"{options.direction}, {styles}"


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
    if options.mode is StyleMode.REFERENCE:
        _, style_channels = capabilities.directions[options.direction]
        for reference in references:
            for plane in iter_planes(reference, layout(reference, style_channels), style_channels):
                reference_tensors.append(reference_crops(plane, options.tile))
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

    def on_device(stage: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(tile: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), autocast(device):
                return stage(tile)

        return run

    stages = [on_device(stage) for stage in model.stages(conditioning)]

    description = describe_style(options, references)
    samples_axis = options.mode is StyleMode.RANDOM and options.n_samples > 1
    total_planes = sum(p.n_planes for p in layouts)
    done_planes = 0
    results = []
    for source, plan in zip(sources, layouts):
        translated = []
        for plane in iter_planes(source, plan, in_channels):
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
                description=description,
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
