"""Translate images of any size tile by tile, with blended overlaps.

Peak device memory depends on the tile size only: one window (a tile plus
the model's receptive-field context on each side) at a time travels to the
device. On the host, the image is a tensor or a :class:`WindowSource` read
window by window, and the blended result leaves in row bands as soon as
no later window reaches them (gathered into one tensor, or handed to an
``output`` that stores them), so host memory too can stay bounded by the tile.
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

import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from napari_i2i.contract.engine_api import SharedStatistics, SourceStage, StatisticsPassDone, run_stage
from napari_i2i.core.constants import DEFAULT_TILE
from napari_i2i.core.stages import Stage, compose_stages

__all__ = ["DEFAULT_BLEND", "DEFAULT_TILE", "SPILL_ABOVE_PIXELS", "AxisPlan", "SpilledActivations", "TilePlan",
           "WindowSource", "minimum_size", "padded_indices", "reference_crops", "spills", "translate_tiled"]

DEFAULT_BLEND = 16
# Jobs whose windows hold more pixels than this keep activations between statistics passes on
# disk (SpilledActivations); smaller ones keep them in memory, as fast as before.
SPILL_ABOVE_PIXELS = 2**23


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


def padded_indices(plan: TilePlan, axis: int, start: int, stop: int) -> np.ndarray:
    """Source indices of padded positions ``start…stop`` along ``axis`` (0 rows, 1 columns), as
    :func:`_pad` fills them: reflected past the end, or replicated where either axis is too short."""
    length = plan.height if axis == 0 else plan.width
    reflect = plan.rows.length - plan.height < plan.height and plan.cols.length - plan.width < plan.width
    positions = np.arange(start, stop)
    beyond = np.maximum(positions - (length - 1), 0)
    return positions - beyond * 2 if reflect else np.minimum(positions, length - 1)


class WindowSource(Protocol):
    """A plane read window by window (e.g. from a lazy file), instead of a whole tensor."""

    def window(self, plan: TilePlan, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
        """The ``(1, C, h, w)`` window ``[top, bottom) × [left, right)`` of the padded plane."""


class SpilledActivations:
    """Window activations between statistics passes, one file per window in a temporary folder
    (removed by :meth:`close`): host memory holds one window's instead of all of them."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="napari-i2i-activations-", dir=folder))
        self._dtypes: dict[int, torch.dtype] = {}

    def __setitem__(self, step: int, tensor: torch.Tensor) -> None:
        """Raw ``.npy`` (no archive or checksum, unlike ``torch.save``); bf16 as its int16 bits."""
        self._dtypes[step] = tensor.dtype
        raw = tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor
        written = self.folder / f"{step}.next.npy"
        np.save(written, raw.contiguous().numpy())
        os.replace(written, self.folder / f"{step}.npy")  # a new file: the old one may still be mapped

    def __getitem__(self, step: int) -> torch.Tensor:
        raw = torch.from_numpy(np.load(self.folder / f"{step}.npy", mmap_mode="c"))  # copy-on-write map
        return raw.view(torch.bfloat16) if self._dtypes[step] == torch.bfloat16 else raw

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _Blender:
    """Blends the final windows, in row-major order, into rows of the output that are finished as
    soon as no later window row reaches them; each finished band goes to ``write(top, block)``.

    The arithmetic is the one of one whole-image accumulator: every pixel sums its windows'
    weighted values in window order and is divided by the sum of their weights.
    """

    def __init__(self, plan: TilePlan, write: Callable[[int, torch.Tensor], None]) -> None:
        self._plan, self._write = plan, write
        self._base = 0  # padded row of the accumulator's first row
        self._sum: torch.Tensor | None = None
        self._weights = torch.zeros(0, plan.cols.length)

    def _extend(self, top: int, bottom: int, like: torch.Tensor) -> None:
        self._flush(top)
        rows = bottom - self._base - self._weights.shape[0]
        if rows > 0:
            if self._sum is None:
                self._sum = torch.zeros(*like.shape[:2], 0, self._plan.cols.length)
            self._sum = torch.cat([self._sum, self._sum.new_zeros(*self._sum.shape[:2], rows, self._sum.shape[3])], 2)
            self._weights = torch.cat([self._weights, self._weights.new_zeros(rows, self._weights.shape[1])])

    def _flush(self, until: int) -> None:
        """Hand over the rows before padded row ``until`` (those inside the image)."""
        count = min(until - self._base, self._weights.shape[0])
        if count <= 0 or self._sum is None:
            return
        stop = min(self._base + count, self._plan.height)
        if stop > self._base:
            rows = stop - self._base
            block = self._sum[:, :, :rows] / self._weights[:rows]
            self._write(self._base, block[..., : self._plan.width])
        self._sum, self._weights = self._sum[:, :, count:], self._weights[count:]
        self._base += count

    def add(self, i: int, j: int, result: torch.Tensor) -> None:
        (top, height), (left, width) = self._plan.rows.windows[i], self._plan.cols.windows[j]
        self._extend(top, top + height, result)
        weight = self._plan.rows.weights(i)[:, None] * self._plan.cols.weights(j)[None, :]
        rows = slice(top - self._base, top - self._base + height)
        self._sum[:, :, rows, left : left + width] += result.float() * weight
        self._weights[rows, left : left + width] += weight

    def finish(self) -> None:
        self._flush(self._plan.rows.length)


def _gathered(plan: TilePlan) -> tuple[Callable[[int, torch.Tensor], None], Callable[[], torch.Tensor]]:
    """A ``write`` for :class:`_Blender` that gathers the bands into one tensor, and its getter."""
    parts: list[torch.Tensor] = []
    return (lambda top, block: parts.append(block)), (lambda: torch.cat(parts, dim=2))


def spills(plan: TilePlan) -> bool:
    """Whether a job of *plan* keeps its activations on disk (:data:`SPILL_ABOVE_PIXELS`)."""
    return plan.window_pixels > SPILL_ABOVE_PIXELS


def translate_tiled(
    stages: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    image: torch.Tensor | WindowSource,
    plan: TilePlan,
    statistics: SharedStatistics | None,
    device: torch.device,
    whole: Stage | None = None,
    output: Callable[[int, torch.Tensor], None] | None = None,
    spill: bool | None = None,
) -> Generator[float, None, torch.Tensor | None]:
    """Run the model's ``stages`` over the windows of ``image`` (``(1, C, H, W)`` on the host, or
    a :class:`WindowSource` read window by window).

    A generator: it yields the fraction done after every window evaluation
    (so callers can show progress and stop early) and returns the blended
    ``(S, C_out, H, W)`` float32 result on the host; with ``output``, it hands
    the result over instead as row bands, ``output(top, (S, C_out, rows, W))``
    in order, and returns None. ``statistics`` must be fresh for this image.

    With several windows and shared statistics, the stages run one after the
    other over all windows, each window's activations kept on the host in
    between (on disk with ``spill``, by default for jobs over
    :data:`SPILL_ABOVE_PIXELS`; the folder goes when the generator ends,
    is closed or fails): settling a normalisation layer then re-runs only its own stage.
    ``whole``: what runs instead of the composed stages where each window is one
    pass (no shared statistics, or a single window), e.g. a compiled model.
    """
    if isinstance(image, torch.Tensor):
        padded = _pad(image, plan.rows.length, plan.cols.length)

        def read(i: int, j: int) -> torch.Tensor:
            (top, height), (left, width) = plan.rows.windows[i], plan.cols.windows[j]
            return padded[..., top : top + height, left : left + width]
    else:
        def read(i: int, j: int) -> torch.Tensor:
            (top, height), (left, width) = plan.rows.windows[i], plan.cols.windows[j]
            return image.window(plan, (top, top + height), (left, left + width))

    windows = [(i, j) for i in range(len(plan.rows.windows)) for j in range(len(plan.cols.windows))]
    if statistics is None or len(windows) == 1:
        stages, statistics = [whole or compose_stages(stages)], None
    write, gathered = (output, None) if output is not None else _gathered(plan)
    blender = _Blender(plan, write)
    spilled = len(stages) > 1 and (spills(plan) if spill is None else spill)
    activations: SpilledActivations | dict[int, torch.Tensor] = SpilledActivations() if spilled else {}
    try:
        for stage_index, stage in enumerate(stages):
            last_stage = stage_index == len(stages) - 1

            def stage_input(step: int) -> torch.Tensor:
                return read(*windows[step]) if stage_index == 0 else activations[step]

            pixelwise = statistics is None or isinstance(stage, SourceStage)  # no normalisation in a SourceStage
            passes = 1 if pixelwise else statistics.passes(stage, stage_input(0).to(device))
            for pass_index in range(passes):
                final = pass_index == passes - 1
                with statistics.collect() if statistics is not None else nullcontext():
                    for step, (i, j) in enumerate(windows):
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
                                result = run_stage(stage, stage_input(step).to(device),
                                                   lambda: read(*windows[step]).to(device))
                        except StatisticsPassDone:
                            if final:
                                raise
                        else:
                            if final and last_stage:
                                blender.add(i, j, result.cpu())
                            elif final:
                                activations[step] = result.cpu()
                        done = (pass_index * len(windows) + step + 1) / (passes * len(windows))
                        yield (stage_index + done) / len(stages)
    finally:
        if isinstance(activations, SpilledActivations):
            activations.close()
    blender.finish()
    return None if gathered is None else gathered()


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
