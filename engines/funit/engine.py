"""The FUNIT engine: presets, capabilities and few-shot inference for napari-i2i."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engines.blocks.autoencoder import blend_with_source, check_colour_transform, receptive_radius
from engines.blocks.normalization import TileStatistics
from engines.funit.networks import FewShotGenerator
from napari_i2i.contract.engine_api import (
    Capabilities,
    Engine,
    EngineError,
    SourceStage,
    StyleMode,
    StyleRequest,
    TranslationModel,
)

DIRECTION = "translate"  # the only direction: any class → the class of the examples

PRESETS: dict[str, dict[str, Any]] = {
    # Published sizes (128² input → 512×16×16 content, 64-d class code): 29.87 M parameters.
    "paper": {
        "channels": 3, "dim": 64, "n_downsample": 3, "n_res": 2,
        "class_dim": 64, "class_downsample": 4, "mlp_dim": 256, "input_gate": False, "colour_transform": False,
    },
    # Same architecture, narrow and shallow enough to train on two CPU cores; one downsampling
    # (32² glyphs → 32×16×16 content: with two, 8×8 lost the glyphs; benchmarks/NOTES.md).
    "small": {
        "channels": 3, "dim": 16, "n_downsample": 1, "n_res": 2,
        "class_dim": 32, "class_downsample": 3, "mlp_dim": 64, "input_gate": False, "colour_transform": False,
    },
}
PRESETS["small-colour"] = PRESETS["small"]  # the training differs (the class-mate term), not the model


@dataclass
class FunitConditioning:
    """The class to translate into: the mean code of the example images."""

    class_code: torch.Tensor  # (1, class_dim), float32
    n_examples: int


class FunitModel(TranslationModel):
    """One generator for every class; the class comes from K ≥ 1 example images."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = {"input_gate": False, "colour_transform": False, **config}  # older files have no key
        self.generator = FewShotGenerator(**self.config)

    @property
    def capabilities(self) -> Capabilities:
        channels = self.config["channels"]
        return Capabilities(
            directions={DIRECTION: (channels, channels)},
            style_modes=(StyleMode.FEW_SHOT,),
            domains=("content", "class"),
            size_multiple=2 ** self.config["n_downsample"],
            context=receptive_radius(self.config["n_downsample"], self.config["n_res"]),
        )

    def class_code(self, examples: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(1, class_dim)``: the mean over the examples of their class codes.

        Each example is ``(n, C, h, w)``: ``n`` crops of one image (the host cuts
        large examples into tiles) whose codes are averaged into the example's
        code. Examples may differ in size.
        """
        if not examples:
            raise EngineError(
                "few-shot translation needs at least one example image of the target class"
            )
        encoder = self.generator.class_encoder
        codes = [encoder.mean_code(example, index, "example", "class examples for this model")
                 for index, example in enumerate(examples, 1)]
        return torch.stack(codes).mean(0, keepdim=True)

    def condition(self, request: StyleRequest) -> FunitConditioning:
        if request.mode is not StyleMode.FEW_SHOT:
            raise EngineError(
                f"FUNIT translates into the class of example images (style mode 'few_shot'), "
                f"not {request.mode.value!r}"
            )
        if request.direction != DIRECTION:
            raise EngineError(f"FUNIT has one direction, {DIRECTION!r}, not {request.direction!r}")
        references = list(request.references)
        return FunitConditioning(self.class_code(references), len(references))

    def translate(self, images: torch.Tensor, conditioning: FunitConditioning) -> torch.Tensor:
        generator = self.generator
        return generator.decode(generator.content_encoder(images), conditioning.class_code, images)

    def stages(self, conditioning: FunitConditioning) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """Content encoder blocks, AdaIN blocks, upsampling: one block each."""
        decoder = self.generator.decoder
        code = conditioning.class_code

        def adain_block(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
            def run(x: torch.Tensor) -> torch.Tensor:
                params = decoder.adain_params(code.to(x.dtype))[index]
                return decoder.res_blocks[index](x, params)

            return run

        return [
            *self.generator.content_encoder.model,
            *(adain_block(i) for i in range(len(decoder.res_blocks))),
            *decoder.upsample,
            *([SourceStage(blend_with_source)] if self.config["input_gate"] else []),
        ]

    def shared_statistics(self) -> TileStatistics:
        return TileStatistics(self)


class FunitEngine(Engine):
    name = "funit"
    description = "FUNIT: few-shot translation into a class given by K example images"
    presets = PRESETS

    def build(self, config: Mapping[str, Any]) -> FunitModel:
        self.check_integer_config(config, minimum={"n_downsample": 0, "class_downsample": 0},
                                  flags=("input_gate", "colour_transform"))
        check_colour_transform(config, self.name)
        return FunitModel(config)
