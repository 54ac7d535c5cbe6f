"""What a trainer is, as the training front ends (``napari-i2i train``, the Train widget) see it.

A plugin registers a :class:`TrainerSpec` for an engine through the
``i2i_register_trainers`` hook, and may add kinds of training data
(:class:`DataKind`) through ``i2i_register_data_kinds``. The spec builds a :class:`MethodTrainer`
(networks, optimisers, losses and one update step); the shared training loop
in ``trainers.loop`` owns everything else. Like the engine API this is pure
torch: no Qt, no napari. torch itself is imported for type checking only, so
data kinds (their roles make the ``napari-i2i train`` flags) load without it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
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
    data: str  # the name of the DataKind it trains on, e.g. "unpaired" (two domain folders)
    presets: Mapping[str, Mapping[str, Any]]  # training settings per preset
    # build(model, settings, device, runtime=TrainingRuntime): ``runtime`` (trainers.precision) says
    # the precision and compilation the trainer's steps use; trainers.run always passes it.
    build: Callable[..., MethodTrainer]
    # For trainers that run in stages: the loop's iterations for given training settings,
    # used unless the user sets a number; None: the data kind's preset decides.
    total_iterations: Callable[[Mapping[str, Any]], int] | None = None


@dataclass(frozen=True)
class ScoringTranslation:
    """One direction of the validation batch translated, for a score that needs no ground truth.

    Every image is ``(N, C, H, W)`` in [-1, 1], made by the networks a user would translate with
    (eval mode where that matters). What a method cannot make is None; the score leaves it out.
    """

    source: torch.Tensor
    translated: torch.Tensor  # source in the other domain (or class, or reference style)
    target_examples: torch.Tensor  # real images of the target domain (not paired with source)
    reconstructed: torch.Tensor | None = None  # translated back (a cycle), or re-made in the source's own style
    second_style: torch.Tensor | None = None  # source translated with another sampled style (multimodal engines)
    direction: str = "a→b"  # for messages


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

    def scoring_translations(self, batch: Any) -> list[ScoringTranslation]:
        """The validation *batch* translated for the run score (``trainers.run_score``), one entry
        per direction; the default, none: such a run has no score."""
        return []

    def attach_dataset(self, dataset: Any) -> None:
        """Called with the training dataset before the loop starts, for trainers that draw
        images themselves (beyond the loop's batches); the default ignores it."""

    def before_saving(self) -> None:
        """Called before the model file is written (at the end of a run, finished or stopped short):
        e.g. to store in the model what it knows of its training data; the default does nothing."""

    def provenance(self) -> dict[str, Any] | None:
        """A JSON-able record of how the method trained (e.g. which VGG16 weights a loss used),
        stored as ``training.method`` in the model file; None: nothing to add."""
        return None


# --- data kinds ---------------------------------------------------------------------------
#
# What a trainer trains on is a *data kind*, registered by a plugin through the
# ``i2i_register_data_kinds`` hook and named by ``TrainerSpec.data``. A kind declares its
# inputs (roles), and builds settings, datasets and provenance from them; the front ends
# (``napari-i2i train``, the Train widget) build their controls from the roles, and
# ``trainers.run`` trains any kind the same way. The built-in kinds are in ``trainers/data_kinds``.


class LayerChoice(Enum):
    """How the Train widget gives a role from image layers."""

    SEVERAL = "several"  # a multi-select list: every plane of every chosen layer is one image
    ONE = "one"  # a drop-down of exactly one layer
    NONE = "none"  # not from layers (a text option, or a folder only the command line gives)


@dataclass(frozen=True)
class DataRole:
    """One input of a data kind: a settings key, its ``napari-i2i train`` flag, and its chooser."""

    key: str  # in RunSettings.inputs and the Train widget, e.g. "domain_a"
    flag: str  # e.g. "--domain-a"; kinds that share a flag share its meaning (and its value's key)
    help: str
    metavar: str = "DIR"
    required: bool = True  # on the command line (unless --resume)
    folder: bool = True  # a folder (stored as an absolute path); False: a text option
    layers: LayerChoice = LayerChoice.SEVERAL
    label: str = ""  # the Train widget's chooser label (with layers != NONE)
    tooltip: str = ""


@dataclass
class DataSettings:
    """What a data kind makes of the user's inputs (see :meth:`DataKind.read_inputs`)."""

    inputs: dict[str, Any]  # the inputs to store in run.json (resolved: e.g. held-out class names)
    model: dict[str, Any] = field(default_factory=dict)  # engine config read from the data (e.g.
    # channels), used unless [model] sets it
    training: dict[str, Any] = field(default_factory=dict)  # training settings from the data (e.g.
    # num_classes): after the preset, before [training]
    training_from_inputs: dict[str, Any] = field(default_factory=dict)  # from options (e.g. StEP's
    # --stages): after [training]
    loop: dict[str, Any] = field(default_factory=dict)  # loop settings that follow from the data


@dataclass(frozen=True)
class DataOptions:
    """The run's settings a dataset is built with."""

    model: Mapping[str, Any]  # engine config (channels, …)
    training: Mapping[str, Any]
    size: int  # crop size
    resize: int | None
    flip: bool
    seed: int


@dataclass
class LoadedData:
    """A kind's training data: the dataset whose items the trainer's ``step`` takes, a
    validation batch for ``validation_images`` and the record stored in the model file."""

    dataset: Any  # a torch Dataset
    validation_batch: Any
    record: dict[str, Any]  # merged into the model file's ``training`` provenance


@dataclass(frozen=True)
class LayerShape:
    """A chosen layer as the Train widget checks it: its name, planes and their size."""

    name: str
    planes: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.planes} plane(s) of {self.height}×{self.width}"


@dataclass(frozen=True)
class LayerPlace:
    """Where the Train widget writes one layer's planes: ``folder/{prefix}{index:05d}.png``."""

    folder: Path
    prefix: str = ""


class DataKind(ABC):
    """A kind of training data. Subclasses set the class attributes and the two abstract methods;
    the Train widget uses :meth:`layer_places` and :meth:`check_layers`, whose defaults suit
    one folder per role of several layers each."""

    name: ClassVar[str]  # what TrainerSpec.data names, e.g. "unpaired"
    # What the user gives, for errors: "two folders of unpaired images (--domain-a DIR --domain-b DIR)"
    description: ClassVar[str]
    roles: ClassVar[tuple[DataRole, ...]]
    loop_presets: ClassVar[Mapping[str, Mapping[str, Any]]]  # loop settings per training preset

    def role(self, key: str) -> DataRole:
        return next(role for role in self.roles if role.key == key)

    def layer_roles(self) -> list[DataRole]:
        """The roles the Train widget gives from layers."""
        return [role for role in self.roles if role.layers is not LayerChoice.NONE]

    @abstractmethod
    def read_inputs(
        self, inputs: Mapping[str, Any], loop: Mapping[str, Any], chosen: Collection[str]
    ) -> DataSettings:
        """Check the user's *inputs* (by role key; folders as absolute paths, text options as
        given, missing ones None) against the data and read what the settings need from it.

        *loop*: the loop settings so far (preset, config file, flags); *chosen*: the loop
        keys the user set. Raise ValueError (e.g. a ``DatasetError``) for bad data."""

    @abstractmethod
    def load(self, inputs: Mapping[str, Any], options: DataOptions) -> LoadedData:
        """The training data of a run whose stored inputs are *inputs*."""

    def layer_places(self, layers: Mapping[str, Sequence[str]], layers_dir: Path) -> dict[str, list[LayerPlace]]:
        """Per role, where each chosen layer (given by name) goes: by default one folder per role,
        ``layers_dir/KEY``, the layers' planes told apart by a ``layerNN_`` prefix."""
        return {key: [LayerPlace(layers_dir / key, f"layer{index:02d}_") for index in range(len(names))]
                for key, names in layers.items()}

    def role_folder(self, key: str, layers_dir: Path) -> Path:
        """The folder the command line gives for role *key* once its layers are written."""
        return layers_dir / key

    def check_layers(self, layers: Mapping[str, Sequence[LayerShape]]) -> None:
        """Raise ValueError for chosen layers this kind cannot train on (each role has some,
        and each layer holds a training crop: checked before)."""
