"""The style part of a translation job: reference images as model tensors, and the model's
conditioning on them, with errors that name the image (and plane) at fault.

Every 2-D plane of a style reference or class example is one image for the
engine; the two ends of an interpolation are one image each (a stack's planes pooled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from napari_i2i.contract.engine_api import (
    ReferenceImageError,
    StyleMode,
    StyleRequest,
    TranslationModel,
)
from napari_i2i.core.device import autocast
from napari_i2i.core.layer_data import ImageData, LayerDataError, iter_planes, layout
from napari_i2i.core.style_choice import require_class_examples, require_interpolation_ends
from napari_i2i.core.tiling import reference_crops


@dataclass(frozen=True)
class ClassExample:
    """One class example image (layer or file) as the engine gets it: one tensor per plane."""

    name: str
    planes: list[torch.Tensor]  # each (n_crops, C, h, w) in [-1, 1]


@dataclass(frozen=True)
class PreparedStyle:
    """The reference images of a job as the engine gets them, and what to call each."""

    tensors: list[torch.Tensor] = field(default_factory=list)  # StyleRequest.references
    labels: list[str] = field(default_factory=list)  # per tensor, quoted: for errors
    names: list[str] = field(default_factory=list)  # per tensor of style references: for matched styles
    examples: list[ClassExample] = field(default_factory=list)  # few-shot only


def class_examples(
    references: Sequence[ImageData], channels: int, tile: int
) -> list[ClassExample]:
    """Each example image's planes as model tensors, large ones cut into ``tile``-sized crops.

    Raises :class:`EngineError` without examples and :class:`LayerDataError`
    (naming the example) for one the model cannot take.
    """
    require_class_examples(len(references))
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
    require_interpolation_ends(len(references))
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


def prepare_style(mode: StyleMode, references: Sequence[ImageData], channels: int, tile: int) -> PreparedStyle:
    """The references of a job in *mode* as tensors of the model's output ``channels``
    (style references and class examples are of the output domain)."""
    if mode in (StyleMode.REFERENCE, StyleMode.MATCHED):
        tensors, planes = [], []
        for reference in references:
            crops = [reference_crops(plane, tile)
                     for plane in iter_planes(reference, layout(reference, channels), channels)]
            tensors += crops
            planes.append(len(crops))
        return PreparedStyle(tensors, _plane_labels(references, planes),
                             names=_plane_labels(references, planes, quoted=False))
    if mode is StyleMode.FEW_SHOT:
        examples = class_examples(references, channels, tile)
        return PreparedStyle(
            [plane for example in examples for plane in example.planes],
            _plane_labels(references, [len(example.planes) for example in examples]),
            examples=examples,
        )
    if mode is StyleMode.INTERPOLATE:
        return PreparedStyle(interpolation_ends(references, channels, tile),
                             [repr(reference.name) for reference in references])
    return PreparedStyle()


def condition(model: TranslationModel, request: StyleRequest, labels: Sequence[str], device: torch.device) -> Any:
    """The model's conditioning for *request*; an error about one of its images names the image."""
    try:
        with torch.inference_mode(), autocast(device):
            return model.condition(request)
    except ReferenceImageError as error:
        if not 1 <= error.position <= len(labels):
            raise
        raise ReferenceImageError(f"{error} (image {labels[error.position - 1]})", error.position) from error
