"""Convolution building blocks shared by the encoder/decoder engines."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from engines.blocks.normalization import AdaptiveInstanceNorm2d, InstanceNorm2d, LayerNorm2d

Norm = Literal["instance", "layer", "none"]
Activation = Literal["relu", "lrelu", "tanh", "none"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "instance":
        return InstanceNorm2d(channels)
    if kind == "layer":
        return LayerNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}")


def _activation(kind: Activation) -> nn.Module:
    return {
        "relu": lambda: nn.ReLU(inplace=True),
        "lrelu": lambda: nn.LeakyReLU(0.2),
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }[kind]()


class ConvBlock(nn.Sequential):
    """Reflect-padded convolution, then normalisation, then activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        norm: Norm = "none",
        activation: Activation = "relu",
    ) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding) if padding else nn.Identity(),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=True),
            _norm(norm, out_channels),
            _activation(activation),
        )


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a skip connection, normalised."""

    def __init__(self, channels: int, norm: Norm = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels, 3, padding=1, norm=norm, activation="relu"),
            ConvBlock(channels, channels, 3, padding=1, norm=norm, activation="none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AdaINResBlock(nn.Module):
    """Residual block whose two normalisations take scale/shift from a style."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = ConvBlock(channels, channels, 3, padding=1, activation="none")
        self.norm1 = AdaptiveInstanceNorm2d(channels)
        self.conv2 = ConvBlock(channels, channels, 3, padding=1, activation="none")
        self.norm2 = AdaptiveInstanceNorm2d(channels)

    @property
    def num_style_params(self) -> int:
        return 4 * self.channels

    def forward(self, x: torch.Tensor, style_params: torch.Tensor) -> torch.Tensor:
        """``style_params`` is ``(N, 4C)``: scale and shift of both norms."""
        scale1, shift1, scale2, shift2 = style_params.chunk(4, dim=1)
        h = torch.relu(self.norm1(self.conv1(x), 1 + scale1, shift1))
        h = self.norm2(self.conv2(h), 1 + scale2, shift2)
        return x + h


class UpBlock(nn.Sequential):
    """Nearest-neighbour ×2 upsampling and a 5×5 convolution (no checkerboard)."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm = "layer") -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvBlock(in_channels, out_channels, 5, padding=2, norm=norm, activation="relu"),
        )


class MLP(nn.Sequential):
    """Fully connected layers with ReLU between them (style code → AdaIN params)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, layers: int = 3) -> None:
        sizes = [in_features] + [hidden] * (layers - 1) + [out_features]
        modules: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            modules.append(nn.Linear(n_in, n_out))
            if i < layers - 1:
                modules.append(nn.ReLU())
        super().__init__(*modules)
