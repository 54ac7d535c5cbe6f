"""Multi-domain benchmark (the ``unified`` engine): three stain looks of one tissue, exact truth.

    OMP_NUM_THREADS=1 python -m benchmarks.multidomain --out DIR [--iters N] [--seeds 0 1 2]
        [--tile 64] [--samples 3] [--look-spread S] [--no-munit] [--no-ablations]
        [--set KEY=VALUE ...] [--model-set KEY=VALUE ...]

Per seed (the seed deals the cells into training/test and domains, and seeds training):

1. Generates the task (``benchmarks.tasks.multidomain``) into ``DIR/seed_S/data``: one subfolder
   per domain of training tiles (each cell in one domain only: no pairs), the test cells in every
   domain. ``--look-spread S`` (default 0: one look per domain) gives each training tile its own
   look around its domain's, every stain amount times ``exp(u)``, ``u`` uniform in [−S, S].
2. Trains ``unified`` ``small`` three times through ``trainers.run`` (CPU): as configured, with the
   unification term off (``unification_weight = 0``) and with the smoothness term off
   (``smoothness_weight = 0``) — only as configured with ``--no-ablations``; ``--set`` puts a
   training setting over the preset in every one, ``--model-set`` a model setting (e.g.
   ``input_gate=true``); and, unless ``--no-munit``, MUNIT ``small`` on each unordered pair
   of domains at a third of the iterations each (the same total budget as one unified model).
3. Scores every ordered pair of domains on the test cells against their true re-staining
   (L1 0-255, PSNR, SSIM; :mod:`benchmarks.multidomain_measures`): unified with latent styles
   (``--samples`` draws; diversity reported), with the style of a reference (the training tile
   of the target domain nearest its central look; with one look per domain, the first) and with
   the mean style of every training tile of the target domain as references, MUNIT per pair
   likewise, identity and histogram matching.
4. Unification (with vs without L_uni): per domain, the held-out accuracy of a classifier telling
   latent from reference styles (0.5: indistinguishable; the mean over 20 random halves) and the
   style gap, the energy coefficient of the two sets of codes (0: one distribution). Smoothness
   (with vs without L_smooth): along interpolations between two reference styles, the output
   change per unit style step and the coefficient of variation of the per-step changes (lower:
   more even). With the input gate (``--model-set input_gate=true``), its mean opening per target
   domain.

Prints per-seed tables and the worst of the seeds (highest L1, lowest PSNR/SSIM, highest
accuracy and gap, highest variation); writes ``DIR/results.json``. ``--iters 3 --tile 128 --seeds 0``
checks that it runs.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.multidomain_measures import gate_opening, score_pairs, smoothness, unification
from benchmarks.table import parse_setting
from benchmarks.tasks.multidomain import MultiDomainTask, multidomain_task
from napari_i2i.core.model_file import load_model
from trainers.run import make_settings, train

ABLATIONS = {"unified": {}, "unified, no L_uni": {"unification_weight": 0.0},
             "unified, no L_smooth": {"smoothness_weight": 0.0}}
MUNIT_MODELS = 3  # one per unordered pair of the three domains


def write_domains(task: MultiDomainTask, root: Path) -> Path:
    for name, tiles in task.train.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file, tile in tiles.items():
            Image.fromarray(tile).save(root / name / file)
    return root


def _trained(run_dir: Path, engine: str, inputs: dict, loop: dict, training: dict, model: dict | None = None):
    settings = make_settings(engine, "small", inputs, config={**loop, "training": training, "model": model or {}})
    return load_model(train(run_dir, settings), device=torch.device("cpu")).model.eval()


def run_seed(out: Path, seed: int, iters: int | None, tile: int, samples: int, munit: bool,
             ablations: bool = True, settings: dict | None = None, model_settings: dict | None = None,
             look_spread: float = 0.0) -> dict:
    """Train and measure everything for one seed (*settings*, *model_settings*: training and model
    settings over the preset for every unified model)."""
    started = time.perf_counter()
    task = multidomain_task(tile, seed, look_spread)
    root = write_domains(task, out / "data")
    loop = {"size": tile, "seed": seed, "precision": "fp32", "compile": "off",
            **({"iterations": iters} if iters else {})}
    record: dict = {"task": task.manifest, "models": {}, "train_seconds": {}}
    unified = None
    for label, training in list(ABLATIONS.items())[: None if ablations else 1]:
        clock = time.perf_counter()
        model = _trained(out / label.replace(", ", "_").replace(" ", "_"), "unified", {"domains": root}, loop,
                         {**(settings or {}), **training}, model_settings)
        record["train_seconds"][label] = round(time.perf_counter() - clock, 1)
        unified_space = unification(model, task)
        record["models"][label] = {"unification_accuracy": unified_space["accuracy"],
                                   "style_gap": unified_space["gap"], "smoothness": smoothness(model, task)}
        if model.config["input_gate"]:
            record["models"][label]["gate_opening"] = gate_opening(model, task)
        if unified is None:
            unified = model
    per_pair = {}
    if munit:
        clock = time.perf_counter()
        munit_loop = {**loop, "iterations": max(1, (iters or 5_000) // MUNIT_MODELS)}
        for first, second in combinations(task.train, 2):
            model = _trained(out / f"munit_{first}_{second}", "munit",
                             {"domain_a": root / first, "domain_b": root / second}, munit_loop, {})
            per_pair[(first, second)], per_pair[(second, first)] = (model, "a2b"), (model, "b2a")
        record["train_seconds"]["MUNIT per pair (3 models)"] = round(time.perf_counter() - clock, 1)
    record["pairs"] = score_pairs(unified, per_pair, task, samples)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def worst_pairs(seeds: list[dict]) -> list[dict]:
    """Per pair and method, the worst of the seeds, and at how many seeds it beat both baselines (L1)."""
    rows = []
    for position, first in enumerate(seeds[0]["pairs"]):
        same = [record["pairs"][position] for record in seeds]
        wins = 0
        for record, row in zip(seeds, same):
            baselines = [r["l1"] for r in record["pairs"]
                         if r["pair"] == row["pair"] and r["method"] in ("identity", "histogram matching")]
            wins += row["l1"] < min(baselines)
        diversities = [row["diversity"] for row in same if row["diversity"] is not None]
        rows.append({"pair": first["pair"], "method": first["method"], "l1": max(r["l1"] for r in same),
                     "psnr": min(r["psnr"] for r in same), "ssim": min(r["ssim"] for r in same),
                     "diversity": min(diversities) if diversities else None, "wins": wins})
    return rows


def worst_models(seeds: list[dict]) -> dict[str, dict]:
    """Per model: the highest unification accuracy and the highest step variation of the seeds."""
    worst = {}
    for label in seeds[0]["models"]:
        models = [record["models"][label] for record in seeds]
        domains = models[0]["unification_accuracy"]
        worst[label] = {
            "unification_accuracy": {d: max(m["unification_accuracy"][d] for m in models) for d in domains},
            "style_gap": {d: max(m["style_gap"][d] for m in models) for d in domains},
            "step_cv": {d: max(m["smoothness"][d]["step_cv"] for m in models) for d in domains},
            "change_per_unit": {d: float(np.mean([m["smoothness"][d]["change_per_unit"] for m in models]))
                                for d in domains},
        }
    return worst


def print_pairs(rows: list[dict], seeds: int) -> None:
    wins = "wins" in rows[0]
    print("| pair | method | L1 | PSNR | SSIM | diversity |" + (f" beats both baselines (L1), of {seeds} seeds |"
                                                               if wins else "")
          + "\n|---|---|---|---|---|---|" + ("---|" if wins else ""))
    for row in rows:
        diversity = "" if row["diversity"] is None else f"{row['diversity']:.1f}"
        baseline = row["method"] in ("identity", "histogram matching")
        print(f"| {row['pair']} | {row['method']} | {row['l1']:.1f} | {row['psnr']:.2f} | {row['ssim']:.3f} | "
              f"{diversity} |" + ((" |" if baseline else f" {row['wins']} |") if wins else ""))


def print_models(models: dict[str, dict]) -> None:
    domains = list(next(iter(models.values()))["unification_accuracy"])
    print("\nUnification: held-out accuracy telling latent from reference styles (0.5 = one space)")
    print("| model | " + " | ".join(domains) + " |\n|---|" + "---|" * len(domains))
    for label, record in models.items():
        print(f"| {label} | " + " | ".join(f"{record['unification_accuracy'][d]:.2f}" for d in domains) + " |")
    print("\nStyle gap: energy coefficient of latent against reference styles (0 = one distribution)")
    print("| model | " + " | ".join(domains) + " |\n|---|" + "---|" * len(domains))
    for label, record in models.items():
        print(f"| {label} | " + " | ".join(f"{record['style_gap'][d]:.3f}" for d in domains) + " |")
    print("\nSmoothness: coefficient of variation of the per-step output change along interpolations "
          "(lower = more even); mean change (L1 0-255) per unit style step")
    print("| model | " + " | ".join(f"CV {d} | change/unit {d}" for d in domains) + " |\n|---|"
          + "---|---|" * len(domains))
    for label, record in models.items():
        if "step_cv" not in record:
            record = {"step_cv": {d: v["step_cv"] for d, v in record["smoothness"].items()},
                      "change_per_unit": {d: v["change_per_unit"] for d, v in record["smoothness"].items()}}
        print(f"| {label} | " + " | ".join(f"{record['step_cv'][d]:.3f} | {record['change_per_unit'][d]:.2f}"
                                          for d in domains) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iters", type=int, default=None, help="training iterations (default: the preset's)")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--samples", type=int, default=3, help="latent styles per test tile")
    parser.add_argument("--look-spread", type=float, default=0.0,
                        help="each training tile's look around its domain's: stain amounts times exp(U[-S, S])")
    parser.add_argument("--no-munit", action="store_true", help="skip the MUNIT-per-pair baseline")
    parser.add_argument("--no-ablations", action="store_true", help="train unified as configured only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="training",
                        help="a training setting over the preset for every unified model (e.g. identity_weight=5)")
    parser.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE", dest="model",
                        help="a model setting over the preset for every unified model (e.g. input_gate=true)")
    args = parser.parse_args(argv)
    try:
        settings = dict(parse_setting(item) for item in args.training)
        model_settings = dict(parse_setting(item) for item in args.model)
    except ValueError as error:
        parser.error(str(error))
    if args.look_spread < 0:
        parser.error(f"--look-spread must be >= 0, got {args.look_spread}")
    started = time.perf_counter()
    seeds = []
    for seed in args.seeds:
        record = run_seed(args.out / f"seed_{seed}", seed, args.iters, args.tile, args.samples, not args.no_munit,
                          not args.no_ablations, settings, model_settings, args.look_spread)
        seeds.append(record)
        print(f"\n## seed {seed}: {record['task']['train']} training tiles, {record['task']['test_cells']} test "
              f"cells; {record['seconds']} s (training: {record['train_seconds']})")
        print_pairs(record["pairs"], 1)
        print_models(record["models"])
        for label, measures in record["models"].items():
            if "gate_opening" in measures:
                print(f"\n{label}: mean input gate (1: the decoder's image, 0: the input), reference style: "
                      + ", ".join(f"to {d} {g:.2f}" for d, g in measures["gate_opening"].items()))
    results = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "seeds": seeds, "worst": {"pairs": worst_pairs(seeds), "models": worst_models(seeds)}}
    print(f"\n## worst of seeds {args.seeds}")
    print_pairs(results["worst"]["pairs"], len(seeds))
    print_models(results["worst"]["models"])
    results["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{results['seconds']} s; results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
