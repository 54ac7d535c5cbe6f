"""Loss terms, the style discriminator and its memory of the unified-style-space trainer
(``docs/methods.md`` §5).

Non-saturating GAN terms (StarGAN v2's choice), the triplet smoothness term
on the style encoder with its augmented views, and the linear decay of the
diversity weight. Shared terms (L1, R1) are in :mod:`trainers.losses`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nonsaturating_discriminator(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``−log σ(real) − log(1 − σ(fake))``, averaged (patch logits or one logit per item)."""
    return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()


def nonsaturating_generator(fake: torch.Tensor) -> torch.Tensor:
    """``−log σ(fake)``: the generator side, pushing ``fake`` to be judged real."""
    return F.softplus(-fake.float()).mean()


def unification_generator(latent: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The generators' side of ``L_uni``: reference styles pushed to pass as latent ones and
    latent styles to pass as reference ones, so both ways into the style space move towards
    each other (pushing only the encoder leaves the flow where it started)."""
    return nonsaturating_generator(reference) + nonsaturating_generator(-latent)


def decayed_weight(start: float, iteration: int, iterations: int) -> float:
    """``start`` falling linearly to 0 at ``iterations`` (λ_ds), 0 after."""
    if iterations <= 0:
        return 0.0
    return start * max(0.0, 1.0 - iteration / iterations)


def dihedral_views(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image flipped and (square images) transposed at random: a view with the same look.

    Only geometric changes: a change of colour or contrast would change the very
    style the encoder is asked to keep. The draws come from torch's CPU
    generator (``generator`` or the global one, which the training loop saves).
    """
    flips = torch.randint(0, 2, (len(images), 3), generator=generator).bool()
    views = []
    for image, (vertical, horizontal, transpose) in zip(images, flips.tolist()):
        if vertical:
            image = image.flip(-2)
        if horizontal:
            image = image.flip(-1)
        if transpose and image.shape[-1] == image.shape[-2]:
            image = image.transpose(-1, -2)
        views.append(image)
    return torch.stack(views)


def smoothness_triplet(anchor_all: torch.Tensor, domains: torch.Tensor, positive: torch.Tensor,
                       margin: float) -> torch.Tensor:
    """``max(α + ‖a − p‖ − ‖a − n‖, 0)`` averaged: ``n`` the other batch image nearest to the anchor.

    ``anchor_all`` ``(N, D, S)``: every image's style under every domain's head; the anchor of
    image ``i`` is its style in its own domain ``domains[i]`` and the negatives are the other
    images' styles under that same head. ``positive`` ``(N, S)``: the styles of augmented views.
    """
    count = len(anchor_all)
    rows = torch.arange(count, device=anchor_all.device)
    anchors = anchor_all[rows, domains].float()  # (N, S)
    same_head = anchor_all[:, domains].transpose(0, 1).float()  # (N anchors, N images, S)
    distances = torch.linalg.vector_norm(anchors[:, None] - same_head, dim=-1)
    distances = distances.masked_fill(torch.eye(count, dtype=torch.bool, device=distances.device), float("inf"))
    negative = distances.min(1).values
    positive_distance = torch.linalg.vector_norm(anchors - positive.float(), dim=-1)
    return F.relu(margin + positive_distance - negative).mean()


class StyleDiscriminator(nn.Module):
    """``D_s^u``: tells latent styles of domain ``u`` (logit > 0) from reference styles; an MLP
    with one output per domain, of which each style's domain is read."""

    def __init__(self, style_dim: int, hidden: int, num_domains: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(style_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, num_domains),
        )

    def forward(self, styles: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        logits = self.model(styles)
        return logits[torch.arange(len(logits), device=logits.device), domains]


class StyleMemory(nn.Module):
    """The last ``size`` reference styles of each domain, detached: what the style discriminator
    compares many latent draws with (``unification_draws``), where a batch holds about one
    reference per domain. Buffers, so a resumed run goes on with the same memory."""

    def __init__(self, num_domains: int, size: int, style_dim: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("styles", torch.zeros(num_domains, size, style_dim))
        self.register_buffer("pushed", torch.zeros(num_domains, dtype=torch.long))

    def push(self, styles: torch.Tensor, domains: torch.Tensor) -> None:
        """Each style over the oldest of its domain's, all at once (no sync with the device)."""
        one_hot = F.one_hot(domains, len(self.pushed))
        rank = (one_hot.cumsum(0) - 1).gather(1, domains[:, None])[:, 0]  # its place among this batch's
        newest = rank >= one_hot.sum(0)[domains] - self.size  # more than `size` of a domain: the last ones
        slots = (self.pushed[domains] + rank) % self.size
        self.styles[domains[newest], slots[newest]] = styles.detach().float()[newest]
        self.pushed += one_hot.sum(0)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored styles and their domains (a domain not seen yet has none)."""
        filled = self.pushed.clamp(max=self.size).tolist()
        styles = torch.cat([self.styles[domain, :count] for domain, count in enumerate(filled)])
        domains = torch.cat([torch.full((count,), domain, dtype=torch.long, device=styles.device)
                             for domain, count in enumerate(filled)])
        return styles, domains
