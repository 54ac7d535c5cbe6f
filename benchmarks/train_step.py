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
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

PHASES = ("gen_forward", "dis_step", "gen_loss_backward")


def _build_trainer(engine: str, preset: str, where: torch.device, model: dict[str, Any] | None,
                   training: dict[str, Any] | None) -> tuple[Any, Any]:
    """``(built networks, trainer)`` of ``engine``'s ``preset``, seeded, with overrides."""
    from napari_i2i.contract.registry import default_registry

    registry = default_registry()
    networks = registry.get(engine)
    spec = registry.trainer(engine)
    torch.manual_seed(0)
    built = networks.build(networks.config(preset, **(model or {})))
    return built, spec.build(built, {**spec.presets[preset], **(training or {})}, where)


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="munit", choices=("munit", "unit"))
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (the median is printed)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="one JSON line per size instead of a table")
    args = parser.parse_args(argv)
    if not args.json:
        print(f"engine {args.engine}, preset {args.preset}, batch {args.batch}, median of {args.iters} "
              f"after {args.warmup} warm-up, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
        print(f"{'size':>6} {'s/iter':>8} {'gen fwd':>8} {'dis step':>9} {'gen loss+bwd':>13} {'CPU s':>7}  device")
    for size in args.sizes:
        row = measure(args.engine, args.preset, size, args.batch, args.iters, args.warmup, args.device)
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{size:>6} {row['total']:>8.2f} {row['gen_forward']:>8.2f} {row['dis_step']:>9.2f} "
                  f"{row['gen_loss_backward']:>13.2f} {row['cpu']:>7.2f}  {row['device']}")


if __name__ == "__main__":
    main()
