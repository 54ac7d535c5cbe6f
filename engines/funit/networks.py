"""FUNIT networks (Liu et al., ICCV 2019): content encoder, class encoder, AdaIN decoder.

Sizes follow ``docs/methods.md`` §3; widths and depths come from the config
so the same code serves the CPU-sized ``small`` preset and the ``paper`` one.
One generator serves every class: the class is whatever the class code says,
and the class code of K example images is the mean of their codes. The
discriminator belongs to training and lives in ``trainers/``.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.blocks import AdaINDecoder, Encoder, PooledEncoder
from engines.blocks.autoencoder import gated_output


class FewShotGenerator(nn.Module):
    """``x̄ = F(E_x(x), mean_k E_y(y_k))``: content of ``x`` in the class of the ``y_k``."""

    def __init__(
        self,
        channels: int,
        dim: int,
        n_downsample: int,
        n_res: int,
        class_dim: int,
        class_downsample: int,
        mlp_dim: int,
        input_gate: bool = False,
        colour_transform: bool = False,
    ) -> None:
        super().__init__()
        self.content_encoder = Encoder(channels, dim, n_downsample, n_res)  # = UNIT's/MUNIT's
        self.class_encoder = PooledEncoder(channels, dim, class_downsample, class_dim)
        self.decoder = AdaINDecoder(  # upsampling with instance norm, as published
            self.content_encoder.out_channels, channels, n_downsample, n_res, class_dim, mlp_dim,
            upsample_norm="instance", gate=input_gate, colour_transform=colour_transform,
        )
        self.class_dim = class_dim
        self.input_gate = input_gate
        self.channels = channels

    def decode(self, content: torch.Tensor, class_code: torch.Tensor,
               source: torch.Tensor | None = None) -> torch.Tensor:
        """``content`` in the class of ``class_code``; with the input gate and a ``source`` (the
        image the content came from), blended with it (:func:`blend_with_source`)."""
        return gated_output(self.decoder(content, class_code), self.input_gate, source, self.channels)

    def forward(self, images: torch.Tensor, class_images: torch.Tensor) -> torch.Tensor:
        """Each image in the class of the image at the same batch position (K = 1, as in training)."""
        return self.decode(self.content_encoder(images), self.class_encoder(class_images), images)
