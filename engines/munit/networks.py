"""MUNIT networks (Huang et al., ECCV 2018): one domain's content/style autoencoder.

Sizes follow ``docs/methods.md`` §2; widths and depths come from the config
so the same code serves the CPU-sized ``small`` preset and the ``paper`` one.
The discriminator belongs to training and lives in ``trainers/``.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.blocks import AdaINDecoder, Encoder, PooledEncoder
from engines.blocks.autoencoder import gated_output
from engines.blocks.convolution import Norm

#: Normalisations the content encoder may use: ``instance`` as published; ``layer`` — a
#: deviation from the paper, in no preset — normalises each feature map over all channels
#: and pixels, so a tile's overall colour and stain strength stay in the content code
#: instead of being left to the style code (benchmarks/NOTES.md, "Content-encoder
#: normalisation": it helps a one-look task, and the decoder then ignores the style).
CONTENT_NORMS = ("instance", "layer")


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
        content_norm: Norm = "instance",
        input_gate: bool = False,
        colour_transform: bool = False,
    ) -> None:
        super().__init__()
        self.content_encoder = Encoder(channels, dim, n_downsample, n_res, content_norm)  # = UNIT's (instance)
        self.style_encoder = PooledEncoder(channels, dim, style_downsample, style_dim)  # no IN: it would erase the style
        self.decoder = AdaINDecoder(
            self.content_encoder.out_channels, channels, n_downsample, n_res, style_dim, mlp_dim,
            gate=input_gate, colour_transform=colour_transform,
        )
        self.style_dim = style_dim
        self.input_gate = input_gate
        self.channels = channels

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.content_encoder(x), self.style_encoder(x)

    def decode(self, content: torch.Tensor, style: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """The image of ``content`` in ``style``; with the input gate and a ``source`` (the image
        the content came from), blended with it (:func:`blend_with_source`)."""
        return gated_output(self.decoder(content, style), self.input_gate, source, self.channels)
