"""One training run from folders: settings, data, loop, final model file.

Shared by ``napari-i2i train`` and any other front end. Settings come from
the preset, then a TOML/YAML file, then explicit overrides; they are written
to ``RUN_DIR/run.json`` so ``resume`` continues with exactly the same ones.

Three kinds of data, as the engine's ``TrainerSpec.data`` says: ``"unpaired"``
(two domain folders, :func:`make_settings`), ``"classes"`` (one folder of
class subfolders, :func:`make_class_settings`, FUNIT) and ``"paired"``
(aligned A/B pairs: two folders matched by file name, or one folder of
side-by-side A|B images, :func:`make_paired_settings`, StEP). :func:`train`
takes the settings of any.

Two optional trainer hooks, looked up by name: ``attach_dataset(dataset)``
(called with the training dataset before the loop starts, for trainers that
draw images themselves) and ``provenance()`` (a JSON-able record stored as
``training.method`` in the model file). A spec with ``total_iterations``
(a function of the training settings) sets the loop's iterations unless the
user does.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from napari_i2i.core.model_file import save_model
from napari_i2i.contract.registry import EngineRegistry, default_registry
from trainers.class_folders import ClassPairs, ClassSubset, split_classes
from trainers.datasets import (
    ClassFolders,
    ImageFolder,
    InfiniteSampler,
    PairedFolders,
    UnpairedDomains,
)
from napari_i2i.contract.trainer_api import MethodTrainer
from trainers.loop import LoopConfig, TrainLoop

RUN_FILE = "run.json"
MODEL_FILE = "model.safetensors"

# Data and loop settings per preset; the method's own settings are in its TrainerSpec.
LOOP_PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(size=64, batch=4, iterations=5_000, checkpoint_every=500, validate_every=500),
    "paper": dict(size=256, batch=1, iterations=1_000_000, checkpoint_every=10_000, validate_every=10_000),
}
# Class-folder training (FUNIT): whole objects, so images are resized before cropping: the
# published 128² crops of images whose short side is 140; `small` works on 32² images.
CLASS_LOOP_PRESETS: dict[str, dict[str, Any]] = {
    "small": {"size": 32, "resize": 32, "batch": 4, "iterations": 5_000,
              "checkpoint_every": 500, "validate_every": 500},
    "paper": {"size": 128, "resize": 140, "batch": 64, "iterations": 100_000,
              "checkpoint_every": 5_000, "validate_every": 5_000},
}
# Paired training (StEP): pix2pix-like crops of aligned pairs. `iterations` is replaced by the
# trainer's planned total (its stages' iterations) unless a config file or flag sets it.
PAIRED_LOOP_PRESETS: dict[str, dict[str, Any]] = {
    "small": {"size": 64, "batch": 4, "iterations": 5_000, "checkpoint_every": 250, "validate_every": 250},
    "paper": {"size": 256, "batch": 1, "iterations": 1_000_000, "checkpoint_every": 10_000,
              "validate_every": 10_000},
}
LOOP_PRESETS_BY_DATA = {"unpaired": LOOP_PRESETS, "classes": CLASS_LOOP_PRESETS, "paired": PAIRED_LOOP_PRESETS}
# RunSettings fields that say what the data is: set by make_*settings, not by config files or flags.
_DATA_FIELDS = {"engine", "preset", "domain_a", "domain_b", "data", "classes", "holdout_classes",
                "pairs_a", "pairs_b"}


@dataclass
class RunSettings:
    engine: str
    preset: str
    domain_a: str | None = None  # data "unpaired"
    domain_b: str | None = None
    model: dict[str, Any] = field(default_factory=dict)  # engine config
    training: dict[str, Any] = field(default_factory=dict)  # method settings
    size: int = 64
    batch: int = 4
    iterations: int = 5_000
    checkpoint_every: int = 500
    validate_every: int = 500
    log_every: int = 10
    seed: int = 0
    resize: int | None = None  # short side resized to this before cropping; None: never resized
    flip: bool = True  # random horizontal flips (off where a mirror image is another thing: glyphs)
    data: str = "unpaired"  # or "classes", "paired"
    classes: str | None = None  # data "classes": the folder of class subfolders
    holdout_classes: list[str] = field(default_factory=list)  # classes kept out of training
    pairs_a: str | None = None  # data "paired": folder of A images (or of side-by-side A|B images)
    pairs_b: str | None = None  # data "paired": folder of B images named as in pairs_a; None: side by side


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
    domain_a: str | Path,
    domain_b: str | Path,
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: EngineRegistry | None = None,
) -> RunSettings:
    """Preset, then config file values, then overrides (command-line flags)."""
    registry = registry or default_registry()
    spec = _spec(registry, engine, preset, "unpaired")
    config = dict(config or {})
    model_overrides = dict(config.pop("model", {}))
    for key, folder in (("channels_a", domain_a), ("channels_b", domain_b)):
        if key not in model_overrides:  # the data decides, unless the user did
            model_overrides[key] = ImageFolder(folder, size=None, verify=False, cache_bytes=0).channels
    model = registry.get(engine).config(preset, **model_overrides)
    training = {**spec.presets[preset], **config.pop("training", {})}
    loop = _loop_settings(LOOP_PRESETS[preset], config, overrides)
    return RunSettings(
        engine=engine, preset=preset, domain_a=str(domain_a), domain_b=str(domain_b),
        model=model, training=training, **loop,
    )


def make_class_settings(
    engine: str,
    preset: str,
    classes: str | Path,
    holdout: int | Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: EngineRegistry | None = None,
) -> RunSettings:
    """Settings for an engine trained on class folders (``TrainerSpec.data == "classes"``).

    ``classes`` holds one subfolder of images per class. ``holdout`` keeps
    classes out of training for evaluating translation to unseen classes: a
    number of classes drawn with the run's seed, or their names (see
    :func:`trainers.class_folders.split_classes`). The model's ``channels`` come
    from the images unless ``[model]`` sets them; the training setting
    ``num_classes`` (the discriminator's outputs) is the number of training classes.
    """
    registry = registry or default_registry()
    spec = _spec(registry, engine, preset, "classes")
    config = dict(config or {})
    model_overrides = dict(config.pop("model", {}))
    training_overrides = dict(config.pop("training", {}))
    loop = _loop_settings(CLASS_LOOP_PRESETS[preset], config, overrides)
    chosen = {**config, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if "resize" not in chosen and loop.get("resize") is not None and loop["resize"] < loop["size"]:
        loop["resize"] = loop["size"]  # a larger crop than the preset's: resize to it, not below
    found = ClassFolders(classes, size=None, verify=False, cache_bytes=0)  # headers only; names problems
    if "channels" not in model_overrides:  # the data decides, unless the user did
        model_overrides["channels"] = found.channels
    model = registry.get(engine).config(preset, **model_overrides)
    training_classes, held_out = split_classes(found.classes, holdout, loop.get("seed", 0))
    training = {**spec.presets[preset], "num_classes": len(training_classes), **training_overrides}
    return RunSettings(
        engine=engine, preset=preset, data="classes", classes=str(classes), holdout_classes=held_out,
        model=model, training=training, **loop,
    )


def make_paired_settings(
    engine: str,
    preset: str,
    pairs_a: str | Path,
    pairs_b: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    registry: EngineRegistry | None = None,
    training: Mapping[str, Any] | None = None,
) -> RunSettings:
    """Settings for an engine trained on aligned pairs (``TrainerSpec.data == "paired"``).

    ``pairs_a`` and ``pairs_b``: two folders whose files pair by name without
    suffix (``x.png`` with ``x.tif``); with ``pairs_b`` None, ``pairs_a`` holds
    side-by-side A|B images split in the middle. The model's ``channels_a`` /
    ``channels_b`` come from the images unless ``[model]`` sets them.
    ``training``: method settings from flags (e.g. StEP's ``{"stages": [...]}``),
    applied after the preset and the config file's ``[training]``. The loop's
    ``iterations`` is the spec's ``total_iterations(training)`` when it has one,
    unless the config file or ``overrides`` set it.
    """
    registry = registry or default_registry()
    spec = _spec(registry, engine, preset, "paired")
    config = dict(config or {})
    model_overrides = dict(config.pop("model", {}))
    training_settings = {**spec.presets[preset], **config.pop("training", {}), **(training or {})}
    loop = _loop_settings(PAIRED_LOOP_PRESETS[preset], config, overrides)
    chosen = {**config, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if "iterations" not in chosen and spec.total_iterations is not None:
        loop["iterations"] = spec.total_iterations(training_settings)
    found = PairedFolders(pairs_a, pairs_b, size=None, verify=False, cache_bytes=0)  # headers only
    model_overrides.setdefault("channels_a", found.channels_a)  # the data decides, unless the user did
    model_overrides.setdefault("channels_b", found.channels_b)
    model = registry.get(engine).config(preset, **model_overrides)
    return RunSettings(
        engine=engine, preset=preset, data="paired", pairs_a=str(pairs_a),
        pairs_b=None if pairs_b is None else str(pairs_b), model=model, training=training_settings, **loop,
    )


def preset_loop_settings(engine: str, preset: str, registry: EngineRegistry | None = None) -> dict[str, Any]:
    """The loop settings (crop ``size``, ``iterations``, …) a run of *engine* starts from with
    *preset*, before config files and flags: what a front end offers as defaults."""
    registry = registry or default_registry()
    spec = _spec(registry, engine, preset, registry.trainer(engine).data)
    loop = dict(LOOP_PRESETS_BY_DATA[spec.data][preset])
    if spec.total_iterations is not None:
        loop["iterations"] = spec.total_iterations(spec.presets[preset])
    return loop


def data_kind(engine: str, registry: EngineRegistry | None = None) -> str:
    """What the engine's trainer trains on: ``"unpaired"`` (two domain folders), ``"classes"``
    (a folder of class subfolders) or ``"paired"`` (aligned pairs)."""
    return (registry or default_registry()).trainer(engine).data


def _spec(registry: EngineRegistry, engine: str, preset: str, data: str) -> Any:
    spec = registry.trainer(engine)
    if spec.data != data:
        needs = {"unpaired": "two folders of unpaired images (domains A and B)",
                 "classes": "one folder with a subfolder of images per class",
                 "paired": "aligned image pairs (two folders matched by file name, or side-by-side A|B images)"}
        raise ValueError(f"engine {engine!r} trains on {needs.get(spec.data, repr(spec.data))}")
    if preset not in LOOP_PRESETS_BY_DATA[data] or preset not in spec.presets:
        raise ValueError(f"no training preset {preset!r}; choose one of {sorted(spec.presets)}")
    return spec


def _loop_settings(
    preset: Mapping[str, Any], config: Mapping[str, Any], overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Loop settings: the preset's, then the config file's top-level keys, then flags."""
    loop = {**preset, **config, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    unknown = set(loop) - (set(RunSettings.__dataclass_fields__) - _DATA_FIELDS - {"model", "training"})
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    return loop


def _batches(dataset: Dataset, settings: RunSettings, device: torch.device) -> Callable:
    def from_iteration(start: int):
        sampler = InfiniteSampler(len(dataset), settings.seed, start=start * settings.batch)
        loader = DataLoader(
            dataset,
            batch_size=settings.batch,
            sampler=sampler,
            num_workers=4 if device.type == "cuda" else 0,
            pin_memory=device.type == "cuda",
            # its own generator: drawing the loader's base seed from the global one would
            # shift every later random number of a resumed run
            generator=torch.Generator().manual_seed(settings.seed),
        )
        return iter(loader)

    return from_iteration


def _unpaired_data(settings: RunSettings) -> tuple[Dataset, Any, dict[str, Any]]:
    """Two domain folders: the dataset, a validation batch ``(x_a, x_b)`` and the provenance record."""
    options = {"size": settings.size, "resize": settings.resize, "flip": settings.flip, "seed": settings.seed}
    dataset = UnpairedDomains(
        ImageFolder(settings.domain_a, channels=settings.model.get("channels_a"), **options),
        ImageFolder(settings.domain_b, channels=settings.model.get("channels_b"), **options),
        seed=settings.seed,
    )
    validation = [dataset[i] for i in range(min(4, len(dataset)))]
    batch = tuple(torch.stack(parts) for parts in zip(*validation))
    return dataset, batch, {"domain_a": settings.domain_a, "domain_b": settings.domain_b}


def _class_data(settings: RunSettings) -> tuple[Dataset, Any, dict[str, Any]]:
    """Class folders: pairs of the training classes, a validation batch ``(content, examples)``
    whose examples come from the held-out classes when there are any, and the provenance record."""
    folders = ClassFolders(
        settings.classes, channels=settings.model.get("channels"), size=settings.size,
        resize=settings.resize, flip=settings.flip, seed=settings.seed,
    )
    held_out = list(settings.holdout_classes)
    training_classes, _ = split_classes(folders.classes, held_out)
    num_classes = settings.training.get("num_classes")
    if num_classes is not None and num_classes != len(training_classes):
        raise ValueError(
            f"{settings.classes}: {len(training_classes)} training classes, but the settings say "
            f"num_classes = {num_classes} (did the class folders change since the run started?)"
        )
    dataset = ClassPairs(ClassSubset(folders, training_classes), seed=settings.seed)
    count = min(4, len(dataset))
    content = torch.stack([dataset[i][0][0] for i in range(count)])
    if held_out:  # what FUNIT is for: classes never seen in training
        examples = torch.stack([
            folders.sample(folders.classes.index(held_out[i % len(held_out)]), 1, key=i)[0]
            for i in range(count)
        ])
    else:
        examples = torch.stack([dataset[i][1][0] for i in range(count)])
    record = {"classes_dir": settings.classes, "classes": training_classes, "holdout_classes": held_out}
    return dataset, (content, examples), record


def _paired_data(settings: RunSettings) -> tuple[Dataset, Any, dict[str, Any]]:
    """Aligned pairs: the dataset, a validation batch ``(x_a, x_b)`` and the provenance record."""
    dataset = PairedFolders(
        settings.pairs_a, settings.pairs_b, channels_a=settings.model.get("channels_a"),
        channels_b=settings.model.get("channels_b"), size=settings.size, resize=settings.resize,
        flip=settings.flip, seed=settings.seed,
    )
    validation = [dataset[i] for i in range(min(4, len(dataset)))]
    batch = tuple(torch.stack(parts) for parts in zip(*validation))
    record = {"pairs_a": settings.pairs_a, "pairs_b": settings.pairs_b, "pairs": len(dataset)}
    return dataset, batch, record


def train(
    run_dir: str | Path,
    settings: RunSettings | None = None,
    device: torch.device = torch.device("cpu"),
    resume: bool = False,
    on_progress: Callable[[int, dict[str, float]], None] | None = None,
    registry: EngineRegistry | None = None,
    iterations: int | None = None,
    on_validate: Callable[[int, MethodTrainer], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path | None:
    """Train and write ``RUN_DIR/model.safetensors``; ``None`` when stopped early.

    With ``resume``, the settings come from ``RUN_DIR/run.json`` (only the
    number of ``iterations`` may change) and training continues from the
    last checkpoint. ``should_stop`` (asked before every iteration) stops the
    run as Ctrl-C does: checkpoint saved, ``None`` returned.
    """
    run_dir = Path(run_dir)
    registry = registry or default_registry()
    run_file = run_dir / RUN_FILE
    if resume:
        if not run_file.is_file():
            raise FileNotFoundError(f"{run_dir}: nothing to resume (no {RUN_FILE})")
        settings = RunSettings(**json.loads(run_file.read_text()))
    elif settings is None:
        raise ValueError("train() needs settings unless it resumes")
    if iterations is not None:
        settings.iterations = iterations
    engine = registry.get(settings.engine)
    spec = registry.trainer(settings.engine)
    if spec.data != settings.data:
        raise ValueError(f"engine {settings.engine!r} trains on {spec.data!r} data, the settings are for "
                         f"{settings.data!r} data")
    if settings.data == "classes":
        dataset, validation_batch, data_record = _class_data(settings)
    elif settings.data == "paired":
        dataset, validation_batch, data_record = _paired_data(settings)
    else:
        dataset, validation_batch, data_record = _unpaired_data(settings)
    torch.manual_seed(settings.seed)  # before building: the initial weights depend on the seed alone
    model = engine.build(settings.model)
    trainer = spec.build(model, settings.training, device)
    trainer.attach_dataset(dataset)  # for trainers that draw images themselves (StEP's triplet pools)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(asdict(settings), indent=2))
    loop = TrainLoop(
        trainer,
        _batches(dataset, settings, device),
        LoopConfig(
            iterations=settings.iterations,
            checkpoint_every=settings.checkpoint_every,
            log_every=settings.log_every,
            validate_every=settings.validate_every,
            seed=settings.seed,
        ),
        run_dir,
        validation_batch=validation_batch,
        on_progress=on_progress,
        on_validate=on_validate,
        should_stop=should_stop,
    )
    if resume:
        loop.resume()
    started = time.perf_counter()
    finished = loop.run()
    if not finished:
        return None
    path = run_dir / MODEL_FILE
    record = {
        "iterations": loop.iteration,
        "preset": settings.preset,
        **data_record,
        "device": str(device),
        "seconds_last_session": round(time.perf_counter() - started, 1),
        "settings": asdict(settings),
    }
    method_record = trainer.provenance()
    if method_record is not None:  # e.g. which VGG16 weights a loss used, iterations per stage
        record["method"] = method_record
    save_model(path, engine, trainer.model, provenance={"training": record})
    return path
