"""Diversity maps: where a multimodal translation is unsure.

The outputs of N sampled styles differ most where the model has freedom to
choose the look; a per-pixel standard deviation across the samples, averaged
over the output channels, shows those regions as one grayscale image in the
output's intensity units.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from napari_i2i.contract.engine_api import StyleMode
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
