"""Network blocks shared by the engines (pure torch)."""

from engines.blocks.autoencoder import (
    AdaINDecoder,
    Encoder,
    PooledEncoder,
    Upsampler,
    receptive_radius,
)
from engines.blocks.convolution import MLP, AdaINResBlock, ConvBlock, ResBlock, UpBlock
from engines.blocks.normalization import (
    AdaptiveInstanceNorm2d,
    InstanceNorm2d,
    LayerNorm2d,
    SharedStatsNorm,
    TileStatistics,
)
from engines.blocks.styles import interpolate_codes

__all__ = [
    "MLP",
    "AdaINDecoder",
    "AdaINResBlock",
    "AdaptiveInstanceNorm2d",
    "ConvBlock",
    "Encoder",
    "InstanceNorm2d",
    "LayerNorm2d",
    "PooledEncoder",
    "ResBlock",
    "SharedStatsNorm",
    "TileStatistics",
    "UpBlock",
    "Upsampler",
    "interpolate_codes",
    "receptive_radius",
]
