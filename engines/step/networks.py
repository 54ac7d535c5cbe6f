"""StEP networks (Meshry et al., CVPR 2021): style encoder, generator, style mapper.

Sizes follow ``docs/methods.md`` §4; widths and depths come from the config
so the same code serves the CPU-sized ``small`` preset and the ``paper`` one.
The discriminator belongs to training and lives in ``trainers/``.

- :class:`~engines.blocks.PooledEncoder` is the style encoder: convolutions
  without normalisation (it would erase what the code is about), a global
  average pool and a 1×1 convolution to an 8-d code per image.
- :class:`StyleConcatGenerator` is pix2pixHD-like: a 7×7 convolution,
  stride-2 downsamplings doubling the width, residual blocks, as many ×2
  upsamplings (nearest + 5×5 convolution, no checkerboard) and a 7×7
  convolution → tanh. The code ``z`` is tiled over the image and concatenated
  with the input, and again with the features at the bottleneck.
  Normalisation is layer norm (over channels and space), not instance norm:
  a tiled constant code enters a convolution as a per-channel constant, which
  instance norm would subtract again, whereas layer norm keeps the differences
  between channels. The layers are the shared-statistics ones of
  :mod:`engines.blocks`, so tiled translation equals whole-image translation.
- :class:`StyleMapper` maps ``N(0, I)`` to the style space (fitted by IMLE in
  training), so styles can be sampled without a reference; its ``trained``
  buffer says whether it was fitted.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.blocks import ConvBlock, ResBlock, Upsampler
from engines.blocks.autoencoder import blend_with_source
from napari_i2i.contract.engine_api import SourceStage


def tile_concat(features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``features`` ``(N or 1, C, H, W)`` with ``codes`` ``(N, D)`` tiled over H×W: ``(N, C + D, H, W)``.

    One image with several codes is broadcast to one copy per code.
    """
    count = codes.shape[0]
    if features.shape[0] != count:
        if features.shape[0] != 1:
            raise ValueError(f"{features.shape[0]} images but {count} style codes")
        features = features.expand(count, -1, -1, -1)
    height, width = features.shape[-2:]
    tiled = codes.to(features.dtype)[:, :, None, None].expand(-1, -1, height, width)
    return torch.cat([features, tiled], dim=1)


class StyleConcatGenerator(nn.Module):
    """``Î_B = G(I_A, z)``: pix2pixHD-like, ``z`` tiled and concatenated at the input and the bottleneck.

    With ``input_gate`` (and ``colour_transform``) the output is blended with ``I_A`` pixel by pixel
    (:func:`~engines.blocks.autoencoder.blend_with_source`); StEP has no reconstruction, so every
    output is."""

    def __init__(
        self, channels_a: int, channels_b: int, dim: int, n_downsample: int, n_res: int, style_dim: int,
        input_gate: bool = False, colour_transform: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(channels_a + style_dim, dim, 7, padding=3, norm="layer")]
        for _ in range(n_downsample):
            layers.append(ConvBlock(dim, 2 * dim, 4, stride=2, padding=1, norm="layer"))
            dim *= 2
        self.down = nn.Sequential(*layers)
        self.fuse = ConvBlock(dim + style_dim, dim, 1, norm="layer")  # z again, at the bottleneck
        self.res_blocks = nn.Sequential(*(ResBlock(dim, norm="layer") for _ in range(n_res)))
        self.up = Upsampler(dim, channels_b, n_downsample, norm="layer", gate=input_gate,
                            colour_transform=colour_transform)
        self.style_dim = style_dim
        self.input_gate = input_gate

    def layers(self, codes: torch.Tensor) -> list:
        """The forward pass as a list of steps (for staged tiling); ``codes`` ``(S, style_dim)``."""
        return [
            lambda x: tile_concat(x, codes),
            *self.down,
            lambda x: self.fuse(tile_concat(x, codes)),
            *self.res_blocks,
            *self.up,
            *([SourceStage(blend_with_source)] if self.input_gate else []),
        ]

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        x = self.down(tile_concat(images, codes))
        x = self.up(self.res_blocks(self.fuse(tile_concat(x, codes))))
        return blend_with_source(x, images) if self.input_gate else x


class StyleMapper(nn.Sequential):
    """MLP ``style_dim → hidden (tanh) × layers → style_dim``: a sample of ``N(0, I)`` → a style code.

    The buffer ``trained`` says whether it was fitted: saved with its weights, so a model file
    offers sampled styles only when its mapper means something.
    """

    def __init__(self, style_dim: int, hidden: int, layers: int) -> None:
        modules: list[nn.Module] = []
        width = style_dim
        for _ in range(layers):
            modules += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        modules.append(nn.Linear(width, style_dim))
        super().__init__(*modules)
        self.style_dim = style_dim
        self.register_buffer("trained", torch.tensor(False))


def generator_radius(n_downsample: int, n_res: int) -> int:
    """Input pixels on each side one output pixel of :class:`StyleConcatGenerator` depends on.

    As :func:`engines.blocks.receptive_radius` (7×7 conv, 4×4 stride-2 convs,
    nearest ×2 + 5×5 convs, 7×7 conv), with ``2·n_res`` 3×3 convolutions at
    the bottleneck (the 1×1 fusion adds none): ``F·(2·n_res + 4) + 2`` with
    ``F = 2**n_downsample``. Normalisation statistics are whole-image ones
    (shared between tiles), so they do not count here.
    """
    return 2**n_downsample * (2 * n_res + 4) + 2
