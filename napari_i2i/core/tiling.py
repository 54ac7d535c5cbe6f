"""Translate images of any size tile by tile, with blended overlaps.

Peak device memory depends on the tile size only: the whole image and the
blended result stay on the host, one window (a tile plus the model's
receptive-field context on each side) at a time travels to the device.
Normalisation statistics are shared between tiles through the engine's
``SharedStatistics`` (see :mod:`napari_i2i.contract.engine_api`), which takes several
passes over the tiles; tiles of the final pass are blended into the output
with weights that ramp linearly across the overlaps.

Images of any size down to 1×1 are translated: every axis shorter than
:func:`minimum_size` is padded to it (reflected, or replicated where the axis
is too short to reflect) and the result cropped back. Images that are large
enough get exactly the plan, and so the output, they had without this rule.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_i2i.contract.engine_api import SharedStatistics, StatisticsPassDone
from napari_i2i.core.constants import DEFAULT_TILE
from napari_i2i.core.device import DeviceError, precision_autocast, prepare_compile_cache

__all__ = ["DEFAULT_BLEND", "DEFAULT_TILE", "AxisPlan", "CompiledStages", "Stage", "TilePlan", "minimum_size",
           "on_device", "reference_crops", "translate_tiled"]

Stage = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_BLEND = 16


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def minimum_size(multiple: int) -> int:
    """The shortest side handed to a model whose sizes are multiples of ``multiple``.

    The engines' encoders downsample ``multiple`` times over and pad every
    convolution by reflection, which needs more pixels than it pads: 2 at the
    deepest level (its 3×3 convolutions; instance norm needs more than one
    pixel there too), 4 at full size (the 7×7 input convolution).
    """
    return max(4, 2 * multiple)


@dataclass(frozen=True)
class AxisPlan:
    """Windows along one axis: each owns up to ``tile`` pixels and sees more around them.

    A window reaches ``context + blend / 2`` pixels past what it owns. With
    ``context`` at least the model's receptive-field radius, a window is exact
    up to ``blend / 2`` pixels past its owned part, so neighbours are
    cross-faded over a ``blend``-wide band centred on the boundary where both
    are exact.
    """

    length: int  # padded length
    windows: tuple[tuple[int, int], ...]  # (start, size) in the padded image
    owned: tuple[tuple[int, int], ...]  # [begin, end) inside each window
    blend: int

    @classmethod
    def make(cls, length: int, tile: int, context: int, blend: int, multiple: int) -> AxisPlan:
        reach = _round_up(context + blend // 2, multiple)
        bounds = list(range(0, length, tile)) + [length]
        if length <= tile + 2 * reach or len(bounds) == 2:
            return cls(length, ((0, length),), ((0, length),), blend)
        windows, owned = [], []
        for begin, end in zip(bounds, bounds[1:]):
            start, stop = max(0, begin - reach), min(length, end + reach)
            windows.append((start, stop - start))
            owned.append((begin - start, end - start))
        return cls(length, tuple(windows), tuple(owned), blend)

    def weights(self, index: int) -> torch.Tensor:
        """1 on the owned part, fading to 0 over ``blend`` pixels across each inner boundary."""
        size = self.windows[index][1]
        begin, end = self.owned[index]
        centres = torch.arange(size) + 0.5
        half = self.blend / 2
        weight = torch.ones(size)
        if self.blend == 0:
            return ((centres >= begin) & (centres < end)).float()
        if index > 0:
            weight *= ((centres - (begin - half)) / self.blend).clamp(0, 1)
        if index < len(self.windows) - 1:
            weight *= (((end + half) - centres) / self.blend).clamp(0, 1)
        return weight


@dataclass(frozen=True)
class TilePlan:
    """How one image of ``height × width`` is padded and cut into windows."""

    height: int
    width: int
    rows: AxisPlan
    cols: AxisPlan

    @classmethod
    def make(
        cls,
        height: int,
        width: int,
        tile: int = DEFAULT_TILE,
        context: int = 0,
        multiple: int = 1,
        blend: int = DEFAULT_BLEND,
    ) -> TilePlan:
        """``multiple``: sizes the model needs; ``context``: its receptive-field radius."""
        if tile < max(multiple, blend):
            raise ValueError(
                f"tile size must be at least {max(multiple, blend)} pixels, got {tile}"
            )
        tile -= tile % multiple
        shortest = minimum_size(multiple)
        rows = AxisPlan.make(_round_up(max(height, shortest), multiple), tile, context, blend, multiple)
        cols = AxisPlan.make(_round_up(max(width, shortest), multiple), tile, context, blend, multiple)
        return cls(height, width, rows, cols)

    @property
    def n_tiles(self) -> int:
        return len(self.rows.windows) * len(self.cols.windows)

    @property
    def window_pixels(self) -> int:
        """Pixels the model sees over all windows (tiles and their context), for time estimates."""
        return sum(h for _, h in self.rows.windows) * sum(w for _, w in self.cols.windows)


def _pad(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    pad_h, pad_w = height - image.shape[-2], width - image.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return image
    reflect_ok = pad_h < image.shape[-2] and pad_w < image.shape[-1]
    return F.pad(image, (0, pad_w, 0, pad_h), mode="reflect" if reflect_ok else "replicate")


def translate_tiled(
    stages: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    image: torch.Tensor,
    plan: TilePlan,
    statistics: SharedStatistics | None,
    device: torch.device,
    whole: Stage | None = None,
) -> Generator[float, None, torch.Tensor]:
    """Run the model's ``stages`` over the windows of ``image`` (``(1, C, H, W)`` on the host).

    A generator: it yields the fraction done after every window evaluation
    (so callers can show progress and stop early) and returns the blended
    ``(S, C_out, H, W)`` float32 result on the host. ``statistics`` must be
    fresh for this image.

    With several windows and shared statistics, the stages run one after the
    other over all windows, each window's activations kept on the host in
    between: settling a normalisation layer then re-runs only its own stage.
    ``whole``: what runs instead of the composed stages where each window is one
    pass (no shared statistics, or a single window), e.g. a compiled model.
    """
    padded = _pad(image, plan.rows.length, plan.cols.length)
    windows = [
        (i, j, (..., slice(top, top + height), slice(left, left + width)))
        for i, (top, height) in enumerate(plan.rows.windows)
        for j, (left, width) in enumerate(plan.cols.windows)
    ]
    if statistics is None or len(windows) == 1:
        stages, statistics = [whole or _compose(stages)], None
    activations: list[torch.Tensor] = [padded[window] for _, _, window in windows]
    for stage_index, stage in enumerate(stages):
        passes = 1 if statistics is None else statistics.passes(stage, activations[0].to(device))
        for pass_index in range(passes):
            final = pass_index == passes - 1
            with statistics.collect() if statistics is not None else nullcontext():
                for step, (i, j, _) in enumerate(windows):
                    owned = (
                        statistics.region(
                            tuple(v / plan.rows.windows[i][1] for v in plan.rows.owned[i]),
                            tuple(v / plan.cols.windows[j][1] for v in plan.cols.owned[j]),
                        )
                        if statistics is not None
                        else nullcontext()
                    )
                    try:
                        with owned:
                            result = stage(activations[step].to(device))
                    except StatisticsPassDone:
                        if final:
                            raise
                    else:
                        if final:
                            activations[step] = result.cpu()
                    done = (pass_index * len(windows) + step + 1) / (passes * len(windows))
                    yield (stage_index + done) / len(stages)
    output = torch.zeros(*activations[0].shape[:2], plan.rows.length, plan.cols.length)
    weight_sum = torch.zeros(plan.rows.length, plan.cols.length)
    for (i, j, window), result in zip(windows, activations):
        weight = plan.rows.weights(i)[:, None] * plan.cols.weights(j)[None, :]
        output[window] += result.float() * weight
        weight_sum[window[1:]] += weight
    return (output / weight_sum)[..., : plan.height, : plan.width]


def _compose(
    stages: Sequence[Callable[[torch.Tensor], torch.Tensor]],
) -> Callable[[torch.Tensor], torch.Tensor]:
    def run_all(x: torch.Tensor) -> torch.Tensor:
        for stage in stages:
            x = stage(x)
        return x

    return run_all


def on_device(stage: Stage, device: torch.device, precision: str = "fp32") -> Stage:
    """*stage* without autograd, autocast to *precision* (see :func:`core.device.resolve_precision`)."""

    def run(tile: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), precision_autocast(precision, device):
            return stage(tile)

    return run


class CompiledStages:
    """The composed stages compiled with inductor (static shapes: one graph per window size),
    for :func:`translate_tiled`'s ``whole``; ``used`` says whether any window ran compiled."""

    def __init__(self, stages: Sequence[Stage], device: torch.device, precision: str) -> None:
        prepare_compile_cache()
        self._compiled = torch.compile(_compose(stages), dynamic=False)
        self._device, self._precision = device, precision
        self.used = False

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        import torch._dynamo.exc

        self.used = True
        try:
            with torch.inference_mode(), precision_autocast(self._precision, self._device):
                return self._compiled(tile)
        except torch._dynamo.exc.BackendCompilerFailed as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise DeviceError(f"compiling the model failed ({reason}); translate with compile off") from None


def reference_crops(image: torch.Tensor, tile: int) -> torch.Tensor:
    """Cut a ``(1, C, H, W)`` reference into non-overlapping crops of at most ``tile``.

    Engines average style codes over the crops, so a reference larger than a
    tile costs tile-sized memory and still contributes all of its pixels.
    """
    _, channels, height, width = image.shape
    if height <= tile and width <= tile:
        return image
    crop_h, crop_w = min(height, tile), min(width, tile)
    rows = np.linspace(0, height - crop_h, max(1, round(height / crop_h))).round().astype(int)
    cols = np.linspace(0, width - crop_w, max(1, round(width / crop_w))).round().astype(int)
    crops = [image[0, :, r : r + crop_h, c : c + crop_w] for r in rows for c in cols]
    return torch.stack(crops).reshape(-1, channels, crop_h, crop_w)
