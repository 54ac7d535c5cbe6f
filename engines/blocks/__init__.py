"""Network blocks shared by the engines (pure torch)."""

from engines.blocks.autoencoder import Encoder, Upsampler, receptive_radius
from engines.blocks.convolution import MLP, AdaINResBlock, ConvBlock, ResBlock, UpBlock
from engines.blocks.normalization import (
    AdaptiveInstanceNorm2d,
    InstanceNorm2d,
    LayerNorm2d,
    SharedStatsNorm,
    TileStatistics,
)

__all__ = [
    "MLP",
    "AdaINResBlock",
    "AdaptiveInstanceNorm2d",
    "ConvBlock",
    "Encoder",
    "InstanceNorm2d",
    "LayerNorm2d",
    "ResBlock",
    "SharedStatsNorm",
    "TileStatistics",
    "UpBlock",
    "receptive_radius",
    "Upsampler",
]
