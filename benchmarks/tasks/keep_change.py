"""The ``keep_change`` task: re-stain one stain component only, keep everything else.

A = a tile of scikit-image's IHC image (haematoxylin + DAB). B = the same tile
with its DAB-stained pixels re-stained as eosin (H&E-like pink) and every other
pixel (haematoxylin-only nuclei, background) left exactly as it was. Which
pixels must change comes from a colour deconvolution of A: DAB optical density
(``skimage.color.rgb2hed``, channel 2) at or above :data:`DAB_THRESHOLD`; the rest
is the haematoxylin/background mask of pixels that must stay.

Scored separately on the pixels that must change and those that must stay (L1
each, pooled over the test tiles), plus PSNR/SSIM/L1 overall. The bar
(:func:`meets_bar`): must-stay error within 2× identity's (plus
:data:`STAY_ALLOWANCE` grey levels: identity's is exactly 0 here) while the
must-change error is at most a third of identity's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from napari_i2i.frontends.sample_data import he_like_restain

from .metrics import score
from .task import Task, pixel_sha256, tiled_task

#: DAB optical density (rgb2hed units) from which a pixel counts as DAB-stained: it must change.
DAB_THRESHOLD = 0.04
#: Grey levels of must-stay error allowed on top of 2× identity's (which is 0 on this task).
STAY_ALLOWANCE = 1.0
MASK_CHANGE, MASK_STAY = 255, 0


def change_mask(rgb: np.ndarray) -> np.ndarray:
    """True where ``rgb`` (uint8 RGB) is DAB-stained: the pixels that must change."""
    from skimage.color import rgb2hed

    return rgb2hed(rgb)[..., 2] >= DAB_THRESHOLD


def keep_change_transform(rgb: np.ndarray) -> np.ndarray:
    """DAB pixels re-stained (DAB -> eosin, haematoxylin kept); every other pixel unchanged."""
    restained = he_like_restain(rgb, h_scale=1.0, dab_to_eosin=1.0)
    return np.where(change_mask(rgb)[..., None], restained, rgb)


def keep_change_task(tile: int = 64, seed: int = 0) -> Task:
    """Unpaired halves and paired test tiles as ``stain``'s, plus ``test_mask`` (255 = must change)."""
    from skimage import data

    image = data.immunohistochemistry()
    splits, cells = tiled_task([("ihc", image)], keep_change_transform, lambda im: im, tile, seed)
    splits["test_mask"] = {name: np.where(change_mask(a), MASK_CHANGE, MASK_STAY).astype(np.uint8)
                           for name, a in splits["test_a"].items()}
    changed = float(np.mean([m.mean() / 255 for m in splits["test_mask"].values()]))
    manifest = {
        "transform": {
            "function": "benchmarks.tasks.keep_change.keep_change_transform",
            "description": "where rgb2hed DAB >= threshold: he_like_restain(h_scale=1, dab_to_eosin=1); "
                           "elsewhere the input pixel unchanged",
            "dab_threshold": DAB_THRESHOLD,
        },
        "sources": {"ihc": {"origin": "skimage.data.immunohistochemistry()", "shape": list(image.shape),
                            "pixel_sha256": pixel_sha256(image)}},
        "cells": cells, "test_changed_fraction": round(changed, 4),
        "a": "original IHC tile", "b": "DAB re-stained as eosin, everything else kept",
        "mask": "test_mask/: 255 where the pixel must change, 0 where it must stay",
    }
    return Task("keep_change", splits, manifest)


def _region_l1(targets, predictions, masks, wanted: int) -> float:
    """Mean absolute error (0-255) over the pixels of every test tile whose mask is ``wanted``."""
    total, count = 0.0, 0
    for name, target in targets.items():
        region = masks[name] == wanted
        samples = predictions[name] if isinstance(predictions[name], (list, tuple)) else [predictions[name]]
        for sample in samples:
            error = np.abs(target.astype(np.float64) - sample.astype(np.float64))[region]
            total += error.sum() / len(samples)
            count += error.size / len(samples)
    return float(total / count) if count else float("nan")


def keep_change_scores(task: Task, predictions: Mapping[str, np.ndarray | Sequence[np.ndarray]]) -> dict:
    """PSNR/SSIM/L1 overall and L1 on the must-change and must-stay pixels."""
    targets, masks = task.splits["test_b"], task.splits["test_mask"]
    result = score(targets, predictions)
    result["l1_change"] = _region_l1(targets, predictions, masks, MASK_CHANGE)
    result["l1_stay"] = _region_l1(targets, predictions, masks, MASK_STAY)
    return result


def meets_bar(row: Mapping[str, float], identity: Mapping[str, float]) -> bool:
    """Must-stay L1 within 2× identity's (+ allowance), must-change L1 at most a third of identity's."""
    return (row["l1_stay"] <= 2 * identity["l1_stay"] + STAY_ALLOWANCE
            and row["l1_change"] <= identity["l1_change"] / 3)
