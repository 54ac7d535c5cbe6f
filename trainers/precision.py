"""How a training run's steps execute: arithmetic (fp32, bf16 or fp16 autocast) and compilation.

Every trainer takes one :class:`TrainingRuntime` and gets its autocast, its gradient scaler and
its compiled networks from it, so the five trainers cannot drift apart. ``trainers.run`` builds it
from the run's ``precision`` and ``compile`` settings (see ``docs/training.md``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from napari_i2i.core.device import (
    precision_autocast,
    prepare_compile_cache,
    resolve_precision,
    training_compile_pays,
)


@dataclass(frozen=True)
class TrainingRuntime:
    """A resolved ``precision`` (``fp32``, ``bf16`` or ``fp16``) and whether to compile.

    Parameters, optimiser states and loss terms stay float32 whatever the precision: autocast
    runs the convolutions and matrix products (and the activations between them) in the lower one.
    """

    device: torch.device
    precision: str = "fp32"
    compile: bool = False

    @classmethod
    def resolve(cls, precision: str, compile: str, device: torch.device, iterations: int) -> TrainingRuntime:
        """From the settings' choices: ``auto`` precision as :func:`resolve_precision` says (fp16 on
        a CPU is a one-line error), ``auto`` compile as :func:`training_compile_pays` says."""
        return cls(device, resolve_precision(precision, device), training_compile_pays(compile, device, iterations))

    def autocast(self) -> AbstractContextManager[object]:
        """Autocast to the precision; fp32: none (bit for bit the plain float32 step)."""
        return precision_autocast(self.precision, self.device)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 only (its gradients underflow); a pass-through for bf16 and fp32."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def compile_networks(self, *networks: nn.Module) -> None:
        """With ``compile``: compile, in place, every submodule the networks call through ``forward``.

        In place (``nn.Module.compile``), so parameters, ``state_dict`` keys (checkpoints, model
        files), moving averages and gradient hooks see the very same modules. A network without a
        ``forward`` of its own (a container of per-domain generators) has its children compiled.
        """
        if not self.compile:
            return
        prepare_compile_cache()
        seen: set[int] = set()
        for network in networks:
            _compile_callables(network, seen)

    def record(self) -> dict[str, object]:
        """For the run log and the model file's provenance."""
        return {"precision": self.precision, "compiled": self.compile}


def _compile_callables(module: nn.Module, seen: set[int]) -> None:
    if id(module) in seen:  # a block tied across domains: compiled once
        return
    seen.add(id(module))
    if type(module).forward is not nn.Module.forward:  # ModuleList, ModuleDict: no forward
        module.compile()
        return
    for child in module.children():
        _compile_callables(child, seen)
