"""Seconds per training iteration of a two-domain trainer (MUNIT, UNIT).

One iteration is what ``napari-i2i train`` does per batch: the generator
forward, the discriminator update and the generator update (losses,
backward, Adam). Data are synthetic (uniform noise in [-1, 1], no data
loader), so the figure is the trainer's own cost, comparable with the
official MUNIT code measured the same way (``docs/methods.md``: paper
sizes, batch 1, VGG loss off). Prints the median of ``--iters`` iterations
after ``--warmup`` untimed ones, and its split:

- ``gen fwd``: the generator forward (:meth:`translate`: encoders, the two
  translations);
- ``dis step``: both discriminators on real and translated images,
  backward, Adam;
- ``gen loss+bwd``: the generator's loss terms (reconstructions, codes,
  cycle, GAN through the updated discriminators), backward, Adam;
- ``CPU s``: processor seconds of the whole iteration, all threads together
  (on a shared machine wall seconds grow with the other jobs' load; with one
  thread, CPU seconds much less so).

Each column is its own median, so the phases need not add up to ``s/iter``.

    python benchmarks/train_step.py --engine munit --preset paper --sizes 64 128 --batch 1

``--variants`` compares how the steps run instead (``trainers.precision``): one trainer per
variant (``eager-fp32``, ``eager-bf16``, ``compiled-fp32``, ``compiled-bf16``, all with fused
optimiser steps as ``napari-i2i train`` runs them; ``-unfused``: torch's per-parameter Adam loop,
the step before fused optimiser steps; probes the runtime does not do: ``-cl``, the networks and
batches in ``torch.channels_last``, and ``compiled-bf16-cpp-wrapper`` /
``compiled-bf16-max-autotune`` with those inductor settings), all built from the same seed,
stepped in turn (A B C D A B C D …) in one process so that the machine's load falls on all
alike; prints each variant's median seconds per iteration, its ratio to the first variant named
(above 1: faster), and the seconds of its first step (for compiled variants: mostly compiling).
Every engine (``munit``, ``unit``, ``funit``, ``step``, ``unified``) runs on synthetic batches of
its data kind; ``--cycle-off`` sets ``cycle_weight`` 0, as in the published MUNIT edges2shoes configuration:

    python benchmarks/train_step.py --engine munit --preset paper --sizes 64 128 --batch 1 --cycle-off \
        --variants eager-fp32-unfused eager-fp32 eager-bf16 compiled-bf16
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

PHASES = ("gen_forward", "dis_step", "gen_loss_backward")
ENGINES = ("munit", "unit", "funit", "step", "unified")


@dataclass(frozen=True)
class Variant:
    """One way to run the steps: the runtime's precision, compilation and fused optimiser steps
    (``TrainingRuntime.fuse_optimizer_steps``, what ``napari-i2i train`` does), and probes the
    runtime does not do: the networks and batches in ``torch.channels_last``, inductor settings."""

    precision: str
    compiled: bool
    fused_optimizers: bool = True
    channels_last: bool = False
    inductor: tuple[tuple[str, Any], ...] = ()


VARIANTS = {
    "eager-fp32": Variant("fp32", False), "eager-bf16": Variant("bf16", False),
    "compiled-fp32": Variant("fp32", True), "compiled-bf16": Variant("bf16", True),
    # the steps before fused optimiser steps: torch's per-parameter Adam loop on the CPU
    "eager-fp32-unfused": Variant("fp32", False, fused_optimizers=False),
    "eager-bf16-unfused": Variant("bf16", False, fused_optimizers=False),
    "compiled-bf16-unfused": Variant("bf16", True, fused_optimizers=False),
    "eager-fp32-cl": Variant("fp32", False, channels_last=True),
    "eager-bf16-cl": Variant("bf16", False, channels_last=True),
    "compiled-bf16-cpp-wrapper": Variant("bf16", True, inductor=(("cpp_wrapper", True),)),
    "compiled-bf16-max-autotune": Variant(  # what mode="max-autotune-no-cudagraphs" sets
        "bf16", True, inductor=(("max_autotune", True), ("coordinate_descent_tuning", True))),
}
CLASSES = 4  # FUNIT's training classes and the unified engine's domains in the synthetic batches
# What the engines other than MUNIT/UNIT need to be built at all: FUNIT's class count, the
# unified engine's domains, StEP's generator stage (its main cost; the style stage needs VGG16 Grams).
ENGINE_MODEL = {"unified": {"domains": [f"d{k}" for k in range(CLASSES)]}}
ENGINE_TRAINING = {"funit": {"num_classes": CLASSES}, "step": {"stages": ["generator"]}}


def _build_trainer(engine: str, preset: str, where: torch.device, model: dict[str, Any] | None,
                   training: dict[str, Any] | None, runtime: Any = None) -> tuple[Any, Any]:
    """``(built networks, trainer)`` of ``engine``'s ``preset``, seeded, with overrides."""
    import warnings

    from napari_i2i.contract.registry import default_registry

    registry = default_registry()
    networks = registry.get(engine)
    spec = registry.trainer(engine)
    torch.manual_seed(0)
    built = networks.build(networks.config(preset, **{**ENGINE_MODEL.get(engine, {}), **(model or {})}))
    settings = {**spec.presets[preset], **ENGINE_TRAINING.get(engine, {}), **(training or {})}
    with warnings.catch_warnings():  # StEP without VGG16 weights: a random VGG16 (said in its log)
        warnings.simplefilter("ignore", UserWarning)
        return built, spec.build(built, settings, where, runtime=runtime)


def _synthetic_batch(engine: str, built: Any, size: int, batch: int, generator: torch.Generator) -> Any:
    """One batch as the engine's data kind gives it: uniform noise in [-1, 1], random labels."""
    def images(channels: int) -> torch.Tensor:
        return torch.rand(batch, channels, size, size, generator=generator) * 2 - 1

    def labels() -> torch.Tensor:
        return torch.randint(0, CLASSES, (batch,), generator=generator)

    config = built.config
    if engine in ("funit", "unified"):
        return (images(config["channels"]), labels()), (images(config["channels"]), labels())
    return images(config["channels_a"]), images(config["channels_b"])


class _SyntheticPairs:
    """StEP's training set (it draws images itself): a few synthetic pairs."""

    def __init__(self, built: Any, size: int) -> None:
        generator = torch.Generator().manual_seed(1)
        self.items = list(zip(*_synthetic_batch("step", built, size, 8, generator)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index % len(self.items)]


class _Marks(dict):
    """Wall-clock time at named points of an iteration, taken after the device has finished."""

    def __init__(self, where: torch.device):
        super().__init__()
        self.where = where

    def mark(self, name: str) -> None:
        if self.where.type == "cuda":
            torch.cuda.synchronize(self.where)
        self[name] = time.perf_counter()


def _time_phases(trainer: Any, where: torch.device) -> _Marks:
    """Marks ``translated``, ``dis_stepped`` and ``gen_stepped`` as the trainer's step passes them."""
    marks = _Marks(where)
    translate = trainer.translate

    def timed_translate(*args: Any) -> Any:
        result = translate(*args)
        marks.mark("translated")
        return result

    trainer.translate = timed_translate
    trainer.dis_optimizer.register_step_post_hook(lambda *_: marks.mark("dis_stepped"))
    trainer.gen_optimizer.register_step_post_hook(lambda *_: marks.mark("gen_stepped"))
    return marks


def measure(
    engine: str = "munit",
    preset: str = "paper",
    size: int = 64,
    batch: int = 1,
    iters: int = 5,
    warmup: int = 2,
    device: str = "cpu",
    model: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Median seconds per iteration and per phase (see the module docstring)."""
    from napari_i2i.core.device import resolve_device

    where = resolve_device(device)
    built, trainer = _build_trainer(engine, preset, where, model, training)
    marks = _time_phases(trainer, where)

    generator = torch.Generator().manual_seed(0)
    channels = (built.config["channels_a"], built.config["channels_b"])
    rows = []
    for iteration in range(warmup + iters):
        x_a, x_b = (torch.rand(batch, c, size, size, generator=generator) * 2 - 1 for c in channels)
        marks.clear()
        marks.mark("start")
        cpu_start = time.process_time()
        trainer.step((x_a, x_b), iteration)
        marks.mark("end")
        cpu = time.process_time() - cpu_start
        if iteration >= warmup:
            # a step the fp16 grad scaler skipped (inf gradients) leaves its mark unset: NaN
            at = {name: marks.get(name, float("nan")) for name in ("translated", "dis_stepped", "gen_stepped")}
            rows.append({
                "total": marks["end"] - marks["start"],
                "cpu": cpu,
                "gen_forward": at["translated"] - marks["start"],
                "dis_step": at["dis_stepped"] - at["translated"],
                "gen_loss_backward": at["gen_stepped"] - at["dis_stepped"],
            })
    medians = {key: statistics.median(row[key] for row in rows) for key in ("total", "cpu", *PHASES)}
    return {
        "engine": engine, "preset": preset, "size": size, "batch": batch, "iters": iters,
        "device": str(where), "threads": torch.get_num_threads(), **medians, "per_iteration": rows,
    }


def compare_variants(
    engine: str = "munit",
    preset: str = "paper",
    size: int = 64,
    batch: int = 1,
    rounds: int = 5,
    warmup: int = 2,
    variants: Sequence[str] = tuple(VARIANTS),
    device: str = "cpu",
    training: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Median seconds per iteration of each variant, stepped in turn (see the module docstring);
    ``ratio`` is the first variant's median over the variant's (above 1: faster)."""
    from napari_i2i.core.device import resolve_device
    from trainers.precision import TrainingRuntime

    where = resolve_device(device)
    trainers = {}
    for name in variants:
        variant = VARIANTS[name]
        runtime = TrainingRuntime(where, variant.precision, variant.compiled, backend=_inductor_with(variant.inductor))
        built, trainer = _build_trainer(engine, preset, where, model, training, runtime)
        if variant.fused_optimizers:
            runtime.fuse_optimizer_steps(trainer.optimizers().values())
        if variant.channels_last:
            for network in trainer.modules().values():
                network.to(memory_format=torch.channels_last)  # the same parameters: the optimisers keep them
        if engine == "step":
            trainer.attach_dataset(_SyntheticPairs(built, size))
        trainers[name] = trainer
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for iteration in range(warmup + rounds):
        step_batch = _synthetic_batch(engine, built, size, batch, generator)  # the same batch for every variant
        for name, trainer in trainers.items():
            variant = VARIANTS[name]
            marks = _Marks(where)
            marks.mark("start")
            trainer.step(_channels_last(step_batch) if variant.channels_last else step_batch, iteration)
            marks.mark("end")
            times[name].append(marks["end"] - marks["start"])
    medians = {name: statistics.median(seconds[warmup:]) for name, seconds in times.items()}
    baseline = medians[variants[0]]
    return {
        "engine": engine, "preset": preset, "size": size, "batch": batch, "rounds": rounds,
        "device": str(where), "threads": torch.get_num_threads(),
        "variants": {name: {"seconds": medians[name], "first_step": times[name][0],
                            "ratio": baseline / medians[name]} for name in variants},
    }


def _inductor_with(settings: tuple[tuple[str, Any], ...]) -> Callable[..., Any] | None:
    """Inductor with *settings* as a backend of its own (none: the runtime's default), so that dynamo
    compiles for it anew rather than reuse another variant's graphs of the same network class."""
    if not settings:
        return None
    from torch._inductor.compile_fx import compile_fx

    return functools.partial(compile_fx, config_patches=dict(settings))


def _channels_last(batch: Any) -> Any:
    """*batch* with its images (4-D tensors) in ``torch.channels_last``, labels as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch
    return type(batch)(_channels_last(part) for part in batch)


def _print_variants(row: dict[str, Any]) -> None:
    for name, figures in row["variants"].items():
        ratio = f"{figures['ratio']:>7.2f}×"
        print(f"{row['engine']:>8} {row['preset']:>6} {row['size']:>5} {name:>21} {figures['seconds']:>8.3f} "
              f"{ratio:>8} {figures['first_step']:>10.1f}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="munit", choices=ENGINES,
                        help="munit or unit (the phase split needs a two-domain trainer); every engine with --variants")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (the median is printed)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON line per size instead of a table")
    parser.add_argument("--cycle-off", action="store_true",
                        help="cycle_weight 0: the published MUNIT edges2shoes configuration")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS),
                        help="compare these ways of running the steps, stepped in turn, instead of the phase split")
    args = parser.parse_args(argv)
    training = {"cycle_weight": 0.0} if args.cycle_off else None
    if args.variants:
        _main_variants(args, training)
        return
    if args.engine not in ("munit", "unit"):
        parser.error("the phase split is for munit and unit; use --variants for other engines")
    if not args.json:
        print(f"engine {args.engine}, preset {args.preset}, batch {args.batch}, median of {args.iters} "
              f"after {args.warmup} warm-up, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
        print(f"{'size':>6} {'s/iter':>8} {'gen fwd':>8} {'dis step':>9} {'gen loss+bwd':>13} {'CPU s':>7}  device")
    for size in args.sizes:
        row = measure(args.engine, args.preset, size, args.batch, args.iters, args.warmup, args.device,
                      training=training)
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{size:>6} {row['total']:>8.2f} {row['gen_forward']:>8.2f} {row['dis_step']:>9.2f} "
                  f"{row['gen_loss_backward']:>13.2f} {row['cpu']:>7.2f}  {row['device']}")


def _main_variants(args: argparse.Namespace, training: dict[str, Any] | None) -> None:
    if not args.json:
        from napari_i2i.core.device import resolve_precision, resolve_device, training_compile_pays

        where = resolve_device(args.device)
        print(f"batch {args.batch}, median of {args.iters} rounds after {args.warmup} warm-up, stepped in turn; "
              f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; cycle "
              f"{'off' if args.cycle_off else 'as the preset'}; here auto chooses precision "
              f"{resolve_precision('auto', where)}, compile {training_compile_pays('auto', where, 10**6)} "
              "(for a run of 10⁶ iterations)")
        print(f"{'engine':>8} {'preset':>6} {'size':>5} {'variant':>21} {'s/iter':>8} {'vs 1st':>8} {'first s':>10}")
    for size in args.sizes:
        row = compare_variants(args.engine, args.preset, size, args.batch, args.iters, args.warmup, args.variants,
                               args.device, training)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            _print_variants(row)


if __name__ == "__main__":
    main()
