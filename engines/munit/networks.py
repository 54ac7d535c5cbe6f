"""MUNIT networks (Huang et al., ECCV 2018): content/style encoders, AdaIN decoder.

Sizes follow ``shared/METHODS.md`` §2; widths and depths come from the config
so the same code serves the CPU-sized ``small`` preset and the ``paper`` one.
The discriminator belongs to training and lives in ``trainers/``.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.blocks import MLP, AdaINResBlock, ConvBlock, Encoder, Upsampler


class StyleEncoder(nn.Module):
    """Downsampling convs without normalisation (IN would erase the style), pooled."""

    def __init__(self, in_channels: int, dim: int, n_downsample: int, style_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(in_channels, dim, 7, padding=3)]
        for i in range(n_downsample):
            out = 2 * dim if i < 2 else dim  # 64→128→256→256→256 at paper width
            layers.append(ConvBlock(dim, out, 4, stride=2, padding=1))
            dim = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, style_dim, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)


class Decoder(nn.Module):
    """AdaIN residual blocks driven by an MLP on the style, then upsampling to an image."""

    def __init__(
        self,
        content_channels: int,
        out_channels: int,
        n_upsample: int,
        n_res: int,
        style_dim: int,
        mlp_dim: int,
    ) -> None:
        super().__init__()
        dim = content_channels
        self.res_blocks = nn.ModuleList(AdaINResBlock(dim) for _ in range(n_res))
        self.mlp = MLP(style_dim, mlp_dim, sum(b.num_style_params for b in self.res_blocks))
        self.upsample = Upsampler(dim, out_channels, n_upsample)

    def style_params(self, style: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """AdaIN parameters for each residual block."""
        return self.mlp(style).split([b.num_style_params for b in self.res_blocks], dim=1)

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = content
        for block, block_params in zip(self.res_blocks, self.style_params(style)):
            x = block(x, block_params)
        return self.upsample(x)


class AutoEncoder(nn.Module):
    """One domain's generator: image ↔ (content code, style code)."""

    def __init__(
        self,
        channels: int,
        dim: int,
        n_downsample: int,
        n_res: int,
        style_dim: int,
        style_downsample: int,
        mlp_dim: int,
    ) -> None:
        super().__init__()
        self.content_encoder = Encoder(channels, dim, n_downsample, n_res)  # = UNIT's encoder
        self.style_encoder = StyleEncoder(channels, dim, style_downsample, style_dim)
        self.decoder = Decoder(
            self.content_encoder.out_channels, channels, n_downsample, n_res, style_dim, mlp_dim
        )
        self.style_dim = style_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.content_encoder(x), self.style_encoder(x)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.decoder(content, style)
