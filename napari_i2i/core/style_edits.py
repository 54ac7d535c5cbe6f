"""Style edits: one style moved along the model's style axes (``TranslationModel.style_axes``),
as the style explorer's sliders move it, for a translation of whole images.

An edit ``INDEX=VALUE`` sets axis ``INDEX`` (counted from 0, as the explorer's labels count) to
``VALUE`` in standard units (the training styles have mean 0 and standard deviation 1 along every
axis); axes not edited keep the starting style's value. The starting style is the first of the
job's conditioning: the latent style of ``--seed``, or the style of the references.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from napari_i2i.contract.engine_api import EngineError, StyleMode, StyleRequest, TranslationModel
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.style_request import condition, prepare_style
from napari_i2i.core.translate import TranslateOptions

# Style modes whose first style can be edited: one style per output.
EDITABLE_MODES = (StyleMode.RANDOM, StyleMode.REFERENCE, StyleMode.TYPICAL)


def parse_style_edits(texts: Sequence[str]) -> dict[int, float]:
    """``["3=1.5", "0=-2"]`` → ``{3: 1.5, 0: -2.0}``; a one-line ValueError for bad syntax or an
    axis edited twice."""
    edits: dict[int, float] = {}
    for text in texts:
        index, equals, value = text.partition("=")
        try:
            axis, amount = int(index.strip()), float(value)
        except ValueError:
            raise ValueError(f"style edit {text!r}: write AXIS=VALUE, e.g. 3=1.5 (axis counted from 0)") from None
        if not equals or axis < 0 or not math.isfinite(amount):
            raise ValueError(f"style edit {text!r}: write AXIS=VALUE, e.g. 3=1.5 (axis counted from 0, "
                             "a finite value)")
        if axis in edits:
            raise ValueError(f"style edit {text!r}: axis {axis} is edited twice")
        edits[axis] = amount
    return edits


def check_editable(options: TranslateOptions) -> None:
    """Edits move one style: refuse several samples and the modes with more than one style."""
    if options.mode is StyleMode.NONE:
        raise EngineError("this model gives one output per input: it has no style axes to edit")
    if options.mode not in EDITABLE_MODES:
        raise EngineError(f"style edits start from one latent style (seed), the style of references or a "
                          f"typical style, not from {options.mode.value!r} styles")
    if options.mode is StyleMode.RANDOM and options.n_samples != 1:
        raise EngineError(f"style edits move one style: use one sample, not {options.n_samples}")


def edited_values(model: TranslationModel, conditioning: Any, edits: Mapping[int, float]) -> tuple[Any, torch.Tensor]:
    """The style axes of *conditioning*'s first style and their values with *edits* applied."""
    with torch.inference_mode():
        axes = model.style_axes(conditioning)
    if axes is None:
        raise EngineError(f"{type(model).__name__} has no style axes to edit")
    count = len(axes.labels)
    outside = sorted(axis for axis in edits if not 0 <= axis < count)
    if outside:
        raise EngineError(f"style axis {outside[0]} is out of range: this model's axes are 0 to {count - 1}")
    values = axes.values.clone()
    for axis, value in edits.items():
        values[axis] = value
    return axes, values


def edited_conditioning(model: TranslationModel, options: TranslateOptions, references: Sequence[ImageData],
                        edits: Mapping[int, float], device: torch.device) -> Any:
    """The conditioning of the job's first style with *edits* applied, for
    ``run_translation(..., conditioning=...)``."""
    check_editable(options)
    out_channels = model.capabilities.directions[options.direction][1]
    style = prepare_style(options.mode, references, out_channels, options.tile)
    request = StyleRequest(options.mode, options.direction, n_samples=1, seed=options.seed,
                           references=style.tensors)
    axes, values = edited_values(model, condition(model, request, style.labels, device), edits)
    with torch.inference_mode():
        return axes.place(values)


def one_style_options(options: TranslateOptions) -> TranslateOptions:
    """Options for translating with one given conditioning: one output per source plane (no
    samples axis, no per-plane matching); the conditioning, not the mode, decides the style."""
    return replace(options, mode=StyleMode.RANDOM, n_samples=1)
