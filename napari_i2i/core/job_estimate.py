"""How long a translation will take, from a timed crop, before the job starts.

:func:`estimate_seconds` times the model twice on a crop (the first run warms up) and scales
its rate per window pixel up to the job's windows; :func:`describe_duration` words it for the
notice :mod:`napari_i2i.core.translate` shows for long jobs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from napari_i2i.contract.engine_api import TranslationModel
from napari_i2i.core.layer_data import PlaneLayout
from napari_i2i.core.stages import Stage
from napari_i2i.core.tiling import TilePlan, translate_tiled

# Side of the crop timed; its rate per pixel the estimate scales up.
WARMUP_SIDE = 256
# Tiles that share normalisation statistics re-run stages, and large windows run slower than the
# crop: a 2500² image in 9 tiles of 1024 took 4× the crop's rate (bundled MUNIT, one CPU thread).
SHARED_STATISTICS_COST = 4.0


def plan_tiles(model: TranslationModel, height: int, width: int, tile: int) -> TilePlan:
    """How a plane of ``height × width`` is cut for *model* (its context and size multiple)."""
    capabilities = model.capabilities
    return TilePlan.make(height, width, tile=tile, context=capabilities.context,
                         multiple=capabilities.size_multiple)


def plane_size(plan: PlaneLayout) -> tuple[int, int]:
    """Height and width of one plane of a source laid out as *plan*."""
    rgb = plan.channel_axis is not None and plan.channel_axis == len(plan.shape) - 1
    height, width = plan.shape[-3:-1] if rgb else plan.shape[-2:]
    return height, width


def estimate_seconds(model: TranslationModel, stages: list[Stage], plane: torch.Tensor,
                     sizes: Sequence[tuple[int, int, int]], tile: int, device: torch.device) -> float:
    """Seconds to translate ``sizes`` (``(planes, height, width)`` each): the rate per window
    pixel of a second run on a crop of *plane* (the first warms up), times the window pixels."""
    crop = plane[..., :WARMUP_SIDE, :WARMUP_SIDE]
    crop_plan = plan_tiles(model, crop.shape[-2], crop.shape[-1], max(tile, WARMUP_SIDE))
    for _ in range(2):
        started = time.perf_counter()
        for _ in translate_tiled(stages, crop, crop_plan, None, device):
            pass
    rate = (time.perf_counter() - started) / crop_plan.window_pixels
    work = 0.0
    for planes, height, width in sizes:
        plan = plan_tiles(model, height, width, tile)
        shared = plan.n_tiles > 1 and model.shared_statistics() is not None
        work += planes * plan.window_pixels * (SHARED_STATISTICS_COST if shared else 1.0)
    return rate * work


def describe_duration(seconds: float) -> str:
    """E.g. "about 6 minutes", "about 2 hours"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} seconds"
    if seconds < 2 * 3600:
        return f"about {round(seconds / 60)} minutes"
    return f"about {round(seconds / 3600)} hours"
