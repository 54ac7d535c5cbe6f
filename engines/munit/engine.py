"""The MUNIT engine: presets, capabilities and inference for napari-i2i."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engines.blocks.autoencoder import GatedContent, blend_with_source, check_colour_transform
from engines.blocks.two_domain import TwoDomainModel, gate_built, output_path
from engines.munit.networks import CONTENT_NORMS, AutoEncoder
from napari_i2i.contract.engine_api import (
    Engine,
    EngineError,
    SourceStage,
    StyleAxes,
    StyleMode,
    StyleRequest,
)

PRESETS: dict[str, dict[str, Any]] = {
    # Published sizes (≈15 M parameters per generator) and instance norm throughout.
    "paper": dict(
        channels_a=3, channels_b=3, dim=64, n_downsample=2, n_res=4,
        style_dim=8, style_downsample=4, mlp_dim=256, content_norm="instance", input_gate=False,
        colour_transform=False,
    ),
    # Same architecture, narrow and shallow enough to train on two CPU cores; one
    # downsampling keeps fine structure that 64² training crops cannot afford to
    # lose (benchmarks/NOTES.md: 2 downsamplings stalled below the identity).
    # content_norm="layer" is an option, not the default: benchmarks/NOTES.md,
    # "Content-encoder normalisation".
    "small": dict(
        channels_a=3, channels_b=3, dim=16, n_downsample=1, n_res=2,
        style_dim=8, style_downsample=4, mlp_dim=64, content_norm="instance", input_gate=False,
        colour_transform=False,
    ),
    # `small` with the input gate and its colour transform, for changes of colour only (stain
    # normalisation): at the worst of 3 seeds far ahead on stain, behind `small` on a shape change
    # (digits) with random styles (docs/benchmarks.md, "The colour transform"), hence a preset of
    # its own rather than `small`.
    "small-colour": dict(
        channels_a=3, channels_b=3, dim=16, n_downsample=1, n_res=2,
        style_dim=8, style_downsample=4, mlp_dim=64, content_norm="instance", input_gate=True,
        colour_transform=True,
    ),
}


@dataclass
class MunitConditioning:
    direction: str
    styles: torch.Tensor  # (S, style_dim)


@dataclass
class MunitCandidates:
    """Matched styles: each reference's style code and content signature, for :meth:`MunitModel.match`."""

    direction: str
    styles: torch.Tensor  # (R, style_dim)
    signatures: torch.Tensor  # (R, 2 × content channels)


def content_signature(encoder: torch.nn.Module, crops: torch.Tensor, min_size: int) -> torch.Tensor:
    """Per-channel mean and standard deviation of the content code, averaged over the crops.

    MUNIT's content space is shared by both domains, so the signatures of a
    source and of target-domain references are comparable: similar tissue,
    similar signature. Crops run one at a time (a whole slide's worth costs one
    crop of memory); crops smaller than ``min_size`` are padded by replication.
    """
    device = next(encoder.parameters()).device
    total = 0.0
    for crop in crops:
        crop = crop[None].to(device)
        short_h, short_w = max(0, min_size - crop.shape[-2]), max(0, min_size - crop.shape[-1])
        if short_h or short_w:
            crop = F.pad(crop, (0, short_w, 0, short_h), mode="replicate")
        code = encoder(crop).float().flatten(2)
        total = total + torch.cat([code.mean(2), code.std(2)], 1)[0]
    return total / len(crops)


class MunitModel(TwoDomainModel):
    """Two autoencoders, one per domain; a→b = content of a with a style of b."""

    method = "MUNIT"
    style_modes = (StyleMode.RANDOM, StyleMode.REFERENCE, StyleMode.MATCHED)

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        # Model files written before content_norm / input_gate existed have no key: as published.
        self.config = {"content_norm": "instance", "input_gate": False, "colour_transform": False, **config}
        shared = {k: self.config[k] for k in ("dim", "n_downsample", "n_res", "style_dim", "style_downsample",
                                             "mlp_dim", "content_norm")}
        shared.update(output_path(self.config))
        self.gen_a = AutoEncoder(config["channels_a"], **shared)
        self.gen_b = AutoEncoder(config["channels_b"], **shared)

    def condition(self, request: StyleRequest) -> MunitConditioning | MunitCandidates:
        _, target = self._generators(request.direction)
        device = next(self.parameters()).device
        if request.mode is StyleMode.RANDOM:
            if request.n_samples < 1:
                raise EngineError("the number of random styles must be at least 1")
            # Drawn on the CPU so a seed gives the same styles on every device.
            generator = torch.Generator().manual_seed(request.seed)
            styles = torch.randn(request.n_samples, target.style_dim, generator=generator)
            return MunitConditioning(request.direction, styles.to(device))
        if request.mode is StyleMode.REFERENCE:
            if not request.references:
                raise EngineError("style from reference needs at least one reference image")
            kind = f"style references for {request.direction}"
            codes = [target.style_encoder.mean_code(reference, position, "reference", kind)
                     for position, reference in enumerate(request.references, 1)]
            return MunitConditioning(request.direction, torch.stack(codes).mean(0, keepdim=True))
        if request.mode is StyleMode.MATCHED:
            if not request.references:
                raise EngineError("matched styles need reference images to choose from (two or more "
                                  "make it a choice)")
            kind = f"style references for {request.direction}"
            codes, signatures = [], []
            for position, reference in enumerate(request.references, 1):
                codes.append(target.style_encoder.mean_code(reference, position, "reference", kind))
                signatures.append(content_signature(target.content_encoder, reference, self._content_min_size))
            return MunitCandidates(request.direction, torch.stack(codes), torch.stack(signatures))
        raise EngineError(f"MUNIT has no {request.mode.value!r} style mode")

    @property
    def _content_min_size(self) -> int:
        """Smallest input the content encoder's reflect padding accepts: ≥ 2 pixels after
        the last downsampling, ≥ 4 for the 7×7 input convolution."""
        return max(4, 2 ** (self.config["n_downsample"] + 1))

    def match(self, conditioning: MunitCandidates, image: torch.Tensor) -> tuple[MunitConditioning, int]:
        """The style of the reference whose content signature is nearest to the image's."""
        if not isinstance(conditioning, MunitCandidates):
            raise EngineError("match() takes the conditioning of a 'matched' style request")
        source, _ = self._generators(conditioning.direction)
        signature = content_signature(source.content_encoder, image, self._content_min_size)
        nearest = int(torch.linalg.vector_norm(conditioning.signatures - signature, dim=1).argmin())
        return MunitConditioning(conditioning.direction, conditioning.styles[nearest : nearest + 1]), nearest + 1

    def style_axes(self, conditioning: MunitConditioning) -> StyleAxes:
        """The style code's own coordinates, scaled by 1: MUNIT's style prior is ``N(0, I)``, so
        they are already in standard units."""
        if not isinstance(conditioning, MunitConditioning):
            raise EngineError("style axes need the conditioning of a random or reference style request")
        direction = conditioning.direction
        device = conditioning.styles.device

        def place(values: torch.Tensor) -> MunitConditioning:
            return MunitConditioning(direction, values.reshape(1, -1).float().to(device))

        styles = conditioning.styles
        return StyleAxes(tuple(f"style {i}" for i in range(styles.shape[1])),
                         styles[0].detach().float().cpu(), place)

    def translate(self, images: torch.Tensor, conditioning: MunitConditioning) -> torch.Tensor:
        return self.decode_content(self.encode_content(images, conditioning.direction), conditioning)

    def encode_content(self, images: torch.Tensor, direction: str) -> GatedContent | torch.Tensor:
        """The source domain's content code: styles enter only the target's decoder (with the
        input gate, together with the images the gate blends with)."""
        source, _ = self._generators(direction)
        content = source.content_encoder(images)
        return GatedContent(content, images) if gate_built(self.config) else content

    def decode_content(self, content: GatedContent | torch.Tensor, conditioning: MunitConditioning) -> torch.Tensor:
        _, target = self._generators(conditioning.direction)
        code, images = GatedContent.parts(content)
        styles = conditioning.styles.to(code.dtype)
        return target.decode(code.expand(styles.shape[0], -1, -1, -1), styles, images)

    def stages(self, conditioning: MunitConditioning) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """Encoder blocks, style broadcast, AdaIN blocks, upsampling: one block each."""
        source, target = self._generators(conditioning.direction)
        decoder = target.decoder
        styles = conditioning.styles

        def broadcast(content: torch.Tensor) -> torch.Tensor:
            return content.expand(styles.shape[0], -1, -1, -1)

        def adain_block(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
            def run(x: torch.Tensor) -> torch.Tensor:
                params = decoder.adain_params(styles.to(x.dtype))[index]
                return decoder.res_blocks[index](x, params)

            return run

        return [
            *source.content_encoder.model,
            broadcast,
            *(adain_block(i) for i in range(len(decoder.res_blocks))),
            *decoder.upsample,
            *([SourceStage(blend_with_source)] if gate_built(self.config) else []),
        ]


class MunitEngine(Engine):
    name = "munit"
    description = "MUNIT: multimodal unsupervised translation, random or reference styles"
    presets = PRESETS

    def build(self, config: Mapping[str, Any]) -> MunitModel:
        self.check_integer_config(config, choices={"content_norm": CONTENT_NORMS},
                                  flags=("input_gate", "colour_transform"))
        check_colour_transform(config, self.name)
        return MunitModel(config)
