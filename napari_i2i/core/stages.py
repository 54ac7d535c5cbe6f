"""A model's stages as the tiler runs them: composed into one function, on a device in a
precision, or compiled with inductor (falling back to eager when compiling fails)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from napari_i2i.contract.engine_api import SourceStage, run_stage
from napari_i2i.core.compile_fallback import CompileFallbackWarning, compile_with_fallback
from napari_i2i.core.device import precision_autocast, prepare_compile_cache

__all__ = ["CompiledStages", "Stage", "compose_stages", "on_device"]

Stage = Callable[[torch.Tensor], torch.Tensor]


def compose_stages(
    stages: Sequence[Callable[[torch.Tensor], torch.Tensor]],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stages as one function of the input (a :class:`SourceStage` gets that input too)."""

    def run_all(x: torch.Tensor) -> torch.Tensor:
        source = x
        for stage in stages:
            x = run_stage(stage, x, lambda: source)
        return x

    return run_all


def on_device(stage: Stage, device: torch.device, precision: str = "fp32") -> Stage:
    """*stage* without autograd, autocast to *precision* (see :func:`core.device.resolve_precision`)."""

    def run(tile: torch.Tensor, *source: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), precision_autocast(precision, device):
            return stage(tile, *source)

    return SourceStage(run) if isinstance(stage, SourceStage) else run


class CompiledStages:
    """The composed stages compiled with inductor (static shapes: one graph per window size),
    for :func:`translate_tiled`'s ``whole``; ``used`` says whether any window ran compiled. A failing
    compile warns once (:class:`CompileFallbackWarning`); that window and the rest run eagerly."""

    def __init__(self, stages: Sequence[Stage], device: torch.device, precision: str,
                 backend: str | Callable[..., object] | None = None) -> None:
        prepare_compile_cache()  # backend: torch.compile's, None: compile_fallback.COMPILE_BACKEND
        self._run = compile_with_fallback(compose_stages(stages), self._fell_back, backend)
        self._device, self._precision = device, precision
        self.used = False

    @staticmethod
    def _fell_back(reason: str) -> None:
        warnings.warn(f"compiling the model failed ({reason}); translating uncompiled", CompileFallbackWarning)

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), precision_autocast(self._precision, self._device):
            result = self._run(tile)
        self.used = self.used or self._run.compiling
        return result
