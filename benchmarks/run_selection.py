"""Does the run score (``trainers.run_score``) rank runs as the ground truth does?

    OMP_NUM_THREADS=1 python -m benchmarks.run_selection --out /tmp/i2i_run_selection

Trains short runs (``--iters``, 200) of each engine's ``small`` preset on each task (generated with
data seed 0, tiles of ``--tile``, 32) over
the settings of :data:`SETTINGS` and the training ``--seeds``, keeps the run score of the last
validation (what ``napari-i2i train`` reports at the end), scores the held-out pairs against their
ground truth (PSNR and L1 from ``benchmarks.tasks.metrics``), and prints per task (all its runs,
every engine), per task and engine, and over the tasks (their mean) the Spearman rank correlation
of the run score with PSNR and with -L1 (1: the same order). Each run's row is appended to
``OUT/runs.jsonl`` as it finishes; ``--report`` prints the tables from that file without
training, with the correlation of each of the score's terms alone (:data:`RECIPES`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

# A user's choices between runs: the preset, and a lower learning rate.
SETTINGS: dict[str, dict] = {"small": {}, "small, lr 1e-4": {"lr": 1e-4}}
# The score and each of its terms alone (higher = better for all), for the recipe comparison.
RECIPES: dict[str, Callable[[Mapping], float]] = {
    "run score (structure - reconstruction - colour gap)": lambda r: r["run_score"],
    "structure": lambda r: r["structure"],
    "-reconstruction": lambda r: -(r["reconstruction"] or 0.0),
    "-colour gap": lambda r: -r["colour_gap"],
    "structure - colour gap": lambda r: r["structure"] - r["colour_gap"],
}


def train_and_score(task, task_dir: Path, engine: str, setting: str, seed: int, args: argparse.Namespace) -> dict:
    """One run: trained, its last run score kept, its test translations scored against ground truth."""
    from benchmarks.quality import predict
    from benchmarks.table_runs import unpaired_scorer
    from trainers.run import make_settings, train

    settings = make_settings(engine, "small", {"domain_a": task_dir / "train_a", "domain_b": task_dir / "train_b"},
                             config={"training": SETTINGS[setting]},
                             overrides=dict(size=args.tile, batch=args.batch, iterations=args.iters, seed=seed,
                                            validate_every=args.iters, checkpoint_every=args.iters,
                                            precision="fp32", compile="off"))
    scores = []
    started = time.perf_counter()
    run_dir = args.out / "runs" / f"{task.name}_{engine}_{setting.replace(' ', '').replace(',', '_')}_seed{seed}"
    path = train(run_dir, settings, torch.device("cpu"), on_score=lambda i, s: scores.append(s))
    seconds = time.perf_counter() - started
    from napari_i2i.core.model_file import load_model

    model = load_model(path).model
    truth = unpaired_scorer(task)(predict(engine, model, task, args.samples))
    return {"task": task.name, "engine": engine, "setting": setting, "seed": seed, "iterations": args.iters,
            "train_s": round(seconds, 1), **scores[-1].record(),
            **{key: truth[key] for key in ("psnr", "l1", "l1_change", "l1_stay") if key in truth}}


def spearman(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Spearman's rank correlation (ties averaged); nan with fewer than 3 runs or a constant side."""
    if len(scores) < 3 or len(set(scores)) < 2 or len(set(truth)) < 2:
        return float("nan")
    return float(spearmanr(scores, truth).statistic)


def correlation_rows(rows: Sequence[dict], recipe: Callable[[Mapping], float]) -> list[tuple[str, int, float, float]]:
    """(group, runs, rho with PSNR, rho with -L1) per task, per task and engine, and their mean over tasks."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["task"], []).append(row)
    for row in rows:
        groups.setdefault(f"{row['task']} / {row['engine']}", []).append(row)
    result = []
    for name, members in groups.items():
        values = [recipe(r) for r in members]
        result.append((name, len(members), spearman(values, [r["psnr"] for r in members]),
                       spearman(values, [-r["l1"] for r in members])))
    tasks = [r for r in result if " / " not in r[0]]
    result.append(("mean over tasks", sum(r[1] for r in tasks), float(np.mean([r[2] for r in tasks])),
                   float(np.mean([r[3] for r in tasks]))))
    return result


def print_report(rows: Sequence[dict]) -> None:
    print("| task | engine | setting | seed | run score | structure | reconstruction | colour gap | diversity "
          "| content lost | PSNR | L1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["task"], r["engine"], r["setting"], r["seed"])):
        reconstruction = "–" if r["reconstruction"] is None else f"{r['reconstruction']:.3f}"
        diversity = "–" if r["diversity"] is None else f"{r['diversity']:.3f}"
        print(f"| {r['task']} | {r['engine']} | {r['setting']} | {r['seed']} | {r['run_score']:.3f} "
              f"| {r['structure']:.3f} | {reconstruction} | {r['colour_gap']:.3f} | {diversity} "
              f"| {r['content_lost'] or '–'} | {r['psnr']:.2f} | {r['l1']:.2f} |")
    for name, recipe in RECIPES.items():
        print(f"\nSpearman rank correlation of {name}:\n")
        print("| runs of | n | with PSNR | with -L1 |\n|---|---|---|---|")
        for group, n, with_psnr, with_l1 in correlation_rows(rows, recipe):
            print(f"| {group} | {n} | {with_psnr:+.2f} | {with_l1:+.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--engines", nargs="+", default=["munit", "unit"])
    parser.add_argument("--tasks", nargs="+", default=["stain", "keep_change"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tile", type=int, default=32, help="tile size of the generated tasks (default 32: "
                        "24 runs of 64² took over an hour on 2 shared cores)")
    parser.add_argument("--samples", type=int, default=2, help="random styles per test input (multimodal engines)")
    parser.add_argument("--report", action="store_true", help="print the tables of OUT/runs.jsonl; train nothing")
    args = parser.parse_args(argv)
    log = args.out / "runs.jsonl"
    if not args.report:
        from benchmarks.tasks.generate import generate
        from benchmarks.tasks.task import write_task

        args.out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        tasks = {name: generate(name, tile=args.tile, seed=0) for name in args.tasks}
        task_dirs = {name: write_task(task, args.out / "data" / name) for name, task in tasks.items()}
        for seed in args.seeds:  # seed by seed: an interrupted benchmark has every group at its first seeds
            for name, task in tasks.items():
                for engine in args.engines:
                    for setting in args.settings:
                        row = train_and_score(task, task_dirs[name], engine, setting, seed, args)
                        with open(log, "a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(json.dumps(row), file=sys.stderr, flush=True)
        print(f"wall time {(time.perf_counter() - started) / 60:.1f} min on {platform.processor() or platform.machine()}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", file=sys.stderr)
    print_report([json.loads(line) for line in log.read_text().splitlines() if line.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
