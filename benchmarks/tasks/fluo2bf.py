"""The ``fluo2bf`` task: A = normalised fluorescence (1 channel), B = a brightfield-like
RGB rendering by Beer-Lambert absorption through haematoxylin.

Source: stardist's ``img2d.tif`` (fluorescent nuclei, 512², uint16).
"""

from __future__ import annotations

import numpy as np

from . import stardist_data
from .task import Task, pixel_sha256, tiled_task, to_uint8

#: Absorption strength: optical density at normalised fluorescence 1 is ``FLUO_K * vector``.
FLUO_K = 3.0
#: Percentiles of the whole source image mapped to 0 and 1 before clipping.
FLUO_PERCENTILES = (1.0, 99.8)


def haematoxylin_od() -> np.ndarray:
    """Haematoxylin's RGB optical-density vector, ``skimage.color.rgb_from_hed[0]``."""
    from skimage.color import rgb_from_hed

    return np.asarray(rgb_from_hed[0], dtype=np.float64)  # (0.65, 0.70, 0.29)


def fluo_normalise(image: np.ndarray) -> np.ndarray:
    """Whole-image percentile normalisation to uint8 (this is domain A)."""
    lo, hi = np.percentile(image.astype(np.float64), FLUO_PERCENTILES)
    return to_uint8((image.astype(np.float64) - lo) / (hi - lo))


def fluo_transform(a: np.ndarray) -> np.ndarray:
    """Brightfield-like RGB from normalised fluorescence (uint8 HxW in, uint8 HxWx3 out).

    Beer-Lambert: B = 255·exp(-``FLUO_K``·(a/255)·v) per channel, v = haematoxylin's
    OD vector :func:`haematoxylin_od`; background (a=0) is white, bright nuclei purple.
    """
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError(f"expected uint8 single-channel, got {a.dtype} {a.shape}")
    od = FLUO_K * (a.astype(np.float64) / 255.0)[..., None] * haematoxylin_od()
    return to_uint8(np.exp(-od))


def fluo2bf_task(tile: int = 64, seed: int = 0) -> Task:
    """Fluorescence -> brightfield-like: A = 1-channel fluorescence, B = RGB absorption."""
    import tifffile

    path = stardist_data.require_stardist_file("img2d.tif", "fluo2bf")
    raw = tifffile.imread(path)
    sources = [("nuclei", raw)]
    splits, cells = tiled_task(sources, fluo_transform, fluo_normalise, tile, seed)
    manifest = {
        "transform": {
            "function": "benchmarks.tasks.generate.fluo_transform",
            "description": "B = 255*exp(-k * (A/255) * v), v = skimage.color.rgb_from_hed[0]",
            "k": FLUO_K, "vector": haematoxylin_od().tolist(),
            "normalisation": f"A = uint8(255*clip((raw - p{FLUO_PERCENTILES[0]}) / "
                             f"(p{FLUO_PERCENTILES[1]} - p{FLUO_PERCENTILES[0]}), 0, 1)), whole image",
        },
        "sources": {"nuclei": {"origin": "stardist/data/images/img2d.tif", "shape": list(raw.shape),
                               "dtype": str(raw.dtype), "pixel_sha256": pixel_sha256(raw)}},
        "cells": cells,
        "a": "normalised fluorescence, 1 channel", "b": "brightfield-like RGB",
    }
    return Task("fluo2bf", splits, manifest)
