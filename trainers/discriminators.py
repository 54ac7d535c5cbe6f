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


class ActFirstResBlock(nn.Module):
    """Residual block with the activation before each convolution (LeakyReLU 0.2 → 3×3 conv, twice),
    no normalisation; the skip is a 1×1 convolution without bias when the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = min(in_channels, out_channels)
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2),  # not in place: the skip still needs x
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, hidden, 3),
            nn.LeakyReLU(0.2, inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, out_channels, 3),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class MultiTaskDiscriminator(nn.Module):
    """FUNIT's discriminator: one patch-logit channel per training class, of which only
    the channel of each image's class is used.

    A 7×7 convolution, then ``n_blocks`` activation-first residual blocks in
    pairs (the second of a pair doubling the width up to ``max_dim``) with a
    3×3 stride-2 average pool after every pair but the last, then LeakyReLU and
    a 1×1 convolution to ``n_classes`` logits. :meth:`features` is everything
    but that last layer (for feature matching). At paper sizes (64 wide, 10
    blocks) a 128² image gives 1024 × 8 × 8 features.
    """

    def __init__(
        self, in_channels: int, n_classes: int, dim: int = 64, n_blocks: int = 10, max_dim: int = 1024
    ) -> None:
        super().__init__()
        if n_blocks < 2 or n_blocks % 2:
            raise ValueError(f"the discriminator needs an even number (≥ 2) of residual blocks, got {n_blocks}")
        if n_classes < 1:
            raise ValueError(f"the discriminator needs at least one class, got {n_classes}")
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, dim, 7)]
        for pair in range(n_blocks // 2):
            out = min(2 * dim, max_dim)
            layers += [ActFirstResBlock(dim, dim), ActFirstResBlock(dim, out)]
            if pair < n_blocks // 2 - 1:
                layers += [nn.ReflectionPad2d(1), nn.AvgPool2d(3, stride=2)]
            dim = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(dim, n_classes, 1))
        self.feature_channels = dim
        self.n_classes = n_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator without its last layer: ``(N, feature_channels, h, w)``."""
        return self.body(x)

    def logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(N, h, w)`` patch logits, each image's from the channel of its class."""
        out = self.head(features)
        return out[torch.arange(len(out), device=out.device), labels]

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x), labels)
