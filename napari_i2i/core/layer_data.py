"""Image arrays (napari layers, files) ↔ model tensors, without napari itself.

The one rule set for inference and training (``trainers.datasets`` uses it
too), documented in ``docs/usage.md``:

- An RGB(A) image (``rgb``) has its colour on the last axis; alpha is dropped.
  Any other image is a stack of grayscale planes, unless the model wants
  ``k > 1`` channels and the axis before Y/X has length ``k``: then that axis
  holds the channels. Every other leading axis is a stack axis and each 2-D
  plane is translated (or trained on) on its own.
- Where no model fixes ``k`` (training without a channel count), the image
  suggests it (:func:`data_channels`): 3 for RGB, the length of the axis
  before Y/X when that is at most :data:`MAX_CHANNELS`, else 1.
- Channel counts are converted when there is one obvious way: gray → RGB
  repeats the plane, RGB → gray takes the luminance (ITU-R 601). Anything
  else is an error naming both counts.
- Intensities map to ``[-1, 1]`` through the contrast limits the user sees in
  napari (clipped there). Without them (files, the CLI, training) uint8 uses
  0…255, bool 0…1, and other types the image's own 0.1…99.9 percentiles
  (alpha left out), per channel for multichannel non-RGB images; NaN or
  infinite values then make the range unusable and are refused. Outputs go
  back through the image's range (across channels) and keep integer dtypes;
  float inputs give float32.
- Lazy images (not a numpy array: dask, zarr, a pyramid level) estimate those
  percentiles from ``ImageData.overview`` (a coarse pyramid level) when there is
  one, else from a subsample strided to at most :data:`RANGE_SAMPLES` pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from napari_i2i.core.errors import LayerDataError  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from napari_i2i.core.image_metadata import ImageMetadata

LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Intensity percentiles mapped to −1…1 for data without a fixed range (inference and training).
PERCENTILES = (0.1, 99.9)
# The longest axis before Y/X that an image's own channel count is read from (see data_channels).
MAX_CHANNELS = 8
# Pixels a lazy image without an overview samples (strided) to estimate its intensity range.
RANGE_SAMPLES = 2**22


@dataclass(frozen=True)
class PixelSize:
    """Physical size of one pixel along Y and X, e.g. ``PixelSize(0.5, 0.5, "micrometer")``."""

    y: float
    x: float
    unit: str = "micrometer"  # an OME-NGFF / UDUNITS name


@dataclass
class ImageData:
    """A source image as napari or a file gives it (never written to)."""

    data: object  # numpy-like: np.ndarray, dask array, zarr array…
    name: str = "image"
    rgb: bool = False
    contrast_limits: tuple[float, float] | None = None
    overview: object | None = None  # a coarse level of ``data`` (same axes), for intensity estimates
    pixel_size: PixelSize | None = None
    image_metadata: ImageMetadata | None = None  # axis names and types, channel names (from the file)

    @property
    def lazy(self) -> bool:
        """Read window by window (dask, zarr, …) rather than as one array."""
        return not isinstance(self.data, np.ndarray)

    def range_sample(self) -> np.ndarray:
        """The pixels intensity percentiles are taken from: all of an array in memory, else the
        overview or a strided subsample (the module docstring)."""
        if not self.lazy:
            return np.asarray(self.data)
        if self.overview is not None:
            return np.asarray(self.overview)
        shape = self.data.shape
        spatial = shape[-3:-1] if self.rgb else shape[-2:]
        pixels = int(np.prod(shape, dtype=np.int64)) // (shape[-1] if self.rgb else 1)
        step = max(1, int(np.ceil(np.sqrt(pixels / RANGE_SAMPLES)))) if min(spatial) > 1 else 1
        strided = (..., slice(None, None, step), slice(None, None, step))
        return np.asarray(self.data[strided + ((slice(None),) if self.rgb else ())])


@dataclass(frozen=True)
class Arrangement:
    """Where the planes and channels of an image are: its shape and RGB flag alone decide."""

    stack_shape: tuple[int, ...]
    channel_axis: int | None  # axis index in the image's shape; None for grayscale planes
    channels: int
    height: int
    width: int

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))


@dataclass(frozen=True)
class PlaneLayout:
    """Where the planes, channels and intensities of one image are."""

    shape: tuple[int, ...]
    stack_shape: tuple[int, ...]
    channel_axis: int | None  # axis index in ``shape``; None for grayscale planes
    channels: int
    dtype: np.dtype
    intensity_range: tuple[float, float]  # of the whole image: outputs map back through it
    channel_ranges: np.ndarray | None = None  # (channels, 2) input ranges, when per channel

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))


def data_channels(shape: tuple[int, ...], rgb: bool) -> int:
    """The channel count an image suggests on its own, for training without a given count."""
    if rgb:
        return 3
    if len(shape) >= 3 and shape[-3] <= MAX_CHANNELS:
        return max(int(shape[-3]), 1)
    return 1


def arrange(name: str, shape: tuple[int, ...], rgb: bool, model_channels: int) -> Arrangement:
    """Planes and channels of an image of *shape* for a model taking *model_channels*."""
    shape = tuple(int(n) for n in shape)
    if rgb:
        if len(shape) < 3 or shape[-1] not in (3, 4):
            raise LayerDataError(f"{name}: an RGB image needs 3 or 4 values on its last axis")
        channel_axis, channels, stack_shape = len(shape) - 1, 3, shape[:-3]
    elif model_channels > 1 and len(shape) >= 3 and shape[-3] == model_channels:
        channel_axis, channels, stack_shape = len(shape) - 3, model_channels, shape[:-3]
    else:
        if len(shape) < 2:
            raise LayerDataError(f"{name}: needs at least 2 dimensions, has shape {shape}")
        channel_axis, channels, stack_shape = None, 1, shape[:-2]
    if min(shape) == 0:
        raise LayerDataError(f"{name}: empty image of shape {shape}")
    if not (channels == model_channels or (channels, model_channels) in {(1, 3), (3, 1)}):
        raise LayerDataError(
            f"{name}: has {channels} channel(s), the model takes {model_channels}; "
            "no conversion between these counts"
        )
    height, width = shape[-3:-1] if rgb else shape[-2:]
    return Arrangement(stack_shape, channel_axis, channels, height, width)


def _checked_dtype(name: str, dtype: np.dtype) -> None:
    numeric = np.issubdtype(dtype, np.number) or dtype == np.bool_
    if not numeric or np.issubdtype(dtype, np.complexfloating):
        raise LayerDataError(f"{name}: cannot translate or train on {dtype} data")


def _checked_range(name: str, low: float, high: float) -> tuple[float, float]:
    if not np.isfinite([low, high]).all():
        raise LayerDataError(f"{name}: intensity range {low}…{high} is not finite")
    return (low, high) if high > low else (low, low + 1.0)


def _percentiles(name: str, values: np.ndarray, axis: int | None = None) -> np.ndarray:
    limits = np.percentile(values, PERCENTILES, axis=axis)
    if not np.isfinite(limits).all():
        raise LayerDataError(f"{name}: intensity range is not finite (NaN or infinite values)")
    return limits


def _intensity_range(image: ImageData, dtype: np.dtype) -> tuple[float, float]:
    if image.contrast_limits is not None:
        low, high = (float(v) for v in image.contrast_limits)
    elif dtype == np.uint8:
        low, high = 0.0, 255.0
    elif dtype == np.bool_:
        low, high = 0.0, 1.0
    else:
        sample = image.range_sample()
        colours = sample[..., :3] if image.rgb else sample  # alpha is no intensity
        low, high = (float(v) for v in _percentiles(image.name, np.asarray(colours, dtype=np.float32)))
    return _checked_range(image.name, low, high)


def _channel_ranges(image: ImageData, channel_axis: int, dtype: np.dtype) -> np.ndarray | None:
    """Per-channel percentile ranges of a multichannel non-RGB image without contrast limits."""
    if image.rgb or image.contrast_limits is not None or dtype in (np.uint8, np.bool_):
        return None
    values = np.moveaxis(np.asarray(image.range_sample(), dtype=np.float32), channel_axis, 0)
    ranges = _percentiles(image.name, values.reshape(len(values), -1), axis=1).T
    return np.array([_checked_range(image.name, float(lo), float(hi)) for lo, hi in ranges], np.float32)


def layout(image: ImageData, model_channels: int) -> PlaneLayout:
    """Work out planes, channels and intensities of *image* for a model taking *model_channels*."""
    shape = tuple(int(n) for n in getattr(image.data, "shape", ()))
    dtype = np.dtype(getattr(image.data, "dtype", np.float32))
    _checked_dtype(image.name, dtype)
    planes = arrange(image.name, shape, image.rgb, model_channels)
    channel_axis = planes.channel_axis
    return PlaneLayout(
        shape=shape,
        stack_shape=planes.stack_shape,
        channel_axis=channel_axis,
        channels=planes.channels,
        dtype=dtype,
        intensity_range=_intensity_range(image, dtype),
        channel_ranges=None if channel_axis is None else _channel_ranges(image, channel_axis, dtype),
    )


def iter_planes(
    image: ImageData, plan: PlaneLayout, model_channels: int
) -> Iterator[torch.Tensor]:
    """Yield each 2-D plane as a ``(1, model_channels, H, W)`` float32 tensor in [-1, 1]."""
    for index in np.ndindex(*plan.stack_shape):
        yield normalised(image.data[index], plan, model_channels)  # reads one plane of lazy data


def spatial_index(plan: PlaneLayout, rows: slice, cols: slice) -> tuple:
    """The index of ``rows × cols`` within one plane of an image of *plan* (after its stack index)."""
    return (rows, cols, slice(None)) if plan.channel_axis == len(plan.shape) - 1 else (..., rows, cols)


def normalised(plane: object, plan: PlaneLayout, model_channels: int) -> torch.Tensor:
    """One plane, or a window of it, as a ``(1, model_channels, h, w)`` float32 tensor in [-1, 1]."""
    if plan.channel_ranges is None:
        low, high = plan.intensity_range
    else:
        low, high = (plan.channel_ranges[:, k, None, None] for k in (0, 1))
    plane = np.asarray(plane, dtype=np.float32)
    if plan.channel_axis is None:
        plane = plane[None]
    elif plan.channel_axis == len(plan.shape) - 1:
        plane = np.moveaxis(plane[..., :3], -1, 0)
    plane = (plane - low) / (high - low) * 2.0 - 1.0
    if plan.channels == 3 and model_channels == 1:
        plane = np.tensordot(LUMINANCE, plane, axes=1)[None]
    elif plan.channels == 1 and model_channels == 3:
        plane = np.repeat(plane, 3, axis=0)
    return torch.from_numpy(np.clip(plane, -1.0, 1.0, out=plane))[None]


def to_image_array(
    planes: list[torch.Tensor], plan: PlaneLayout, samples_axis: bool
) -> tuple[np.ndarray, bool]:
    """Stack translated ``(S, C, H, W)`` planes back into the source's layout.

    Returns the array and whether it is RGB (3 output channels go last, as
    napari expects; other multi-channel outputs keep channels before Y/X).
    The sample axis comes first when ``samples_axis``.
    """
    out = torch.stack(planes, dim=1)  # (S, P, C, H, W)
    n_samples, _, channels, height, width = out.shape
    out = out.reshape(n_samples, *plan.stack_shape, channels, height, width)
    rgb = channels == 3
    if rgb:
        out = out.movedim(-3, -1)
    elif channels == 1:
        out = out.squeeze(-3)
    array = output_values(out.numpy(), plan)
    return (array if samples_axis else array[0]), rgb


def output_values(array: np.ndarray, plan: PlaneLayout) -> np.ndarray:
    """Model outputs in [-1, 1] back through the image's range, in its dtype (module docstring)."""
    low, high = plan.intensity_range
    array = (array + 1.0) / 2.0 * (high - low) + low
    if np.issubdtype(plan.dtype, np.integer):
        info = np.iinfo(plan.dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(plan.dtype)
    return array.astype(np.float32)


def output_block(block: torch.Tensor, plan: PlaneLayout, samples_axis: bool) -> np.ndarray:
    """A band ``(S, C, rows, W)`` of one translated plane laid out and converted as
    :func:`to_image_array` does the whole result."""
    channels = block.shape[1]
    if channels == 3:
        block = block.movedim(1, -1)
    elif channels == 1:
        block = block[:, 0]
    array = output_values(block.numpy(), plan)
    return array if samples_axis else array[0]


def output_index(plane: tuple[int, ...], top: int, rows: int, channels: int, samples_axis: bool) -> tuple:
    """Where :func:`output_block`'s band of rows ``top…top + rows`` of stack plane *plane* goes in
    the whole result."""
    band = slice(top, top + rows)
    inner = {3: (band, slice(None), slice(None)), 1: (band, slice(None))}.get(
        channels, (slice(None), band, slice(None)))
    return ((slice(None),) if samples_axis else ()) + tuple(plane) + inner


def band_writer(target: object, plan: PlaneLayout, plane: tuple[int, ...], samples_axis: bool):
    """A ``translate_tiled`` output for stack plane *plane*: each band converted (:func:`output_block`)
    and assigned into *target*, an array-like of the whole result's shape."""

    def write(top: int, block: torch.Tensor) -> None:
        index = output_index(plane, top, block.shape[2], block.shape[1], samples_axis)
        target[index] = output_block(block, plan, samples_axis)

    return write


def output_axes(plan: PlaneLayout | Arrangement, output_channels: int, samples_axis: bool) -> list[int | None]:
    """For each non-RGB output axis, the source axis it comes from (None: new).

    napari's ``scale``, ``translate``, ``units`` and ``axis_labels`` of the
    output are taken from the source along this map (and files' axis names,
    :mod:`napari_i2i.core.image_metadata`).
    """
    source_axes = list(range(len(plan.stack_shape)))
    if plan.channel_axis == len(plan.stack_shape):  # channels before Y/X (an RGB image's come after)
        channel_source: int | None = plan.channel_axis
    else:
        channel_source = None
    spatial = [len(plan.stack_shape) + (channel_source is not None) + k for k in (0, 1)]
    axes: list[int | None] = [None] if samples_axis else []
    axes += source_axes
    if output_channels not in (1, 3):
        axes.append(channel_source)
    return axes + spatial

