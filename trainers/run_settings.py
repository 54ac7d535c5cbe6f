"""A training run's settings: preset, then a TOML/YAML file, then explicit overrides, and the
inputs of the engine's data kind; written to ``RUN_DIR/run.json`` so a resumed run continues
with exactly the same ones.

Kind-agnostic: what the inputs are and what follows from them (channels read from the
images, held-out classes, training stages) is the :class:`~napari_i2i.contract.trainer_api.DataKind`'s
business; the engine's ``TrainerSpec.data`` names it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_i2i.contract.registry import EngineRegistry, default_registry
from napari_i2i.contract.trainer_api import DataKind, TrainerSpec
from napari_i2i.core.constants import COMPILE_CHOICES, PRECISION_CHOICES

RUN_FILE = "run.json"
# Top-level run.json fields of runs written before inputs were one mapping; read into `inputs`.
_LEGACY_INPUT_FIELDS = ("domain_a", "domain_b", "classes", "holdout_classes", "pairs_a", "pairs_b")


@dataclass
class RunSettings:
    engine: str
    preset: str
    data: str = "unpaired"  # the data kind (TrainerSpec.data)
    inputs: dict[str, Any] = field(default_factory=dict)  # the kind's inputs by role key; folders absolute
    # The folders of `inputs` relative to the run folder, where they can be: found there when the
    # absolute path is gone (the run folder moved together with its data).
    inputs_relative: dict[str, str] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # engine config
    training: dict[str, Any] = field(default_factory=dict)  # method settings
    size: int = 64
    batch: int = 4
    iterations: int = 5_000
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0  # also a checkpoint once this long has passed since the last; 0: never by time
    validate_every: int = 500
    log_every: int = 10
    seed: int = 0
    resize: int | None = None  # short side resized to this before cropping; None: never resized
    flip: bool = True  # random horizontal flips (off where a mirror image is another thing: glyphs)
    # Arithmetic of the steps (PRECISION_CHOICES): a new run stores what ``auto`` resolved to, so a
    # resumed run computes as the first did. Runs written before the setting trained in fp32.
    precision: str = "auto"
    compile: str = "auto"  # torch.compile the networks (COMPILE_CHOICES; core.device.training_compile_pays)


# RunSettings fields that say what the run is: set by make_settings, not by config files or flags.
_DATA_FIELDS = {"engine", "preset", "data", "inputs", "inputs_relative", "model", "training"}
# Loop settings a resumed run may change: they decide when checkpoints are written, not what is learnt.
RESUME_CHANGES = ("iterations", "checkpoint_every", "checkpoint_minutes", "compile")


def check_global_batch(batch: int, processes: int) -> None:
    """The global batch must split evenly: each of the *processes* takes ``batch / processes`` images."""
    if batch % processes:
        lower = batch - batch % processes
        choices = f"--batch {lower} or {lower + processes}" if lower else f"--batch {processes}"
        raise ValueError(f"the batch of {batch} does not divide among {processes} processes: --batch is the "
                         f"global batch and must be a multiple of the number of processes (e.g. {choices})")


def read_run_file(path: Path, registry: EngineRegistry | None = None) -> RunSettings:
    """The settings in a ``run.json``, also one written before the inputs were one mapping
    (they move into ``inputs``: those that are roles of the run's data kind)."""
    values = json.loads(Path(path).read_text())
    legacy = {key: values.pop(key) for key in _LEGACY_INPUT_FIELDS if key in values}
    if "inputs" not in values:
        kind = (registry or default_registry()).data_kind(values.get("data", "unpaired"))
        values["inputs"] = {role.key: legacy[role.key] for role in kind.roles if role.key in legacy}
    values.setdefault("precision", "fp32")  # written before runs had a precision: they trained in fp32
    return RunSettings(**values)


def relative_inputs(settings: RunSettings, run_dir: Path, kind: DataKind) -> dict[str, str]:
    """The input folders relative to *run_dir* (none where there is no relative path: another drive)."""
    relative = {}
    for role in kind.roles:
        value = settings.inputs.get(role.key)
        if role.folder and value is not None:
            try:
                relative[role.key] = os.path.relpath(value, os.path.abspath(run_dir))
            except ValueError:  # Windows: another drive
                pass
    return relative


def locate_inputs(settings: RunSettings, run_dir: Path, kind: DataKind) -> None:
    """Point ``settings.inputs`` at folders that exist: a stored folder that is gone is looked for
    relative to *run_dir* (the run moved with its data); neither there is a FileNotFoundError."""
    for role in kind.roles:
        value = settings.inputs.get(role.key)
        if not role.folder or value is None or Path(value).is_dir():
            continue
        relative = settings.inputs_relative.get(role.key)
        moved = Path(run_dir, relative) if relative is not None else None
        if moved is not None and moved.is_dir():
            settings.inputs[role.key] = os.path.abspath(moved)
            continue
        elsewhere = f", nor {relative} relative to the run folder {run_dir}" if relative is not None else ""
        raise FileNotFoundError(f"{run_dir / RUN_FILE}: the {role.flag} folder {value} of this run does not exist"
                                f"{elsewhere}; put the data back there to resume")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """``[model]``, ``[training]`` tables and loop keys (``size``, ``batch``, …) from TOML or YAML."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        values = tomllib.loads(text)
    elif path.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"{path}: config files are .toml or .yaml")
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a table of settings")
    return values


def make_settings(
    engine: str,
    preset: str,
    inputs: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: EngineRegistry | None = None,
) -> RunSettings:
    """Preset, then config file values, then overrides (command-line flags); *inputs* by role key
    of the engine's data kind (e.g. ``{"domain_a": DIR, "domain_b": DIR}``).

    The kind reads what follows from the data (e.g. channel counts, used unless ``[model]``
    sets them). A spec with ``total_iterations`` sets the loop's iterations from the training
    settings unless the config file or *overrides* set them.
    """
    registry = registry or default_registry()
    spec, kind = _spec_and_kind(registry, engine, preset)
    inputs = _checked_inputs(engine, kind, inputs)
    config = dict(config or {})
    model_overrides = dict(config.pop("model", {}))
    training_overrides = dict(config.pop("training", {}))
    chosen = {**config, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    loop = _loop_settings(kind.loop_presets[preset], chosen)
    data = kind.read_inputs(inputs, loop, set(chosen))
    loop.update(data.loop)
    model = registry.get(engine).config(preset, **{**data.model, **model_overrides})  # the data decides, unless the user did
    training = {**spec.presets[preset], **data.training, **training_overrides, **data.training_from_inputs}
    if "iterations" not in chosen and spec.total_iterations is not None:
        loop["iterations"] = spec.total_iterations(training)
    return RunSettings(engine=engine, preset=preset, data=kind.name, inputs=data.inputs, model=model,
                       training=training, **loop)


def preset_loop_settings(engine: str, preset: str, registry: EngineRegistry | None = None) -> dict[str, Any]:
    """The loop settings (crop ``size``, ``iterations``, …) a run of *engine* starts from with
    *preset*, before config files and flags: what a front end offers as defaults."""
    registry = registry or default_registry()
    spec, kind = _spec_and_kind(registry, engine, preset)
    loop = dict(kind.loop_presets[preset])
    if spec.total_iterations is not None:
        loop["iterations"] = spec.total_iterations(spec.presets[preset])
    return loop


def _spec_and_kind(registry: EngineRegistry, engine: str, preset: str) -> tuple[TrainerSpec, DataKind]:
    spec = registry.trainer(engine)
    kind = registry.data_kind(spec.data)
    if preset not in kind.loop_presets or preset not in spec.presets:
        raise ValueError(f"no training preset {preset!r}; choose one of {sorted(spec.presets)}")
    return spec, kind


def _checked_inputs(engine: str, kind: DataKind, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Every role's value (None when not given), folders as absolute paths; inputs of other
    kinds and missing required ones are errors."""
    keys = {role.key for role in kind.roles}
    unknown = sorted(key for key, value in inputs.items() if key not in keys and value is not None)
    if unknown:
        raise ValueError(f"engine {engine!r} trains on {kind.description}; it takes no {', '.join(unknown)}")
    checked = {}
    for role in kind.roles:
        value = inputs.get(role.key)
        if value is None and role.required:
            raise ValueError(f"{role.flag} is required for {engine}: it trains on {kind.description}")
        checked[role.key] = os.path.abspath(value) if role.folder and value is not None else value
    return checked


def _loop_settings(preset: Mapping[str, Any], chosen: Mapping[str, Any]) -> dict[str, Any]:
    """Loop settings: the preset's, then the config file's top-level keys and flags (*chosen*)."""
    loop = {**preset, **chosen}
    unknown = set(loop) - (set(RunSettings.__dataclass_fields__) - _DATA_FIELDS)
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    for key, choices in (("precision", PRECISION_CHOICES), ("compile", COMPILE_CHOICES)):
        if key in loop and loop[key] not in choices:
            raise ValueError(f"unknown {key} {loop[key]!r}; use one of {', '.join(choices)}")
    return loop
