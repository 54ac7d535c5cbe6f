"""The UNIT engine: presets, capabilities and inference for napari-i2i."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from engines.blocks.autoencoder import blend_with_source, check_colour_transform
from engines.blocks.two_domain import TwoDomainModel, gate_built, output_path
from engines.unit.networks import DomainVAE, share_latent_blocks
from napari_i2i.contract.engine_api import (
    Engine,
    EngineError,
    SourceStage,
    StyleMode,
    StyleRequest,
)

PRESETS: dict[str, dict[str, Any]] = {
    # Published sizes (≈11.1 M parameters per generator) with the paper's sharing
    # of one block each side of the latent space; later code drops the sharing
    # and keeps only the KL term to align the domains (shared_blocks=0).
    "paper": dict(channels_a=3, channels_b=3, dim=64, n_downsample=2, n_res=4, shared_blocks=1,
                  input_gate=False, colour_transform=False),
    # Same architecture, narrow and shallow enough to train on two CPU cores; one
    # downsampling (benchmarks/NOTES.md: with two, UNIT stalled below the identity), and the
    # input gate with its colour transform (not in the paper), which at the worst of 5 seeds
    # improved keep_change and stain and kept digits as often (docs/benchmarks.md, "The input
    # gate" and "The colour transform").
    "small": dict(channels_a=3, channels_b=3, dim=16, n_downsample=1, n_res=2, shared_blocks=1,
                  input_gate=True, colour_transform=True),
}


class UnitModel(TwoDomainModel):
    """Two VAEs sharing one latent space; a→b = decode with b what a encoded."""

    method = "UNIT"
    style_modes = (StyleMode.NONE,)

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = {"input_gate": False, "colour_transform": False, **config}  # older files have no key
        sizes = {k: self.config[k] for k in ("dim", "n_downsample", "n_res")}
        sizes.update(output_path(self.config))
        self.gen_a = DomainVAE(config["channels_a"], **sizes)
        self.gen_b = DomainVAE(config["channels_b"], **sizes)
        # Tied modules appear under both gen_a.* and gen_b.* in state_dict (equal copies).
        share_latent_blocks(self.gen_a, self.gen_b, config["shared_blocks"])

    def condition(self, request: StyleRequest) -> str:
        """UNIT has no style: the conditioning is just the direction."""
        self._generators(request.direction)
        if request.mode is not StyleMode.NONE:
            raise EngineError(
                f"UNIT is deterministic (style mode 'none'); it has no {request.mode.value!r} mode"
            )
        return request.direction

    def translate(self, images: torch.Tensor, conditioning: str) -> torch.Tensor:
        source, target = self._generators(conditioning)
        return target.decode(source.encode(images), images)

    def stages(self, conditioning: str) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """Encoder blocks, decoder residual blocks, upsampling: one block each."""
        source, target = self._generators(conditioning)
        gate = [SourceStage(blend_with_source)] if gate_built(self.config) else []
        return [*source.encoder.model, *target.decoder.res_blocks, *target.decoder.upsample, *gate]


class UnitEngine(Engine):
    name = "unit"
    description = "UNIT: translation through a shared latent space, one output per input"
    presets = PRESETS

    def build(self, config: Mapping[str, Any]) -> UnitModel:
        self.check_integer_config(config, minimum={"shared_blocks": 0}, flags=("input_gate", "colour_transform"))
        check_colour_transform(config, self.name)
        if config["shared_blocks"] > config["n_res"]:
            raise EngineError(
                f"UNIT config: shared_blocks ({config['shared_blocks']}) cannot exceed "
                f"n_res ({config['n_res']})"
            )
        return UnitModel(config)
