"""The StEP engine: presets, capabilities and inference for napari-i2i.

Paired multimodal translation a→b: the output's look comes from an 8-d style
code, taken from reference images of domain B (their codes averaged), sampled
through the IMLE-fitted mapper (``N(0, I)`` → style space), or interpolated
between the codes of two references.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engines.blocks import PooledEncoder, TileStatistics, interpolate_codes
from engines.blocks.autoencoder import check_colour_transform
from engines.blocks.two_domain import output_path
from engines.step.networks import StyleConcatGenerator, StyleMapper, generator_radius
from napari_i2i.contract.engine_api import (
    Capabilities,
    Engine,
    EngineError,
    StyleAxes,
    StyleMode,
    StyleRequest,
    TranslationModel,
)

DIRECTION = "a2b"  # paired training teaches one direction
# Model files written before the flag became a weight (``mapper.trained``) say it in their config.
LEGACY_MAPPER_KEY = "mapper_trained"
# Style axes of a fitted mapper: principal directions of this many of its samples (fixed seed).
AXIS_SAMPLES, AXIS_SEED = 1024, 0
# Principal directions with less spread than this (relative to the largest) are left out.
AXIS_MIN_SPREAD = 1e-4

PRESETS: dict[str, dict[str, Any]] = {
    # docs/methods.md §4: generator 32 wide, 3 downsamples, 4 residual blocks; 8-d code;
    # mapper MLP 3×128 tanh. The style encoder's size is not given there: MUNIT's.
    "paper": {
        "channels_a": 3, "channels_b": 3, "dim": 32, "n_downsample": 3, "n_res": 4,
        "style_dim": 8, "style_encoder_dim": 64, "style_downsample": 4,
        "mapper_dim": 128, "mapper_layers": 3, "input_gate": False, "colour_transform": False,
    },
    # Same architecture, narrow enough to train on two CPU cores; one downsampling, as for
    # MUNIT's small: on 64² crops two lost the layout (benchmarks/NOTES.md: what was measured).
    # The input gate with its colour transform (not in the paper): sharper outputs, ahead at
    # each of 3 seeds on the paired benchmark (docs/benchmarks.md, "The colour transform").
    "small": {
        "channels_a": 3, "channels_b": 3, "dim": 16, "n_downsample": 1, "n_res": 2,
        "style_dim": 8, "style_encoder_dim": 16, "style_downsample": 3,
        "mapper_dim": 128, "mapper_layers": 3, "input_gate": True, "colour_transform": True,
    },
}


@dataclass
class StepConditioning:
    """The styles to translate with: one output per row of ``styles``."""

    mode: StyleMode
    styles: torch.Tensor  # (S, style_dim), float32, on the model's device
    # each reference's own code (R, style_dim), for style axes without a fitted mapper
    reference_codes: torch.Tensor | None = None


class StepModel(TranslationModel):
    """Style encoder ``E``, generator ``G(I_A, z)`` and mapper ``M``; a→b only.

    :attr:`mapper_trained` (the buffer ``mapper.trained``, saved with the
    weights) says whether ``M`` was fitted (training stage ``mapper``); only
    then are random styles offered.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = {"input_gate": False, "colour_transform": False, **config}  # older files have no key
        c = self.config
        self.style_encoder = PooledEncoder(c["channels_b"], c["style_encoder_dim"], c["style_downsample"],
                                           c["style_dim"])
        self.generator = StyleConcatGenerator(c["channels_a"], c["channels_b"], c["dim"], c["n_downsample"],
                                              c["n_res"], c["style_dim"], **output_path(c))
        self.mapper = StyleMapper(c["style_dim"], c["mapper_dim"], c["mapper_layers"])

    @property
    def style_dim(self) -> int:
        return self.config["style_dim"]

    @property
    def mapper_trained(self) -> bool:
        return bool(self.mapper.trained)

    def mark_mapper_trained(self) -> None:
        """What the mapper stage calls: from now on random styles are offered."""
        self.mapper.trained.fill_(True)

    @property
    def capabilities(self) -> Capabilities:
        modes = (StyleMode.REFERENCE, StyleMode.INTERPOLATE)
        if self.mapper_trained:
            modes = (StyleMode.REFERENCE, StyleMode.RANDOM, StyleMode.INTERPOLATE)
        return Capabilities(
            directions={DIRECTION: (self.config["channels_a"], self.config["channels_b"])},
            style_modes=modes,
            size_multiple=2 ** self.config["n_downsample"],
            context=generator_radius(self.config["n_downsample"], self.config["n_res"]),
        )

    # --- style codes ------------------------------------------------------------

    def reference_code(self, reference: torch.Tensor, position: int = 1) -> torch.Tensor:
        """``(style_dim,)`` float32: the mean code of the crops ``(n, C_b, h, w)`` of one reference
        (``position``: its place in the request, for errors)."""
        return self.style_encoder.mean_code(reference, position, "reference",
                                            "style references (images of domain B)")

    def style_code(self, references: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(1, style_dim)``: the mean over the references of their (crop-averaged) codes."""
        if not references:
            raise EngineError("style from reference needs at least one reference image of domain B")
        return self.reference_codes(references).mean(0, keepdim=True)

    def reference_codes(self, references: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(R, style_dim)``: each reference's (crop-averaged) code."""
        return torch.stack([self.reference_code(r, i) for i, r in enumerate(references, 1)])

    def sample_styles(self, n: int, seed: int) -> torch.Tensor:
        """``(n, style_dim)``: the mapper applied to ``n`` draws of ``N(0, I)`` made on the CPU
        from ``seed`` (the same styles on every device)."""
        if n < 1:
            raise EngineError("the number of random styles must be at least 1")
        noise = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        device = next(self.parameters()).device
        return self.mapper(noise.to(device)).float()

    def condition(self, request: StyleRequest) -> StepConditioning:
        if request.direction != DIRECTION:
            raise EngineError(f"StEP translates {DIRECTION!r} (it is trained on A→B pairs), not {request.direction!r}")
        if request.mode is StyleMode.REFERENCE:
            if not request.references:
                raise EngineError("style from reference needs at least one reference image of domain B")
            codes = self.reference_codes(list(request.references))
            return StepConditioning(request.mode, codes.mean(0, keepdim=True), codes)
        if request.mode is StyleMode.RANDOM:
            if not self.mapper_trained:
                raise EngineError(
                    "this StEP model has no fitted style mapper (training stage 'mapper' was not run); "
                    "take the style from a reference image instead"
                )
            return StepConditioning(request.mode, self.sample_styles(request.n_samples, request.seed))
        if request.mode is StyleMode.INTERPOLATE:
            references = list(request.references)
            if len(references) != 2:
                raise EngineError(
                    f"style interpolation goes from the style of one reference image to that of another: "
                    f"it needs exactly 2 references, got {len(references)}"
                )
            first = self.reference_code(references[0], 1)
            second = self.reference_code(references[1], 2)
            return StepConditioning(request.mode, interpolate_codes(first, second, request.n_samples),
                                    torch.stack([first, second]))
        raise EngineError(f"StEP has no {request.mode.value!r} style mode")

    def style_axes(self, conditioning: StepConditioning) -> StyleAxes:
        """Principal directions of the styles: of :data:`AXIS_SAMPLES` mapper samples when the
        mapper was fitted, else of the request's reference codes (two or more needed), each
        scaled by its standard deviation. The part of the style outside them is kept."""
        if self.mapper_trained:
            with torch.no_grad():
                samples, source = self.sample_styles(AXIS_SAMPLES, AXIS_SEED), "principal direction"
        elif conditioning.reference_codes is not None and len(conditioning.reference_codes) >= 2:
            samples, source = conditioning.reference_codes.float(), "reference direction"
        else:
            raise EngineError("style axes of this StEP model (no fitted style mapper) are the directions "
                              "in which its references' styles differ: give two or more references")
        return principal_style_axes(samples, conditioning, source)

    # --- translation ------------------------------------------------------------

    def translate(self, images: torch.Tensor, conditioning: StepConditioning) -> torch.Tensor:
        return self.generator(images, conditioning.styles)

    def stages(self, conditioning: StepConditioning) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """One step per layer: code concatenation, convolution blocks, residual blocks, upsampling."""
        return self.generator.layers(conditioning.styles)

    def shared_statistics(self) -> TileStatistics:
        return TileStatistics(self)


def principal_style_axes(samples: torch.Tensor, conditioning: StepConditioning, label: str) -> StyleAxes:
    """Axes along the principal directions of ``samples`` ``(N, D)``, in units of their standard
    deviations, through the first style of ``conditioning``."""
    mean = samples.mean(0)
    _, singular, directions = torch.linalg.svd(samples - mean, full_matrices=False)
    spread = singular / max(len(samples) - 1, 1) ** 0.5
    kept = spread > AXIS_MIN_SPREAD * spread[0].clamp_min(1e-12)
    directions, spread = directions[kept], spread[kept]  # (K, D), (K,)
    style = conditioning.styles[0].float()
    values = (style - mean) @ directions.T / spread
    rest = style - mean - (values * spread) @ directions  # outside the axes: kept as it is
    mode = conditioning.mode

    def place(coordinates: torch.Tensor) -> StepConditioning:
        coordinates = coordinates.float().to(mean.device)
        return StepConditioning(mode, (mean + rest + (coordinates * spread) @ directions)[None])

    return StyleAxes(tuple(f"{label} {k + 1}" for k in range(len(spread))), values.detach().cpu(), place)


class StepEngine(Engine):
    name = "step"
    description = (
        "StEP: paired multimodal translation a→b; style from reference images, sampled (mapper) "
        "or interpolated between two references"
    )
    presets = PRESETS

    def build(self, config: Mapping[str, Any]) -> StepModel:
        """The networks for ``config``; a config of the earlier layout (with ``mapper_trained``)
        is accepted, the key moved to the model's flag."""
        config = dict(config)
        legacy = config.pop(LEGACY_MAPPER_KEY, None)
        if legacy is not None and (type(legacy) is not int or legacy not in (0, 1)):
            raise EngineError(f"step config: {LEGACY_MAPPER_KEY} must be 0 or 1, got {legacy!r}")
        self.check_integer_config(
            config, minimum={"n_downsample": 0, "n_res": 0, "style_downsample": 0, "mapper_layers": 0},
            flags=("input_gate", "colour_transform"),
        )
        check_colour_transform(config, self.name)
        model = StepModel(config)
        if legacy is not None:
            _adopt_earlier_layout(model, bool(legacy))
        return model


def _adopt_earlier_layout(model: StepModel, mapper_trained: bool) -> None:
    """For a model file of the earlier layout (the flag in the config, not among the weights): the
    flag comes from the config, and the weights are expected without it until they are loaded;
    saved again, the model is written in the current layout."""
    mapper = model.mapper
    mapper.trained.fill_(mapper_trained)
    mapper.register_buffer("trained", mapper.trained, persistent=False)

    def saved_from_now_on(module: nn.Module, incompatible_keys: Any) -> None:
        mapper.register_buffer("trained", mapper.trained, persistent=True)

    model.register_load_state_dict_post_hook(saved_from_now_on)
