"""The two halves UNIT's, MUNIT's and FUNIT's generators share.

UNIT's encoder is MUNIT's and FUNIT's content encoder, and all decoders end in
the same upsampling path (LayerNorm in UNIT/MUNIT, instance norm in FUNIT);
only what happens at the bottleneck differs (plain residual blocks in UNIT,
AdaIN residual blocks in MUNIT and FUNIT: :class:`AdaINDecoder`).
:class:`PooledEncoder` is the normalisation-free, globally pooled code
encoder (MUNIT's style encoder, FUNIT's class encoder).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engines.blocks.convolution import (
    MLP,
    AdaINResBlock,
    ConvBlock,
    Norm,
    ResBlock,
    UpBlock,
)
from napari_i2i.contract.engine_api import EngineError, ReferenceImageError


class Encoder(nn.Module):
    """7×7 conv, stride-2 4×4 downsamples doubling the width, residual blocks; instance norm
    as published (``norm`` for MUNIT's optional layer-norm content encoder)."""

    def __init__(self, in_channels: int, dim: int, n_downsample: int, n_res: int, norm: Norm = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(in_channels, dim, 7, padding=3, norm=norm)]
        for _ in range(n_downsample):
            layers.append(ConvBlock(dim, 2 * dim, 4, stride=2, padding=1, norm=norm))
            dim *= 2
        layers += [ResBlock(dim, norm=norm) for _ in range(n_res)]
        self.model = nn.Sequential(*layers)
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Upsampler(nn.Sequential):
    """Nearest ×2 + 5×5 conv (LayerNorm, or ``norm``) halving the width per step, then 7×7 conv → tanh
    (with ``gate``: one channel more, a per-pixel gate, see :class:`ImageAndGate`; with
    ``colour_transform`` too, the coefficients of a per-pixel colour transform of the kept input
    before the gate, see :func:`blend_with_source`)."""

    def __init__(self, in_channels: int, out_channels: int, n_upsample: int, norm: Norm = "layer",
                 gate: bool = False, colour_transform: bool = False) -> None:
        layers: list[nn.Module] = []
        dim = in_channels
        for _ in range(n_upsample):
            layers.append(UpBlock(dim, dim // 2, norm=norm))
            dim //= 2
        if gate:
            coefficients = out_channels * (out_channels + 1) if colour_transform else 0
            last = ConvBlock(dim, out_channels + coefficients + 1, 7, padding=3, activation="none")
            with torch.no_grad():  # start open: as the plain decoder, closing only where the losses say
                last[1].bias[-1] = GATE_OPEN_LOGIT
                # the transform starts as the identity: the kept input as it is
                last[1].weight[out_channels:out_channels + coefficients] = 0
                last[1].bias[out_channels:out_channels + coefficients] = 0
            layers += [last, ImageAndGate()]
        else:
            layers.append(ConvBlock(dim, out_channels, 7, padding=3, activation="tanh"))
        super().__init__(*layers)


#: The gate's starting logit (sigmoid 0.95). Started half-closed (0), it closed everywhere within a
#: few hundred iterations and stayed shut: while the decoder's image is still poor, every opening
#: costs the reconstruction-like terms, and a saturated sigmoid passes no gradient back
#: (benchmarks/NOTES.md, "The input gate").
GATE_OPEN_LOGIT = 3.0


class ImageAndGate(nn.Module):
    """The last layer of a decoder that may keep its input: the image channels (and the colour
    transform's coefficients, so bounded to (−1, 1)) through tanh, the last channel through a
    sigmoid, a gate in [0, 1] for :func:`blend_with_source`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :-1].tanh(), x[:, -1:].sigmoid()], 1)


def blend_with_source(image_and_gate: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``g · decoded + (1 − g) · kept`` pixel by pixel. ``kept`` is the source: where the gate is
    closed the input is kept exactly, so what needs no change cannot be recoloured; where it is
    open the decoder's image replaces it (shapes can still change). With the decoder's colour
    transform ``kept`` is ``(I + A) · source + b`` (``A``: C×C, ``b``: C per pixel, both in
    (−1, 1)): a recolouring that keeps every edge of the input. Pixel-wise, hence exact under
    tiling."""
    channels = source.shape[1]
    image, gate = image_and_gate[:, :channels], image_and_gate[:, -1:]
    kept = source.to(image.dtype)
    if image_and_gate.shape[1] > channels + 1:
        matrix = image_and_gate[:, channels:channels + channels * channels].unflatten(1, (channels, channels))
        shift = image_and_gate[:, channels + channels * channels:-1]
        kept = kept + (matrix * kept.unsqueeze(1)).sum(2) + shift
    return kept + gate * (image - kept)


def translation_and_gate(decoder_output: torch.Tensor, source: torch.Tensor,
                         gated: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A decoder's output as a translation of ``source``: blended and the gate, or as it is and None."""
    if not gated:
        return decoder_output, None
    return blend_with_source(decoder_output, source), decoder_output[:, -1:]


def decoded_image(image_and_gate: torch.Tensor, channels: int) -> torch.Tensor:
    """The decoder's own image of ``channels`` without the gate (a reconstruction must not lean on
    its input)."""
    return image_and_gate[:, :channels]


@dataclass
class GatedContent:
    """A gated model's content code with the images it was encoded from, so that decoding it
    again (the style explorer) can still blend with them."""

    code: torch.Tensor
    images: torch.Tensor

    @staticmethod
    def parts(content: GatedContent | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The code and the images of a gated model's content, or a plain code and None."""
        return (content.code, content.images) if isinstance(content, GatedContent) else (content, None)


def gated_output(decoder_output: torch.Tensor, gated: bool, source: torch.Tensor | None,
                 channels: int) -> torch.Tensor:
    """What a decoder of ``channels`` with or without the gate makes: with a ``source`` (the image
    its code came from) the blend, without one the decoder's own image (a reconstruction)."""
    if not gated:
        return decoder_output
    return decoded_image(decoder_output, channels) if source is None else blend_with_source(decoder_output, source)


def check_colour_transform(config: dict, engine: str) -> None:
    """The colour transform recolours what the gate keeps: without the gate it has nothing to act on."""
    if config.get("colour_transform") and not config.get("input_gate"):
        raise EngineError(f"{engine} config: colour_transform needs input_gate = true "
                          "(to turn the gate off, set colour_transform = false too)")


class PooledEncoder(nn.Module):
    """7×7 conv, stride-2 4×4 downsamples (doubling the width twice), no normalisation
    (it would erase what the code is about), global average pool, 1×1 conv → a vector per image."""

    def __init__(self, in_channels: int, dim: int, n_downsample: int, code_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBlock(in_channels, dim, 7, padding=3)]
        for i in range(n_downsample):
            out = 2 * dim if i < 2 else dim  # 64→128→256→256→256 at paper width
            layers.append(ConvBlock(dim, out, 4, stride=2, padding=1))
            dim = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, code_dim, 1)]
        self.model = nn.Sequential(*layers)
        # reflect padding needs more pixels than it pads: 3 for the 7×7 conv, 1 per downsample
        self.min_size = max(4, 2**n_downsample)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)

    def mean_code(self, crops: torch.Tensor, position: int, noun: str, kind: str) -> torch.Tensor:
        """``(code_dim,)`` float32: the mean code of the crops ``(n, C, h, w)`` of one image.

        For a style reference or class example a user gave: what is wrong with
        it is a :class:`ReferenceImageError` at its ``position`` in the request,
        named (``noun``, e.g. "example": "example 2"), and saying what such
        images must be (``kind``, e.g. "class examples").
        """
        label = f"{noun} {position}"
        if not isinstance(crops, torch.Tensor) or crops.ndim != 4 or len(crops) == 0:
            shape = tuple(crops.shape) if isinstance(crops, torch.Tensor) else type(crops).__name__
            raise ReferenceImageError(
                f"{label} must be a tensor shaped (crops, channels, height, width), got {shape}", position
            )
        if crops.shape[1] != self.in_channels:
            raise ReferenceImageError(
                f"{kind} need {self.in_channels} channel(s); {label} has {crops.shape[1]}", position
            )
        if min(crops.shape[-2:]) < self.min_size:
            raise ReferenceImageError(
                f"{kind} must be at least {self.min_size}×{self.min_size} pixels, "
                f"{label} is {tuple(crops.shape[-2:])}",
                position,
            )
        device = next(self.parameters()).device
        return self(crops.to(device)).float().mean(0)


class AdaINDecoder(nn.Module):
    """AdaIN residual blocks driven by an MLP on a code (MUNIT's style, FUNIT's
    class), then upsampling to an image."""

    def __init__(
        self,
        content_channels: int,
        out_channels: int,
        n_upsample: int,
        n_res: int,
        code_dim: int,
        mlp_dim: int,
        upsample_norm: Norm = "layer",
        gate: bool = False,
        colour_transform: bool = False,
    ) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(AdaINResBlock(content_channels) for _ in range(n_res))
        self.mlp = MLP(code_dim, mlp_dim, sum(b.num_style_params for b in self.res_blocks))
        self.upsample = Upsampler(content_channels, out_channels, n_upsample, norm=upsample_norm, gate=gate,
                                  colour_transform=colour_transform)

    def adain_params(self, code: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """AdaIN parameters for each residual block, ``(N, 4C)`` each."""
        return self.mlp(code).split([b.num_style_params for b in self.res_blocks], dim=1)

    def forward(self, content: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        x = content
        for block, params in zip(self.res_blocks, self.adain_params(code.to(content.dtype))):
            x = block(x, params)
        return self.upsample(x)


def receptive_radius(n_downsample: int, n_res: int) -> int:
    """Input pixels on each side one output pixel of Encoder → Upsampler depends on (exact).

    Per axis, with ``F = 2**n_downsample`` and an output pixel ``p``, walking back:
    the last 7×7 conv reaches ``p ± 3``; each upsampling step (5×5 conv, then
    nearest ×2) maps ``[lo, hi]`` to ``[⌊(lo−2)/2⌋, ⌊(hi+2)/2⌋]``, ending at
    latent cells ``[⌊(p−2F−1)/F⌋, ⌊(p+2F+1)/F⌋]``; the ``4·n_res`` 3×3 convs of
    the encoder and decoder residual blocks add ``4·n_res`` cells each side;
    each 4×4 stride-2 conv maps cell ``c`` to ``[2c−1, 2c+2]`` and the first
    7×7 conv adds 3. At the worst ``p mod F`` both sides reach ``4F(n_res+1) + 2``.
    """
    return 4 * 2**n_downsample * (n_res + 1) + 2
