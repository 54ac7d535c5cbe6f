"""Normalisation layers whose statistics tiles of one image can share.

Instance norm, AdaIN and MUNIT-style layer norm all normalise with statistics
of the whole feature map. When a large image is translated tile by tile, each
tile would otherwise get its own statistics and the tiles visibly disagree.
:class:`TileStatistics` fixes that by settling whole-image statistics one
layer at a time (a layer's statistics depend on every layer before it, so
nothing cheaper is exact: a fixed-point iteration over all layers at once
oscillates on deep decoders).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from napari_i2i.contract.engine_api import StatisticsPassDone


class _RunningMoments:
    """Mean and variance merged over tiles (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.sum_sq: torch.Tensor | None = None

    def add(self, part: torch.Tensor, dims: tuple[int, ...]) -> None:
        count = 1
        for dim in dims:
            count *= part.shape[dim]
        if count == 0:
            return
        var, mean = torch.var_mean(part, dim=dims, unbiased=False, keepdim=True)
        if self.mean is None:
            self.count, self.mean, self.sum_sq = count, mean, var * count
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.sum_sq = self.sum_sq + var * count + delta.square() * (self.count * count / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.mean is not None and self.sum_sq is not None
        return self.mean, self.sum_sq / self.count


class SharedStatsNorm(nn.Module):
    """Base of the normalisations below: statistics local or shared by tiles.

    Statistics are computed in float32 whatever the autocast dtype.
    """

    def __init__(self, across_channels: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.dims = (1, 2, 3) if across_channels else (2, 3)
        self.eps = eps
        self.tiling: TileStatistics | None = None

    def normalise(
        self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalise, then the optional per-channel affine ``weight``/``bias``."""
        x32 = x.float()
        if self.tiling is None:  # fused kernels
            if self.dims == (2, 3):
                out = F.instance_norm(x32, weight=weight, bias=bias, eps=self.eps)
            else:
                out = F.group_norm(x32, 1, weight=weight, bias=bias, eps=self.eps)
            return out.to(x.dtype)
        mean, var = self.tiling.statistics(self, x32)
        out = (x32 - mean) * torch.rsqrt(var + self.eps)
        if weight is not None:
            out = torch.addcmul(bias[:, None, None], out, weight[:, None, None])
        return out.to(x.dtype)


class InstanceNorm2d(SharedStatsNorm):
    """Per-sample, per-channel normalisation without affine parameters."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(across_channels=False, eps=eps)
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(x)


class AdaptiveInstanceNorm2d(SharedStatsNorm):
    """Instance norm whose per-sample scale and shift come from a style code."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(across_channels=False, eps=eps)
        self.num_features = num_features

    def forward(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``scale`` and ``shift`` are ``(N, C)``; the identity is scale 1, shift 0."""
        normed = self.normalise(x)
        return torch.addcmul(shift[:, :, None, None], normed, scale[:, :, None, None])


class LayerNorm2d(SharedStatsNorm):
    """Per-sample normalisation over channels and space, per-channel affine.

    Used in the upsampling path of UNIT/MUNIT decoders, where instance norm
    would fight the AdaIN statistics injected earlier.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(across_channels=True, eps=eps)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(x, self.weight, self.bias)


class TileStatistics:
    """Whole-image statistics for every :class:`SharedStatsNorm` of a model.

    Implements the host's ``SharedStatistics`` protocol. Each pass over the
    tiles settles the statistics of one more layer, in execution order: the
    layers before it normalise with settled whole-image statistics, the layer
    itself accumulates over the part of each tile the tile owns (``region``)
    and then ends the tile's forward pass early, since nothing after it can be
    right yet. When every layer is settled, a last pass produces the output.
    """

    def __init__(self, model: nn.Module) -> None:
        self._layers = {m for m in model.modules() if isinstance(m, SharedStatsNorm)}
        self._settled: dict[SharedStatsNorm, tuple[torch.Tensor, torch.Tensor]] = {}
        self._target: SharedStatsNorm | None = None
        self._moments = _RunningMoments()
        self._rows = (0.0, 1.0)
        self._cols = (0.0, 1.0)

    def passes(self, translate: Callable[[torch.Tensor], object], tile: torch.Tensor) -> int:
        """Count the layers ``translate`` runs, by running it once on ``tile``."""
        called: set[SharedStatsNorm] = set()
        hooks = [
            layer.register_forward_pre_hook(lambda module, _: called.add(module))
            for layer in self._layers
        ]
        try:
            translate(tile)
        finally:
            for hook in hooks:
                hook.remove()
        return len(called) + 1

    @contextmanager
    def collect(self) -> Iterator[None]:
        self._target, self._moments = None, _RunningMoments()
        for layer in self._layers:
            layer.tiling = self
        try:
            yield
        finally:
            for layer in self._layers:
                layer.tiling = None
        if self._target is not None:
            self._settled[self._target] = self._moments.result()

    @contextmanager
    def region(self, rows: tuple[float, float], cols: tuple[float, float]) -> Iterator[None]:
        self._rows, self._cols = rows, cols
        try:
            yield
        finally:
            self._rows = self._cols = (0.0, 1.0)

    def statistics(
        self, layer: SharedStatsNorm, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        settled = self._settled.get(layer)
        if settled is not None:
            return settled
        if self._target is None:
            self._target = layer
        if layer is not self._target:
            raise RuntimeError("layers ran in a different order on another tile")
        height, width = x.shape[-2:]
        owned = x[
            ...,
            round(self._rows[0] * height) : round(self._rows[1] * height),
            round(self._cols[0] * width) : round(self._cols[1] * width),
        ]
        self._moments.add(owned, layer.dims)
        raise StatisticsPassDone
