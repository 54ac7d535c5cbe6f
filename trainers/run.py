"""One training run from folders: settings, data, loop, final model file.

Shared by ``napari-i2i train`` and any other front end. Settings come from
the preset, then a TOML/YAML file, then explicit overrides; they are written
to ``RUN_DIR/run.json`` so ``resume`` continues with exactly the same ones.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from napari_i2i.model_file import save_model
from napari_i2i.registry import EngineRegistry, default_registry
from trainers.datasets import ImageFolder, InfiniteSampler, UnpairedDomains
from trainers.loop import LoopConfig, MethodTrainer, TrainLoop

RUN_FILE = "run.json"
MODEL_FILE = "model.safetensors"

# Data and loop settings per preset; the method's own settings are in its TrainerSpec.
LOOP_PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(size=64, batch=4, iterations=5_000, checkpoint_every=500, validate_every=500),
    "paper": dict(size=256, batch=1, iterations=1_000_000, checkpoint_every=10_000, validate_every=10_000),
}


@dataclass
class RunSettings:
    engine: str
    preset: str
    domain_a: str
    domain_b: str
    model: dict[str, Any] = field(default_factory=dict)  # engine config
    training: dict[str, Any] = field(default_factory=dict)  # method settings
    size: int = 64
    batch: int = 4
    iterations: int = 5_000
    checkpoint_every: int = 500
    validate_every: int = 500
    log_every: int = 10
    seed: int = 0


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
    spec = registry.trainer(engine)
    if preset not in LOOP_PRESETS or preset not in spec.presets:
        raise ValueError(f"no training preset {preset!r}; choose one of {sorted(spec.presets)}")
    config = dict(config or {})
    model_overrides = dict(config.pop("model", {}))
    for key, folder in (("channels_a", domain_a), ("channels_b", domain_b)):
        if key not in model_overrides:  # the data decides, unless the user did
            model_overrides[key] = ImageFolder(folder, size=None, verify=False, cache_bytes=0).channels
    model = registry.get(engine).config(preset, **model_overrides)
    training = {**spec.presets[preset], **config.pop("training", {})}
    loop = {**LOOP_PRESETS[preset], **config, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    known = {f for f in RunSettings.__dataclass_fields__} - {"engine", "preset", "domain_a", "domain_b"}
    unknown = set(loop) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    return RunSettings(
        engine=engine, preset=preset, domain_a=str(domain_a), domain_b=str(domain_b),
        model=model, training=training, **loop,
    )


def _batches(dataset: UnpairedDomains, settings: RunSettings, device: torch.device) -> Callable:
    def from_iteration(start: int):
        sampler = InfiniteSampler(len(dataset), settings.seed, start=start * settings.batch)
        loader = DataLoader(
            dataset,
            batch_size=settings.batch,
            sampler=sampler,
            num_workers=4 if device.type == "cuda" else 0,
            pin_memory=device.type == "cuda",
        )
        return iter(loader)

    return from_iteration


def train(
    run_dir: str | Path,
    settings: RunSettings | None = None,
    device: torch.device = torch.device("cpu"),
    resume: bool = False,
    on_progress: Callable[[int, dict[str, float]], None] | None = None,
    registry: EngineRegistry | None = None,
    iterations: int | None = None,
    on_validate: Callable[[int, MethodTrainer], None] | None = None,
) -> Path | None:
    """Train and write ``RUN_DIR/model.safetensors``; ``None`` when stopped early.

    With ``resume``, the settings come from ``RUN_DIR/run.json`` (only the
    number of ``iterations`` may change) and training continues from the
    last checkpoint.
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
    data_options = dict(size=settings.size, seed=settings.seed)
    model = engine.build(settings.model)
    channels = (settings.model.get("channels_a"), settings.model.get("channels_b"))
    dataset = UnpairedDomains(
        ImageFolder(settings.domain_a, channels=channels[0], **data_options),
        ImageFolder(settings.domain_b, channels=channels[1], **data_options),
        seed=settings.seed,
    )
    torch.manual_seed(settings.seed)
    trainer = spec.build(model, settings.training, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(asdict(settings), indent=2))
    validation = [dataset[i] for i in range(min(4, len(dataset)))]
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
        validation_batch=tuple(torch.stack(parts) for parts in zip(*validation)),
        on_progress=on_progress,
        on_validate=on_validate,
    )
    if resume:
        loop.resume()
    started = time.perf_counter()
    finished = loop.run()
    if not finished:
        return None
    path = run_dir / MODEL_FILE
    save_model(
        path,
        engine,
        trainer.model,
        provenance={
            "training": {
                "iterations": loop.iteration,
                "preset": settings.preset,
                "domain_a": settings.domain_a,
                "domain_b": settings.domain_b,
                "device": str(device),
                "seconds_last_session": round(time.perf_counter() - started, 1),
                "settings": asdict(settings),
            }
        },
    )
    return path
