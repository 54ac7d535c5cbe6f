"""Diversity maps: where a multimodal translation is unsure.

The outputs of N sampled styles differ most where the model has freedom to
choose the look; a per-pixel standard deviation across the samples, averaged
over the output channels, shows those regions as one grayscale image in the
output's intensity units.

The spread is per pixel, so a result written band by band (a store, a whole
slide) gets its map band by band too: :class:`DiversityBands` passes each band
of the samples on to the result's target and writes the band's map into the
map's own target, so neither is ever held whole.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.image_metadata import ImageMetadata
from napari_i2i.core.translate import TranslateOptions, TranslationResult


class DiversityMapError(ValueError):
    """A diversity map asked for where it cannot be made; the message says why."""


def require_samples(options: TranslateOptions, samples_name: str) -> None:
    """A diversity map needs two or more random styles (``samples_name``: how the front end calls
    the count, for the message)."""
    if options.mode is not StyleMode.RANDOM or options.n_samples < 2:
        raise DiversityMapError(
            f"a diversity map compares random styles: choose random styles with {samples_name} of 2 or more"
        )


def diversity_map(samples: np.ndarray, rgb: bool, channel_axis: int | None = None) -> np.ndarray:
    """``(S, …)`` outputs of S styles → their per-pixel standard deviation, averaged over the
    channels (the last axis when ``rgb``, else ``channel_axis`` of the sample's own axes), float32."""
    if samples.shape[0] < 2:
        raise DiversityMapError(f"a diversity map needs 2 or more samples, got {samples.shape[0]}")
    spread = np.asarray(samples, dtype=np.float32).std(axis=0)
    if rgb:
        spread = spread[..., :3].mean(axis=-1)
    elif channel_axis is not None:
        spread = spread.mean(axis=channel_axis)
    return spread.astype(np.float32, copy=False)


def diversity_result(result: TranslationResult, output_channels: int) -> TranslationResult:
    """The diversity map of a result of random styles (its first axis the samples), as a result of
    its own that sits where the source does (same axes but the samples and channel ones)."""
    if not result.axes or result.axes[0] is not None or "n_samples" not in result.metadata:
        raise DiversityMapError(f"{result.source}: a diversity map needs a result of several random styles")
    axes = result.axes[1:]
    # a non-RGB multi-channel output keeps its channel axis just before Y/X
    channel_axis = len(axes) - 3 if not result.rgb and output_channels not in (1, 3) else None
    data = diversity_map(result.data, result.rgb, channel_axis)
    if channel_axis is not None:
        del axes[channel_axis]
    samples = result.metadata["n_samples"]
    return replace(
        result,
        data=data,
        rgb=False,
        axes=axes,
        description=f"{result.description}: diversity map (standard deviation over {samples} samples)",
        contrast_limits=(0.0, max(float(data.max()), 1e-6)),
        metadata={**result.metadata, "diversity_map": True},
    )


def _channel_axis(ndim: int, output_channels: int) -> int | None:
    """Where a result of *ndim* axes (samples first) holds its channels: last for RGB, just before
    Y/X for other multi-channel outputs, none for one channel."""
    if output_channels == 3:
        return ndim - 1
    return ndim - 3 if output_channels != 1 else None


def map_shape(shape: tuple[int, ...], output_channels: int) -> tuple[int, ...]:
    """The shape of the diversity map of a result of *shape* (samples first): no samples, no channels."""
    channel = _channel_axis(len(shape), output_channels)
    return tuple(size for axis, size in enumerate(shape) if axis not in (0, channel))


def map_metadata(metadata: ImageMetadata | None, output_channels: int) -> ImageMetadata | None:
    """The axes of the map of a result described by *metadata* (samples first): its own, less the
    samples and channel axes; channel names go with the channels."""
    if metadata is None:
        return None
    channel = _channel_axis(len(metadata.axes), output_channels)
    return ImageMetadata(tuple(axis for number, axis in enumerate(metadata.axes) if number not in (0, channel)))


class DiversityBands:
    """A ``run_translation`` output target for a result of random styles (samples first): each band
    assigned goes to *samples* unchanged, and its diversity map (as :func:`diversity_map` gives the
    whole one) to *spread*, an array-like of :func:`map_shape`."""

    def __init__(self, samples, spread, output_channels: int) -> None:
        self.samples, self.spread = samples, spread
        self.shape, self.dtype, self.ndim = tuple(samples.shape), samples.dtype, len(samples.shape)
        self._channel = _channel_axis(self.ndim, output_channels)
        self._rgb = output_channels == 3
        if tuple(spread.shape) != map_shape(self.shape, output_channels):
            raise ValueError(f"a diversity map of {self.shape} samples is {map_shape(self.shape, output_channels)}, "
                             f"not {tuple(spread.shape)}")

    def __setitem__(self, index: tuple, values: np.ndarray) -> None:
        """*index*: one entry per result axis, whole along the samples and channels (a band)."""
        self.samples[index] = values
        kept = [axis for axis in range(self.ndim) if not isinstance(index[axis], (int, np.integer))]
        channel = None if self._channel is None else kept.index(self._channel) - 1  # of one sample's axes
        self.spread[tuple(part for axis, part in enumerate(index) if axis not in (0, self._channel))] = (
            diversity_map(values, self._rgb, None if self._rgb else channel))
