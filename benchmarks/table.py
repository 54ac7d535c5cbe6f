"""The whole benchmark table in one command: engines × tasks × seeds, with the baselines.

    python -m benchmarks.table --out DIR [--seeds 0 1 2] [--minutes-per-run 15] \\
        [--engines munit unit funit] [--tasks stain keep_change digits fewshot_stain ...] [--tile N]

For every task and seed: the task is generated (``benchmarks.tasks``), the baselines
(``benchmarks.baselines``) are fitted on the images the engines get and scored, and
every engine whose data kind fits the task trains its ``small`` preset for at most
``--minutes-per-run`` minutes (a wall-clock stop through the training loop's
``should_stop``; ``--iters`` caps the iterations, default the preset's) and is scored
with the task's code. Per method and task the table shows the **worst** seed (by the
task's main metric), the iterations each seed reached, the training time, the wall
time and the machine. Writes ``DIR/table.md`` and ``DIR/results.json`` (every seed's rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.table_runs import RunOptions, log_stderr, fewshot_glyph_rows, fewshot_stain_rows, unpaired_rows

UNPAIRED_TASKS = ("stain", "fluo2bf", "glyphs", "keep_change", "digits")
FEWSHOT_TASKS = ("fewshot_stain", "fewshot_glyphs")
TASKS = (*UNPAIRED_TASKS, *FEWSHOT_TASKS)
#: The data kind an engine must train on for a task (``TrainerSpec.data``).
TASK_DATA = {**{t: "unpaired" for t in UNPAIRED_TASKS}, **{t: "classes" for t in FEWSHOT_TASKS}}
DEFAULT_TILE = {"digits": 32, "fewshot_stain": 32, "fewshot_glyphs": 32}
#: Main metric per task and whether higher is better: it picks the worst seed.
MAIN_METRIC = {"keep_change": ("l1_change", False), "digits": ("digit_kept", True)}
COLUMNS = {
    "keep_change": [("l1_change", "L1 must-change ↓", 2), ("l1_stay", "L1 must-stay ↓", 2),
                    ("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 3)],
    "digits": [("digit_kept", "digit kept ↑", 3), ("looks_typeset", "looks typeset ↑", 3),
               ("l1", "L1 ↓", 2)],
    "fewshot_glyphs": [("l1", "L1 ↓", 2), ("ssim", "SSIM ↑", 3), ("content", "content acc. ↑", 3)],
}
DEFAULT_COLUMNS = [("l1", "L1 ↓", 2), ("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 3)]


def engines_for(task: str, engines: Sequence[str]) -> list[str]:
    """The engines among ``engines`` whose trainer takes the task's kind of data."""
    from napari_i2i.contract.registry import default_registry

    registry = default_registry()
    return [e for e in engines if registry.trainer(e).data == TASK_DATA[task]]


def run_seed(task: str, engines: Sequence[str], tile: int, seed: int, out: Path, options: RunOptions) -> list[dict]:
    if task in UNPAIRED_TASKS:
        return unpaired_rows(task, engines, tile, seed, out, options)
    if task == "fewshot_stain":
        return fewshot_stain_rows(engines, tile, seed, out, options)
    return fewshot_glyph_rows(engines, tile, seed, out, options)


def worst_rows(rows: Sequence[dict]) -> list[dict]:
    """Per (task, method, K): the worst seed's row by the task's main metric, with every seed's
    iterations and the longest training time."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["task"], row["method"], row.get("k")), []).append(row)
    out = []
    for (task, _, _), group in grouped.items():
        metric, higher = MAIN_METRIC.get(task, ("l1", False))
        worst = (min if higher else max)(group, key=lambda r: r[metric])
        out.append({**worst, "seeds": [r["seed"] for r in group],
                    "iterations_per_seed": [r.get("iterations") for r in group],
                    "train_s_max": max((r.get("train_s") or 0.0) for r in group)})
    return out


def _keep_change_bar(rows: Sequence[dict]) -> dict[tuple, bool]:
    """Per keep_change method: the issue's bar met at every seed (against that seed's identity)."""
    from benchmarks.tasks.keep_change import meets_bar

    identity = {r["seed"]: r for r in rows if r["task"] == "keep_change" and r["method"] == "identity"}
    met: dict[tuple, bool] = {}
    for row in rows:
        if row["task"] == "keep_change" and row["seed"] in identity:
            key = (row["method"], row.get("k"))
            met[key] = met.get(key, True) and meets_bar(row, identity[row["seed"]])
    return met


def markdown(rows: Sequence[dict], header: dict) -> str:
    """The table file: how it was made, then one table per task."""
    lines = [f"# Benchmark table\n\n`{header['command']}`\n",
             f"Machine: {header['machine']}. Wall time {header['wall_s'] / 60:.1f} min. "
             f"Each row: the worst of seeds {', '.join(map(str, header['seeds']))} by the task's main metric "
             f"(its values are that seed's); budget {header['minutes_per_run']} min per training run"
             + "".join(f", {k} = {v}" for k, v in header.get("training", {}).items()) + ".\n"]
    bar = _keep_change_bar(rows)
    for task in dict.fromkeys(r["task"] for r in rows):
        chosen = [r for r in worst_rows(rows) if r["task"] == task]
        columns = COLUMNS.get(task, DEFAULT_COLUMNS)
        head = ["method", "K", *(c[1] for c in columns), "worst seed", "iterations", "train min"]
        if task == "keep_change":
            head.append("bar met (all seeds)")
        lines += [f"\n## {task}\n", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for row in chosen:
            cells = [row["method"] + (f" ({row['fallbacks']:.0f} fallbacks)" if row.get("fallbacks") else ""),
                     "–" if row.get("k") is None else str(row["k"]),
                     *(f"{row[key]:.{digits}f}" for key, _, digits in columns), str(row["seed"]),
                     "–" if row["kind"] == "baseline" else " / ".join(map(str, row["iterations_per_seed"])),
                     "–" if row["kind"] == "baseline" else f"{row['train_s_max'] / 60:.1f}"]
            if task == "keep_change":
                cells.append("yes" if bar.get((row["method"], row.get("k"))) else "no")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPU cores, "
            f"{torch.get_num_threads()} torch threads, {gpu}, Python {platform.python_version()}, "
            f"torch {torch.__version__}; training on the CPU")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="DIR: table.md, results.json, data/, runs/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes-per-run", type=float, default=15.0, help="wall-clock budget per training run")
    parser.add_argument("--iters", type=int, help="at most this many iterations per run (default: the preset's)")
    parser.add_argument("--engines", nargs="+", default=["munit", "unit", "funit"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, metavar="TASK",
                        help=f"tasks (default all: {' '.join(TASKS)})")
    parser.add_argument("--tile", type=int, help="tile side for every task (default 64; digits, few-shot: 32)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--samples", type=int, default=3, help="random styles per input (multimodal engines)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="training",
                        help="a training setting over the preset for every trained engine (e.g. identity_weight=5)")
    parser.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE", dest="model",
                        help="a model config key over the preset for every trained engine (e.g. input_gate=true)")
    parser.add_argument("--score-only", action="store_true",
                        help="score the unpaired runs an earlier table left in DIR/runs (train nothing)")
    args = parser.parse_args(argv)
    try:
        args.training = dict(parse_setting(item) for item in args.training)
        args.model = dict(parse_setting(item) for item in args.model)
    except ValueError as error:
        parser.error(str(error))
    if args.minutes_per_run <= 0:
        parser.error("--minutes-per-run must be positive")
    return args


def parse_setting(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, booleans), else a string."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--set and --model-set take KEY=VALUE, not {item!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    options = RunOptions(args.minutes_per_run, args.iters, args.batch, args.samples, log_stderr, args.training,
                         args.score_only, args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks:
        engines = engines_for(task, args.engines)
        tile = args.tile or DEFAULT_TILE.get(task, 64)
        for seed in args.seeds:
            log_stderr(f"{task}, seed {seed}, tile {tile}: engines {', '.join(engines) or 'none'}")
            rows += [{**row, "seed": seed} for row in run_seed(task, engines, tile, seed, args.out, options)]
    header = {"command": "python -m benchmarks.table " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine(), "seeds": args.seeds, "minutes_per_run": args.minutes_per_run,
              "training": args.training, "model": args.model, "wall_s": round(time.perf_counter() - started, 1)}
    table = markdown(rows, header)
    (args.out / "table.md").write_text(table, encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps({**header, "rows": rows}, indent=1, default=str) + "\n")
    print(table)
    log_stderr(f"{args.out / 'table.md'}, {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
