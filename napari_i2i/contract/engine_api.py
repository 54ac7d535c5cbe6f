"""What an engine is, as the host (widget, CLI, tiler) sees it.

Engines are pure torch: they take float tensors in ``[-1, 1]`` shaped
``(N, C, H, W)`` and return tensors of the same kind. Everything about napari
layers, files, devices and tiling stays on the host side; everything about
network maths stays in the engine.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from napari_i2i.contract.errors import EngineError, ReferenceImageError  # noqa: F401 (part of the engine API)


class StyleMode(enum.Enum):
    """How the style (the "which look" part of a translation) is chosen."""

    NONE = "none"  # deterministic: one output per input (UNIT)
    RANDOM = "random"  # N styles drawn from the prior with a seed (MUNIT)
    REFERENCE = "reference"  # style of one or more reference images, codes averaged
    # per source image, the style of the reference whose content is closest to its own
    # (references of several looks, e.g. tissues stained differently: each input gets its match)
    MATCHED = "matched"
    FEW_SHOT = "few_shot"  # K example images of a class never seen in training
    INTERPOLATE = "interpolate"  # N steps between the styles of two references
    # the target domain's typical style, stored in the model when training ends: the mean style of
    # the domain's training images (multi-domain models; no reference or random draw needed)
    TYPICAL = "typical"


@dataclass(frozen=True)
class Capabilities:
    """What a built model can do, so front ends offer only valid controls."""

    # direction name -> (input channels, output channels), e.g. {"a2b": (3, 3)}
    directions: Mapping[str, tuple[int, int]]
    style_modes: tuple[StyleMode, ...]
    domains: tuple[str, ...] = ("a", "b")
    # Spatial sizes handed to the model must be multiples of this; the host
    # pads the image and crops the result.
    size_multiple: int = 1
    # Receptive-field radius in input pixels: how much context each tile
    # needs for tiled translation to equal whole-image translation.
    context: int = 0

    def describe(self) -> str:
        modes = ", ".join(m.value for m in self.style_modes)
        directions = ", ".join(
            f"{name} ({c_in}->{c_out} ch)" for name, (c_in, c_out) in self.directions.items()
        )
        return f"directions: {directions}; styles: {modes}"


@dataclass
class StyleRequest:
    """The style part of a translation request, in tensors on the model's device.

    ``references`` holds one tensor per reference image, shaped ``(n, C, h, w)``:
    a large reference arrives cut into ``n`` crops, and the engine treats the
    crops of one reference as that reference.
    """

    mode: StyleMode
    direction: str
    n_samples: int = 1
    seed: int = 0
    references: Sequence[torch.Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class StyleAxes:
    """Directions along which a front end may move one style, one slider per axis.

    Coordinates are in standard units: the styles the model was trained on
    (its style prior) have mean 0 and standard deviation 1 along every axis, so
    a slider from ``-SPAN`` to ``SPAN`` covers them whatever the engine.
    """

    SPAN: ClassVar[float] = 3.0

    labels: tuple[str, ...]  # one per axis, e.g. "component 3" or "principal direction 1"
    values: torch.Tensor  # (K,) float32, on the CPU: the conditioning's first style along each axis
    # (K,) coordinates -> the conditioning of the one style at them, for ``translate``/``stages``
    place: Callable[[torch.Tensor], Any]


class StatisticsPassDone(Exception):
    """Raised inside a tile's forward pass when the rest of it is not needed yet."""


class SharedStatistics(Protocol):
    """Lets tiles of one image share normalisation statistics.

    Instance/layer normalisation computed per tile gives every tile its own
    brightness and contrast, i.e. visible seams. The tiler runs the image in
    :meth:`passes` passes (a fresh object per image); in all but the last the
    engine accumulates whole-image statistics over the part of each tile that
    the tile owns (``region``) and may end a tile's forward pass early by
    raising :class:`StatisticsPassDone`. The last pass gives the output.
    """

    def passes(self, translate: Callable[[torch.Tensor], Any], tile: torch.Tensor) -> int:
        """How many passes over the tiles ``translate`` needs (may run it on ``tile``)."""

    def collect(self) -> AbstractContextManager[None]:
        """One pass over all tiles of one image."""

    def region(
        self, rows: tuple[float, float], cols: tuple[float, float]
    ) -> AbstractContextManager[None]:
        """The tile's own part as fractions of its height and width."""


class SourceStage:
    """A stage that also reads the input image at its own pixels: ``stage(x, source)``.

    For pixel-wise use of the input after the network, e.g. a gate that keeps the
    input where nothing should change. The tiler hands it the same input window
    the first stage read, so tiled output still equals whole-image output; it must
    therefore work pixel by pixel (no normalisation over pixels, no convolution).
    """

    def __init__(self, run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.run = run

    def __call__(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return self.run(x, source)


def run_stage(stage: Callable[..., torch.Tensor], x: torch.Tensor, source: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One stage on ``x``; a :class:`SourceStage` also gets the input, ``source()`` (read only then)."""
    return stage(x, source()) if isinstance(stage, SourceStage) else stage(x)


class TranslationModel(nn.Module, ABC):
    """A built engine network: conditioning first, then tile after tile.

    ``config`` is the JSON-serialisable config it was built from; it is saved
    in model files so the same networks can be built again.
    """

    config: dict[str, Any]

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abstractmethod
    def condition(self, request: StyleRequest) -> Any:
        """Turn a style request into whatever :meth:`translate` needs (codes…).

        Raise :class:`EngineError` for a request the model cannot serve.
        """

    @abstractmethod
    def translate(self, images: torch.Tensor, conditioning: Any) -> torch.Tensor:
        """Translate ``(1, C_in, H, W)`` to ``(S, C_out, H, W)``, S = styles."""

    def match(self, conditioning: Any, image: torch.Tensor) -> tuple[Any, int]:
        """For :attr:`StyleMode.MATCHED`: the conditioning for one source image.

        ``conditioning`` is what :meth:`condition` made of the references,
        ``image`` the source plane as ``(n, C, h, w)`` crops. Returns the
        conditioning :meth:`translate` gets for this image and the position of
        the chosen reference (counted from 1), so that front ends can say which.
        """
        raise EngineError(f"{type(self).__name__} has no {StyleMode.MATCHED.value!r} style mode")

    def stages(self, conditioning: Any) -> Sequence[Callable[[torch.Tensor], torch.Tensor]]:
        """:meth:`translate` cut into steps whose composition equals it.

        The tiler keeps every window's activations between stages, so with
        shared statistics each pass re-runs only the stage that holds the
        layer being settled. One stage (the default) is always correct; finer
        stages make tiled translation of large images several times faster.
        A :class:`SourceStage` also gets the input at its pixels.
        """
        return [lambda images: self.translate(images, conditioning)]

    def shared_statistics(self) -> SharedStatistics | None:
        """A fresh per-image statistics sharer, or ``None`` when tiles are independent."""
        return None

    def encode_content(self, images: torch.Tensor, direction: str) -> Any | None:
        """Optional, so a style change re-runs only the decoder: the part of translating
        ``images`` for ``direction`` that no style enters (MUNIT's content code), or ``None``
        (the default): not offered, e.g. where the style enters at the input (StEP).

        When offered, ``decode_content(encode_content(x, c.direction), c)`` equals
        ``translate(x, c)`` for every conditioning ``c`` of that direction.
        """
        return None

    def decode_content(self, content: Any, conditioning: Any) -> torch.Tensor:
        """What :meth:`encode_content` made, translated with ``conditioning``'s styles:
        ``(S, C_out, H, W)`` as :meth:`translate` returns."""
        raise EngineError(f"{type(self).__name__} offers no content code (encode_content gives None)")

    def style_axes(self, conditioning: Any) -> StyleAxes | None:
        """Optional, for style exploration: the axes along which the first style of
        ``conditioning`` (what :meth:`condition` made) can be moved, or ``None`` (the default):
        this model offers no style exploration."""
        return None


class Engine(ABC):
    """One translation method: its presets and how to build its networks."""

    name: ClassVar[str]
    description: ClassVar[str]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]

    def config(self, preset: str = "small", **overrides: Any) -> dict[str, Any]:
        """A full config: a preset with some keys replaced."""
        if preset not in self.presets:
            raise EngineError(
                f"engine {self.name!r} has no preset {preset!r}; "
                f"choose one of {sorted(self.presets)}"
            )
        config = dict(self.presets[preset])
        unknown = set(overrides) - set(config)
        if unknown:
            raise EngineError(
                f"unknown config keys for engine {self.name!r}: {sorted(unknown)}"
            )
        config.update(overrides)
        return config

    def check_integer_config(
        self, config: Mapping[str, Any], minimum: Mapping[str, int] = {},
        choices: Mapping[str, Sequence[str]] = {}, flags: Sequence[str] = (),
    ) -> None:
        """For configs of integers: the presets' keys, no others, each ≥ 1 (or its ``minimum``).

        A key of ``choices`` holds one of its strings instead, a key of ``flags`` true or
        false; both may be missing (model files written before the setting existed).
        """
        expected = set(next(iter(self.presets.values())))
        missing, unknown = expected - set(config) - set(choices) - set(flags), set(config) - expected
        if missing or unknown:
            raise EngineError(
                f"{self.name} config: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
            )
        for key, value in config.items():
            if key in flags:
                if not isinstance(value, bool):
                    raise EngineError(f"{self.name} config: {key} must be true or false, got {value!r}")
                continue
            if key in choices:
                if value not in choices[key]:
                    raise EngineError(f"{self.name} config: {key} must be one of {list(choices[key])}, got {value!r}")
                continue
            lowest = minimum.get(key, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
                raise EngineError(
                    f"{self.name} config: {key} must be an integer ≥ {lowest}, got {value!r}"
                )

    @abstractmethod
    def build(self, config: Mapping[str, Any]) -> TranslationModel:
        """Networks for *config*, randomly initialised; raise EngineError if invalid."""
