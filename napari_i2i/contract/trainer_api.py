"""What a trainer is, as the training front ends (``napari-i2i train``, the Train widget) see it.

A plugin registers a :class:`TrainerSpec` for an engine through the
``i2i_register_trainers`` hook. The spec builds a :class:`MethodTrainer`
(networks, optimisers, losses and one update step); the shared training loop
in ``trainers.loop`` owns everything else. Like the engine API this is pure
torch: no Qt, no napari.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

import torch
from torch import nn


@dataclass
class MethodSettings:
    """A method's ``[training]`` settings; a subclass lists them as dataclass fields."""

    method: ClassVar[str] = "method"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Settings from a config table: an unknown key is an error, not ignored."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.method} training settings: {sorted(unknown)}")
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ValueError for a value out of range."""


@dataclass(frozen=True)
class TrainerSpec:
    """What a plugin registers so ``napari-i2i train ENGINE`` can train its engine."""

    engine: str
    data: str  # the name of the data kind it trains on, e.g. "unpaired" (two domain folders)
    presets: Mapping[str, Mapping[str, Any]]  # training settings per preset
    build: Callable[[nn.Module, Mapping[str, Any], torch.device], MethodTrainer]
    # For trainers that run in stages: the loop's iterations for given training settings,
    # used unless the user sets a number; None: the data kind's preset decides.
    total_iterations: Callable[[Mapping[str, Any]], int] | None = None


class MethodTrainer(ABC):
    """One method's networks, optimisers and update step."""

    device: torch.device

    @abstractmethod
    def modules(self) -> Mapping[str, nn.Module]:
        """Every network whose state a checkpoint must hold."""

    @abstractmethod
    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]: ...

    def schedulers(self) -> Mapping[str, torch.optim.lr_scheduler.LRScheduler]:
        return {}

    def scalers(self) -> Mapping[str, torch.amp.GradScaler]:
        """Gradient scalers (fp16 autocast) whose state a checkpoint must hold."""
        return {}

    def events(self) -> list[dict[str, Any]]:
        """Records for the training log, written when a session starts: e.g. which
        weights an auxiliary loss uses, or that a loss was switched off and why."""
        return []

    @abstractmethod
    def step(self, batch: Any, iteration: int) -> dict[str, float]:
        """One update on *batch*; returns the loss terms for the log."""

    def validation_images(self, batch: Any) -> torch.Tensor | None:
        """A ``(N, C, H, W)`` image grid in [-1, 1] showing progress, or None."""
        return None

    def attach_dataset(self, dataset: Any) -> None:
        """Called with the training dataset before the loop starts, for trainers that draw
        images themselves (beyond the loop's batches); the default ignores it."""

    def provenance(self) -> dict[str, Any] | None:
        """A JSON-able record of how the method trained (e.g. which VGG16 weights a loss used),
        stored as ``training.method`` in the model file; None: nothing to add."""
        return None
