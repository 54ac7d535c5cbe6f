"""Loss terms shared by the per-method trainers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lsgan_discriminator(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN, discriminator side: real → 1, fake → 0, summed over scales."""
    return sum(((r.float() - 1) ** 2).mean() + (f.float() ** 2).mean() for r, f in zip(real, fake))


def lsgan_generator(fake: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN, generator side: fake → 1, summed over scales."""
    return sum(((f.float() - 1) ** 2).mean() for f in fake)


def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(prediction.float(), target.float())
