"""Paired multimodal benchmark: StEP against MUNIT on a stain task with several valid looks.

    OMP_NUM_THREADS=1 python -m benchmarks.paired --out /tmp/i2i_paired --step-iters 3200 --munit-iters 900

The stain task's tiles (``benchmarks.tasks.generate``: the same sources, cells
and splits as ``generate("stain", tile, seed)``; train_a and train_b cells
together are the training inputs, test cells the held-out inputs), but each
tile's target is re-stained with its own random strength: haematoxylin scale
``U(H_SCALE_RANGE)`` and DAB→eosin ``U(DAB_TO_EOSIN_RANGE)``, drawn per tile
from ``--seed`` (:func:`tile_parameters`). So one input has many valid
outputs, and only the target itself says which.

StEP ``small`` (all four stages; ``--step-iters`` split across them in the
ratio of the preset's stage counts) trains on the pairs ``pairs_a/`` ↔
``pairs_b/``; MUNIT ``small`` on the same images as unpaired domains
(domain A = pairs_a, domain B = pairs_b; it never sees the pairing). Scored
on the held-out pairs through the host API (``run_translation``), as in
``benchmarks/quality.py``: each engine with the style of the ground-truth
target itself (StEP's Table 1 metric: L1, PSNR) and with ``--samples``
random styles (metrics averaged over samples; diversity = mean pairwise L1
between an input's samples), the identity, and histogram matching, Reinhard
and Macenko fitted on each input's own target (the reference StEP gets).
``--munit-iters 0`` leaves MUNIT out; ``--step-model-set KEY=VALUE`` sets a
StEP model config key over its preset (e.g. ``input_gate=false``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks import baselines
from benchmarks.quality import predict
from benchmarks.table import parse_setting
from benchmarks.tasks.stain import stain_sources
from benchmarks.tasks.task import Task, tiled_task
from benchmarks.tasks.metrics import markdown_table, score
from napari_i2i.frontends.sample_data import he_like_restain
from trainers.run import make_settings, train

#: Per-tile haematoxylin scale, drawn uniformly (the fixed task uses 1.5).
H_SCALE_RANGE = (1.0, 2.0)
#: Per-tile DAB → eosin factor, drawn uniformly (the fixed task uses 0.5).
DAB_TO_EOSIN_RANGE = (0.2, 1.0)
#: StEP ``small`` stage iterations (trainers/step.py TRAIN_PRESETS): ``--step-iters`` is split in this ratio.
STEP_STAGE_RATIO = {"style": 300, "generator": 600, "finetune": 200, "mapper": 500}


def tile_parameters(names: list[str], seed: int) -> dict[str, tuple[float, float]]:
    """``{file: (h_scale, dab_to_eosin)}``, drawn in sorted-name order from ``seed``."""
    rng = np.random.default_rng([seed, 5])
    names = sorted(names)
    h = rng.uniform(*H_SCALE_RANGE, len(names))
    d = rng.uniform(*DAB_TO_EOSIN_RANGE, len(names))
    return {name: (float(a), float(b)) for name, a, b in zip(names, h, d)}


def paired_task(tile: int = 64, seed: int = 0) -> Task:
    """Splits ``train_a``/``train_b`` (the training pairs), ``test_a``/``test_b`` (held out);
    the cells and splits are those of ``generate("stain", tile, seed)``."""
    sources, record = stain_sources()
    raw, cells = tiled_task(sources, lambda a: a, lambda im: im, tile, seed)  # B = A: the raw tiles
    inputs = {**raw["train_a"], **raw["train_b"]}
    params = tile_parameters([*inputs, *raw["test_a"]], seed)
    splits = {
        "train_a": inputs,
        "train_b": {n: he_like_restain(a, *params[n]) for n, a in inputs.items()},
        "test_a": raw["test_a"],
        "test_b": {n: he_like_restain(a, *params[n]) for n, a in raw["test_a"].items()},
    }
    manifest = {"sources": record, "cells": cells, "h_scale_range": H_SCALE_RANGE,
                "dab_to_eosin_range": DAB_TO_EOSIN_RANGE,
                "parameters": {n: list(p) for n, p in params.items()}}
    return Task("stain_random", splits, manifest)


def write_pairs(task: Task, out_dir: Path) -> tuple[Path, Path]:
    """``out_dir/pairs_a`` and ``out_dir/pairs_b``: the training pairs, same file names."""
    folders = out_dir / "pairs_a", out_dir / "pairs_b"
    for folder, split in zip(folders, ("train_a", "train_b")):
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in task.splits[split].items():
            Image.fromarray(array).save(folder / name)
    (out_dir / "manifest.json").write_text(json.dumps(task.manifest, indent=1))
    return folders


def step_stages(total: int) -> dict[str, int]:
    """``total`` iterations split across StEP's stages in :data:`STEP_STAGE_RATIO` (each ≥ 1)."""
    whole = sum(STEP_STAGE_RATIO.values())
    counts = {k: max(1, total * v // whole) for k, v in STEP_STAGE_RATIO.items()}
    counts["generator"] += max(0, total - sum(counts.values()))
    return {f"{k}_iterations": v for k, v in counts.items()}


def own_target_baselines(name: str, inputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> list[dict]:
    """Histogram matching, Reinhard and Macenko fitted on each input's own target: the same
    reference the engines get for "style of the target"."""
    predictions: dict[str, dict[str, np.ndarray]] = {}
    fallbacks: dict[str, int] = {}
    for tile, image in inputs.items():
        for method, (outputs, failed) in baselines.run_all({tile: image}, [targets[tile]]).items():
            predictions.setdefault(method, {}).update(outputs)
            fallbacks[method] = fallbacks.get(method, 0) + failed
    return [{"task": name, "method": f"{method}, fitted on the target" + (f" ({fallbacks[method]} fallbacks)"
                                                                         if fallbacks[method] else ""),
             **score(targets, outputs)} for method, outputs in predictions.items() if method != "identity"]


def _load(path: Path) -> torch.nn.Module:
    from napari_i2i.core.model_file import load_model

    return load_model(path).model


def run(out: Path, step_iters: int, munit_iters: int, seed: int = 0, samples: int = 3,
        tile: int = 64, batch: int = 4, step_model: dict | None = None) -> dict:
    """Train both engines (MUNIT not when ``munit_iters`` is 0), score them; returns the results
    record (also ``out/results.json``). ``step_model``: StEP model config keys over its preset."""
    out = Path(out)
    task = paired_task(tile, seed)
    pairs_a, pairs_b = write_pairs(task, out / "data")
    test = task.splits["test_b"]
    rows = [{"task": task.name, "method": "identity", **score(test, task.splits["test_a"])}]
    rows += own_target_baselines(task.name, task.splits["test_a"], test)
    times = {}
    common = dict(size=tile, batch=batch, seed=seed, precision="fp32", compile="off")  # scores as measured
    runs = {
        "step": (step_iters, make_settings(
            "step", "small", {"pairs_a": pairs_a, "pairs_b": pairs_b},
            config={"training": step_stages(step_iters), "model": dict(step_model or {})},
            overrides=dict(common, checkpoint_every=step_iters, validate_every=step_iters))),
        "munit": (munit_iters, make_settings(
            "munit", "small", {"domain_a": pairs_a, "domain_b": pairs_b},
            overrides=dict(common, iterations=munit_iters, checkpoint_every=munit_iters,
                           validate_every=munit_iters))),
    }
    if munit_iters == 0:
        del runs["munit"]
    for engine, (iters, settings) in runs.items():
        started = time.perf_counter()
        path = train(out / "runs" / engine, settings, torch.device("cpu"))
        times[engine] = round(time.perf_counter() - started, 1)
        model = _load(path)
        label = f"{engine} small, {settings.iterations} it ({times[engine] / 60:.1f} min)"
        rows.append({"task": task.name, "method": f"{label}, style of the target",
                     **score(test, predict(engine, model, task, 1, "target"))})
        rows.append({"task": task.name, "method": f"{label}, {samples} random styles",
                     **score(test, predict(engine, model, task, samples))})
    table = markdown_table(rows)
    results = {"seed": seed, "tile": tile, "samples": samples, "step_iters": step_iters,
               "munit_iters": munit_iters, "step_model": dict(step_model or {}),
               "train_pairs": len(task.splits["train_a"]), "test_pairs": len(test), "train_seconds": times,
               "rows": rows, "table": table}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--step-iters", type=int, default=1600, help="split across StEP's 4 stages")
    parser.add_argument("--munit-iters", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--step-model-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a StEP model config key over its preset, e.g. input_gate=true (repeatable)")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be at least 2 (diversity compares samples)")
    started = time.perf_counter()
    step_model = dict(parse_setting(item) for item in args.step_model_set)
    results = run(args.out, args.step_iters, args.munit_iters, args.seed, args.samples, args.tile, args.batch,
                  step_model)
    print(results["table"])
    seconds = ", ".join(f"{engine} {value} s" for engine, value in results["train_seconds"].items())
    print(f"training: {seconds}; total {time.perf_counter() - started:.1f} s; {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
