"""UNIT networks (Liu, Breuel & Kautz, NIPS 2017): one VAE per domain, one latent space.

Sizes follow ``docs/methods.md`` §1; widths and depths come from the config
so the same code serves the CPU-sized ``small`` preset and the ``paper`` one.
The discriminators belong to training and live in ``trainers/``.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.blocks import Encoder, ResBlock, Upsampler
from engines.blocks.autoencoder import gated_output


class Decoder(nn.Module):
    """Residual blocks (IN) at the latent resolution, then upsampling to an image."""

    def __init__(self, channels: int, out_channels: int, n_upsample: int, n_res: int, gate: bool = False,
                 colour_transform: bool = False) -> None:
        super().__init__()
        self.res_blocks = nn.Sequential(
            *(ResBlock(channels, norm="instance") for _ in range(n_res))
        )
        self.upsample = Upsampler(channels, out_channels, n_upsample, gate=gate, colour_transform=colour_transform)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.res_blocks(z))


class DomainVAE(nn.Module):
    """One domain's generator: image → latent mean ``h``, latent ``z`` → image.

    The "reduced VAE" of the paper has unit variance, so the encoder outputs
    only the mean; inference uses ``z = h`` and is deterministic.
    """

    def __init__(self, channels: int, dim: int, n_downsample: int, n_res: int, input_gate: bool = False,
                 colour_transform: bool = False) -> None:
        super().__init__()
        self.encoder = Encoder(channels, dim, n_downsample, n_res)
        self.decoder = Decoder(self.encoder.out_channels, channels, n_downsample, n_res, gate=input_gate,
                               colour_transform=colour_transform)
        self.input_gate = input_gate
        self.channels = channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """The image of latent ``z``; with the input gate and a ``source`` (the image ``z`` came
        from), blended with it (:func:`blend_with_source`)."""
        return gated_output(self.decoder(z), self.input_gate, source, self.channels)


def sample_latent(h: torch.Tensor) -> torch.Tensor:
    """``z = h + ε``, ``ε ~ N(0, I)``: the training-time latent (its KL term is mean(h²))."""
    return h + torch.randn_like(h)


def share_latent_blocks(gen_a: DomainVAE, gen_b: DomainVAE, n_blocks: int) -> None:
    """Tie the blocks next to the latent space: the paper's explicit weight sharing.

    The last ``n_blocks`` encoder residual blocks and the first ``n_blocks``
    decoder residual blocks of ``gen_b`` become those of ``gen_a`` (the same
    module objects, so one set of parameters serves both domains).
    """
    encoder_a, encoder_b = gen_a.encoder.model, gen_b.encoder.model
    for index in range(len(encoder_a) - n_blocks, len(encoder_a)):
        encoder_b[index] = encoder_a[index]
    for index in range(n_blocks):
        gen_b.decoder.res_blocks[index] = gen_a.decoder.res_blocks[index]
