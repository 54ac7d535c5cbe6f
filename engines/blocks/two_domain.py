"""What UNIT and MUNIT models share: one generator per domain, a2b and b2a."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from engines.blocks.autoencoder import receptive_radius
from engines.blocks.normalization import TileStatistics
from napari_i2i.contract.engine_api import Capabilities, EngineError, StyleMode, TranslationModel


def gate_built(config: Mapping[str, Any]) -> bool:
    """Whether a config's ``input_gate`` gives its decoders a gate: only between domains of the same
    channel count (a gray image cannot be blended into an RGB one). Like the identity term, a
    preset's gate then switches itself off; the trainer logs it."""
    return bool(config.get("input_gate")) and config["channels_a"] == config["channels_b"]


def output_path(config: Mapping[str, Any]) -> dict[str, bool]:
    """The decoder's ``input_gate`` and ``colour_transform`` as built from ``config``: the
    transform recolours what the gate keeps, so it goes wherever the gate does."""
    gate = gate_built(config)
    return {"input_gate": gate, "colour_transform": gate and bool(config.get("colour_transform"))}


class TwoDomainModel(TranslationModel):
    """``gen_a`` and ``gen_b`` built from a config with ``channels_a``/``channels_b``,
    ``n_downsample`` and ``n_res``; a→b encodes with ``gen_a`` and decodes with ``gen_b``."""

    method: ClassVar[str]
    style_modes: ClassVar[tuple[StyleMode, ...]]
    gen_a: nn.Module
    gen_b: nn.Module

    @property
    def capabilities(self) -> Capabilities:
        a, b = self.config["channels_a"], self.config["channels_b"]
        return Capabilities(
            directions={"a2b": (a, b), "b2a": (b, a)},
            style_modes=self.style_modes,
            size_multiple=2 ** self.config["n_downsample"],
            context=receptive_radius(self.config["n_downsample"], self.config["n_res"]),
        )

    def _generators(self, direction: str) -> tuple[nn.Module, nn.Module]:
        """(source, target) generators of a direction."""
        if direction == "a2b":
            return self.gen_a, self.gen_b
        if direction == "b2a":
            return self.gen_b, self.gen_a
        raise EngineError(f"{self.method} translates 'a2b' or 'b2a', not {direction!r}")

    def shared_statistics(self) -> TileStatistics:
        return TileStatistics(self)
