"""The two halves UNIT's and MUNIT's generators share.

UNIT's encoder is MUNIT's content encoder, and both decoders end in the same
upsampling path; only what happens at the bottleneck differs (plain residual
blocks in UNIT, AdaIN residual blocks in MUNIT).
"""

from __future__ import annotations

import torch
from torch import nn

from engines.blocks.convolution import ConvBlock, ResBlock, UpBlock


class Encoder(nn.Module):
    """7×7 conv, stride-2 4×4 downsamples doubling the width, residual blocks (IN)."""

    def __init__(self, in_channels: int, dim: int, n_downsample: int, n_res: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(in_channels, dim, 7, padding=3, norm="instance")]
        for _ in range(n_downsample):
            layers.append(ConvBlock(dim, 2 * dim, 4, stride=2, padding=1, norm="instance"))
            dim *= 2
        layers += [ResBlock(dim, norm="instance") for _ in range(n_res)]
        self.model = nn.Sequential(*layers)
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Upsampler(nn.Sequential):
    """Nearest ×2 + 5×5 conv (LayerNorm) halving the width per step, then 7×7 conv → tanh."""

    def __init__(self, in_channels: int, out_channels: int, n_upsample: int) -> None:
        layers: list[nn.Module] = []
        dim = in_channels
        for _ in range(n_upsample):
            layers.append(UpBlock(dim, dim // 2, norm="layer"))
            dim //= 2
        layers.append(ConvBlock(dim, out_channels, 7, padding=3, activation="tanh"))
        super().__init__(*layers)


def receptive_radius(n_downsample: int, n_res: int) -> int:
    """Input pixels on each side one output pixel of Encoder → Upsampler depends on (exact).

    Per axis, with ``F = 2**n_downsample`` and an output pixel ``p``, walking back:
    the last 7×7 conv reaches ``p ± 3``; each upsampling step (5×5 conv, then
    nearest ×2) maps ``[lo, hi]`` to ``[⌊(lo−2)/2⌋, ⌊(hi+2)/2⌋]``, ending at
    latent cells ``[⌊(p−2F−1)/F⌋, ⌊(p+2F+1)/F⌋]``; the ``4·n_res`` 3×3 convs of
    the encoder and decoder residual blocks add ``4·n_res`` cells each side;
    each 4×4 stride-2 conv maps cell ``c`` to ``[2c−1, 2c+2]`` and the first
    7×7 conv adds 3. At the worst ``p mod F`` both sides reach ``4F(n_res+1) + 2``.
    """
    return 4 * 2**n_downsample * (n_res + 1) + 2
