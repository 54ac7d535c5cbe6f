"""Discriminators used in training only (inference never needs them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



class PatchDiscriminator(nn.Sequential):
    """Stride-2 4×4 convolutions doubling the width, LeakyReLU, no norm, 1×1 logits.

    Zero padding (not reflect) so that small crops whose coarsest scale
    shrinks to a pixel or two still work.
    """

    def __init__(self, in_channels: int, dim: int, n_layers: int) -> None:
        layers: list[nn.Module] = []
        for index in range(n_layers):
            out = dim * 2**index
            layers += [nn.Conv2d(in_channels, out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            in_channels = out
        layers.append(nn.Conv2d(in_channels, 1, 1))
        super().__init__(*layers)


class MultiScaleDiscriminator(nn.Module):
    """The UNIT/MUNIT discriminator: one patch discriminator per scale, 3×3 avg-pool between."""

    def __init__(self, in_channels: int, dim: int = 64, n_layers: int = 4, n_scales: int = 3) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels, dim, n_layers) for _ in range(n_scales)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, discriminator in enumerate(self.scales):
            if index:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(discriminator(x))
        return outputs
