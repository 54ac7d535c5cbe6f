"""One training run: settings, data, loop, final model file.

Shared by ``napari-i2i train``, the Train widget (through it) and the benchmarks.
Settings (:mod:`trainers.run_settings`) come from the preset, a TOML/YAML file,
explicit overrides and the inputs of the engine's data kind; they are written
to ``RUN_DIR/run.json`` so ``resume`` continues with exactly the same ones (its data
folders found relative to the run folder when the run moved with them).
The data kind (``TrainerSpec.data``, a registered
:class:`~napari_i2i.contract.trainer_api.DataKind`) builds the dataset, the
validation batch and its part of the model file's provenance, so :func:`train`
trains any kind the same way. A finished run and a stopped one both leave
``RUN_DIR/model.safetensors``; a stopped one's provenance says where it stopped.
Under ``torchrun`` every process runs :func:`train` (:mod:`trainers.distributed`): each
takes its share of every global batch, and rank 0 alone writes the run's files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from napari_i2i.contract.registry import EngineRegistry, default_registry
from napari_i2i.contract.trainer_api import DataKind, DataOptions, MethodTrainer
from napari_i2i.core.model_file import RUN_MODEL_NAME, save_model
from trainers.datasets import InfiniteSampler
from trainers.distributed import World, process_group, world_from_environment
from trainers.loop import LoopConfig, TrainLoop
from trainers.precision import TrainingRuntime
from trainers.run_score import RunScore
from trainers.run_settings import (  # noqa: F401  (the run API in one place for front ends)
    RESUME_CHANGES,
    RUN_FILE,
    RunSettings,
    locate_inputs,
    make_settings,
    preset_loop_settings,
    read_config_file,
    read_run_file,
    relative_inputs,
)

MODEL_FILE = RUN_MODEL_NAME


def _batches(dataset: Dataset, settings: RunSettings, device: torch.device, world: World) -> Callable:
    """``batches(start)`` of :class:`TrainLoop`: this rank's share of each global batch."""
    def from_iteration(start: int):
        sampler = InfiniteSampler(len(dataset), settings.seed, start=start * settings.batch, rank=world.rank,
                                  ranks=world.size, batch=settings.batch)
        loader = DataLoader(
            dataset,
            batch_size=settings.batch // world.size,
            sampler=sampler,
            num_workers=4 if device.type == "cuda" else 0,
            pin_memory=device.type == "cuda",
            # its own generator: drawing the loader's base seed from the global one would
            # shift every later random number of a resumed run
            generator=torch.Generator().manual_seed(settings.seed),
        )
        return iter(loader)

    return from_iteration


def _run_settings(run_dir: Path, settings: RunSettings | None, resume: bool, changes: Mapping[str, Any],
                  registry: EngineRegistry) -> RunSettings:
    """The given settings, or with ``resume`` those of ``RUN_DIR/run.json`` (its folders located);
    ``changes`` (of :data:`RESUME_CHANGES`, None: unchanged) applied."""
    if resume:
        run_file = run_dir / RUN_FILE
        if not run_file.is_file():
            raise FileNotFoundError(f"{run_dir}: nothing to resume (no {RUN_FILE})")
        settings = read_run_file(run_file, registry)
        locate_inputs(settings, run_dir, registry.data_kind(settings.data))
    elif settings is None:
        raise ValueError("train() needs settings unless it resumes")
    unknown = set(changes) - set(RESUME_CHANGES)
    if unknown:
        raise ValueError(f"only {', '.join(RESUME_CHANGES)} may change; not {sorted(unknown)}")
    for key, value in changes.items():
        if value is not None:
            setattr(settings, key, value)
    return settings


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
    checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None,
    on_score: Callable[[int, RunScore], None] | None = None,
    compile_choice: str | None = None,
) -> Path | None:
    """Train and write ``RUN_DIR/model.safetensors``; ``None`` when stopped early.

    With ``resume``, the settings come from ``RUN_DIR/run.json`` (only the
    number of ``iterations``, the checkpoint intervals and ``compile_choice`` may change) and
    training continues from the last checkpoint, in the precision it started with. ``should_stop`` (asked before
    every iteration) stops the run as Ctrl-C does: checkpoint saved, the model
    so far written to ``RUN_DIR/model.safetensors`` (its provenance has
    ``training.stopped_at``; none when not one iteration was trained), ``None`` returned.
    ``on_score`` gets the run score (:mod:`trainers.run_score`) of each validation and of the end;
    the last is kept in the model file's provenance (``training.run_score``).
    Under ``torchrun`` (``WORLD_SIZE`` > 1) the batch is the global one (a multiple of the
    number of processes), ``cuda`` means ``cuda:LOCAL_RANK``, and rank 0 writes every file.
    """
    run_dir = Path(run_dir)
    registry = registry or default_registry()
    world = world_from_environment()
    changes = {"iterations": iterations, "checkpoint_every": checkpoint_every, "checkpoint_minutes": checkpoint_minutes,
               "compile": compile_choice}
    settings = _run_settings(run_dir, settings, resume, changes, registry)
    world.check_batch(settings.batch)
    device = world.device_for(device)
    runtime = TrainingRuntime.resolve(settings.precision, settings.compile, device, settings.iterations)
    settings.precision = runtime.precision  # run.json keeps what auto chose: a resume computes the same
    engine, kind, data, trainer = _build(settings, registry, device, runtime)
    with process_group(world, device):
        loop = TrainLoop(
            trainer, _batches(data.dataset, settings, device, world),
            LoopConfig(iterations=settings.iterations, checkpoint_every=settings.checkpoint_every,
                       checkpoint_minutes=settings.checkpoint_minutes, log_every=settings.log_every,
                       validate_every=settings.validate_every, seed=settings.seed),
            run_dir, validation_batch=data.validation_batch, on_progress=on_progress, on_validate=on_validate,
            should_stop=should_stop, world=world, on_score=on_score,
        )
        runtime.report_to(loop.log_event)  # e.g. compile_failed, at the step it happens
        if resume:
            loop.resume()
        runtime.fuse_optimizer_steps(trainer.optimizers().values())  # after resume(): it loads optimiser settings
        world.broadcast_modules(trainer.modules().values())  # the same weights everywhere, to be safe
        if world.is_main:  # after resume(): a checkpoint it refuses leaves run.json as it was
            _write_run_file(run_dir, settings, kind)
        started = time.perf_counter()
        finished = loop.run()
    if not finished and loop.iteration == 0:
        return None  # nothing trained: no model
    path = run_dir / MODEL_FILE
    if world.is_main:
        record = {"iterations": loop.iteration, "preset": settings.preset, **data.record, "device": str(device),
                  **runtime.record(),
                  "seconds_last_session": round(time.perf_counter() - started, 1), "settings": asdict(settings)}
        if world.distributed:
            record["processes"] = world.size
        if loop.last_score is not None:
            record["run_score"] = {"iteration": loop.last_score[0], **loop.last_score[1].record()}
        _save_model(path, engine, trainer, record, None if finished else settings.iterations)
    return path if finished else None


def _build(settings: RunSettings, registry: EngineRegistry, device: torch.device,
           runtime: TrainingRuntime) -> tuple[Any, DataKind, Any, MethodTrainer]:
    """The engine, the data kind, its loaded data and the trainer (computing as *runtime* says),
    built from the seed."""
    engine, spec = registry.get(settings.engine), registry.trainer(settings.engine)
    if spec.data != settings.data:
        raise ValueError(f"engine {settings.engine!r} trains on {spec.data!r} data, the settings are for "
                         f"{settings.data!r} data")
    kind = registry.data_kind(settings.data)
    data = kind.load(settings.inputs, DataOptions(
        model=settings.model, training=settings.training, size=settings.size, resize=settings.resize,
        flip=settings.flip, seed=settings.seed))
    torch.manual_seed(settings.seed)  # before building: the initial weights depend on the seed alone
    trainer = spec.build(engine.build(settings.model), settings.training, device, runtime=runtime)
    trainer.attach_dataset(data.dataset)  # for trainers that draw images themselves (StEP's triplet pools)
    return engine, kind, data, trainer


def _save_model(path: Path, engine: Any, trainer: MethodTrainer, record: dict[str, Any],
                planned: int | None) -> None:
    """The model file with its training record; *planned*: the target of a run stopped short of it."""
    if planned is not None:  # a model all the same, marked: it stopped short of the planned iterations
        record.update(stopped_at=record["iterations"], planned_iterations=planned)
    trainer.before_saving()  # e.g. unified: each domain's typical style, into the model
    method_record = trainer.provenance()
    if method_record is not None:  # e.g. which VGG16 weights a loss used, iterations per stage
        record["method"] = method_record
    save_model(path, engine, trainer.model, provenance={"training": record})


def _write_run_file(run_dir: Path, settings: RunSettings, kind: DataKind) -> None:
    """``RUN_DIR/run.json``, with the input folders also relative to the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    settings.inputs_relative = relative_inputs(settings, run_dir, kind)
    (run_dir / RUN_FILE).write_text(json.dumps(asdict(settings), indent=2))
