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


def hinge_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge GAN, discriminator side: ``mean(relu(1 − real)) + mean(relu(1 + fake))``."""
    return F.relu(1 - real.float()).mean() + F.relu(1 + fake.float()).mean()


def hinge_generator(fake: torch.Tensor) -> torch.Tensor:
    """Hinge GAN, generator side: ``−mean(fake)``."""
    return -fake.float().mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of ``‖∇_x D(x)‖²`` on real images.

    ``real_logits`` are ``(N, …)`` (e.g. patch logits); an image's logit is the
    mean of its entries. ``real_images`` must require grad and ``real_logits``
    come from them. The graph is kept, so the penalty can be backpropagated.
    ``scale``: the fp16 gradient scaler's scale (the gradient is taken of the
    scaled output, so it does not underflow, and unscaled before squaring).
    """
    per_image = real_logits.float().flatten(1).mean(1)
    (gradient,) = torch.autograd.grad(per_image.sum() * scale, real_images, create_graph=True)
    return (gradient.float() / scale).square().flatten(1).sum(1).mean()
