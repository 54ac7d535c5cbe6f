"""Networks of the unified-style-space engine (``docs/methods.md`` §5).

One generator ``G(c, s)`` for every domain (content encoder + AdaIN decoder,
the halves MUNIT and FUNIT use), and two ways into one style space: a style
encoder with one head per domain (``s = E^u(x)``) and a conditional neural
spline flow (zuko) that maps ``z ~ N(0, I)`` to a style of domain ``u``
(``s = A·f(z; θ_u)``). The discriminators belong to training (``trainers/``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import zuko
from torch import nn

from engines.blocks import AdaINDecoder, Encoder, PooledEncoder
from engines.blocks.autoencoder import gated_output


class StyleGenerator(nn.Module):
    """``G(c, s)``: the content of an image decoded with a style; one generator for all domains.

    With ``input_gate`` the decoder also makes a per-pixel gate and a translation is blended
    with its input (:func:`~engines.blocks.autoencoder.gated_output`): where the gate is closed
    the input passes through exactly."""

    def __init__(self, channels: int, dim: int, n_downsample: int, n_res: int, style_dim: int, mlp_dim: int,
                 input_gate: bool = False, colour_transform: bool = False) -> None:
        super().__init__()
        self.content_encoder = Encoder(channels, dim, n_downsample, n_res)  # instance norm, shared statistics
        self.decoder = AdaINDecoder(self.content_encoder.out_channels, channels, n_downsample, n_res,
                                    style_dim, mlp_dim, gate=input_gate, colour_transform=colour_transform)
        self.input_gate = input_gate
        self.channels = channels

    def forward(self, images: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """``images`` translated: one output per row of ``styles``; one image is broadcast to every style."""
        return self.decode(self.content_encoder(images), styles, images)

    def decode(self, content: torch.Tensor, styles: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """The image of ``content`` in ``styles``; with the gate and a ``source`` (the images the
        content came from), blended with it, without a source the decoder's own image."""
        if content.shape[0] == 1 and styles.shape[0] > 1:
            content = content.expand(styles.shape[0], -1, -1, -1)
        return gated_output(self.decoder(content, styles), self.input_gate, source, self.channels)


class DomainStyleEncoder(nn.Module):
    """``E^u(x)``: a shared trunk without normalisation (MUNIT's style encoder) and one linear
    head per domain. The trunk ends in a linear layer, so the style of the mean of crops'
    trunk codes is the mean of the crops' styles."""

    def __init__(self, channels: int, dim: int, n_downsample: int, trunk_dim: int, style_dim: int,
                 num_domains: int) -> None:
        super().__init__()
        self.trunk = PooledEncoder(channels, dim, n_downsample, trunk_dim)
        self.heads = nn.Linear(trunk_dim, style_dim * num_domains)
        self.style_dim, self.num_domains = style_dim, num_domains

    def head(self, codes: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """``(N, style_dim)``: each trunk code through the head of its domain."""
        styles = self.heads(codes).view(len(codes), self.num_domains, self.style_dim)
        return styles[torch.arange(len(codes), device=codes.device), domains]

    def forward(self, images: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images), domains)

    def mean_style(self, crops: torch.Tensor, domain: int, position: int, kind: str) -> torch.Tensor:
        """``(style_dim,)`` float32: the style of the crops ``(n, C, h, w)`` of one reference,
        checked as a user's reference (errors name its ``position``)."""
        code = self.trunk.mean_code(crops, position, "reference", kind)
        index = torch.tensor([domain], device=code.device)
        return self.head(code[None].to(self.heads.weight.dtype), index)[0].float()


class StyleFlow(nn.Module):
    """``s = A·f(z; θ_u)``: a conditional neural spline flow ``f`` over ``latent_dim`` independent
    coordinates (context: the one-hot domain, so ``θ_u`` is an MLP of ``u``), lifted into the
    ``style_dim``-d style space by a linear map ``A`` with orthonormal columns at start.

    ``f`` is invertible, so a style has coordinates (:meth:`coordinates`) that can be edited
    one at a time (:meth:`edit`). A flow keeps its dimension; ``A`` lets the style space be wider
    than the latent, as in StarGAN v2 (16 → 64)."""

    def __init__(self, latent_dim: int, style_dim: int, num_domains: int, transforms: int, hidden: int,
                 bins: int) -> None:
        super().__init__()
        if style_dim < latent_dim:
            raise ValueError(f"style_dim ({style_dim}) must be at least latent_dim ({latent_dim})")
        self.flow = zuko.flows.NSF(latent_dim, context=num_domains, bins=bins, transforms=transforms,
                                   hidden_features=(hidden, hidden))
        self.lift = nn.Linear(latent_dim, style_dim, bias=False)
        nn.init.orthogonal_(self.lift.weight)
        self.latent_dim, self.num_domains = latent_dim, num_domains

    def _transform(self, domains: torch.Tensor) -> zuko.transforms.Transform:
        context = F.one_hot(domains, self.num_domains).to(self.lift.weight.dtype)
        return self.flow(context).transform  # single pass z → f(z); the inverse is autoregressive

    def components(self, latents: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """``f(z; θ_u)``: ``(N, latent_dim)``, before the lift."""
        return self._transform(domains)(latents)

    def forward(self, latents: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """Styles ``(N, style_dim)`` of ``latents`` ``(N, latent_dim)``, each in its domain."""
        return self.lift(self.components(latents, domains))

    def projected(self, styles: torch.Tensor, fixed_lift: bool = False) -> torch.Tensor:
        """``A⁺ s``: the flow's output whose lift is nearest to each style (``fixed_lift``: no
        gradient reaches ``A``)."""
        lift = self.lift.weight.float()
        return styles @ torch.linalg.pinv(lift.detach() if fixed_lift else lift).T.to(styles.dtype)

    def log_density(self, styles: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """``log p(A⁺ s | u)`` ``(N,)``: how likely each style's part in the lifted subspace is as a
        latent style of its domain (change of variables through ``f⁻¹``). ``A`` is held fixed here:
        rescaling it would raise the density without bringing the two kinds of style together."""
        latents, log_jacobian = self._transform(domains).inv.call_and_ladj(self.projected(styles, fixed_lift=True))
        normal = -0.5 * (latents.square() + math.log(2 * math.pi))
        return normal.sum(-1) + log_jacobian

    def off_subspace(self, styles: torch.Tensor) -> torch.Tensor:
        """``s − A·A⁺s`` ``(N, style_dim)``: the part of each style no latent style can have (``A``
        held fixed, as in :meth:`log_density`)."""
        lifted_back = self.projected(styles, fixed_lift=True) @ self.lift.weight.detach().T.to(styles.dtype)
        return styles - lifted_back

    def coordinates(self, styles: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """``z = f⁻¹(A⁺ s; θ_u)``: the independent coordinates of styles ``(N, style_dim)``."""
        return self._transform(domains).inv(self.projected(styles))

    def edit(self, styles: torch.Tensor, domains: torch.Tensor, index: int, value: float) -> torch.Tensor:
        """Styles whose coordinate ``index`` is ``value`` and whose other coordinates are unchanged;
        the part of a style outside the lifted subspace (a reference style's) is kept."""
        latents = self.coordinates(styles, domains)
        edited = latents.clone()
        edited[:, index] = value
        return styles + self.lift(self.components(edited, domains) - self.projected(styles))
