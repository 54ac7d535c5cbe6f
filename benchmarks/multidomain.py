"""Multi-domain benchmark (the ``unified`` engine): three stain looks of one tissue, exact truth.

    python -m benchmarks.multidomain --out DIR [--iters N] [--tile 64] [--seed 0] [--samples 3]

1. Generates the task (``benchmarks.tasks.multidomain``) into ``DIR/data``: one subfolder per
   domain of training tiles (each cell in one domain only: no pairs), the test cells in every
   domain.
2. Trains ``unified`` ``small`` twice through ``trainers.run`` (CPU): as configured, and with the
   unification term off (``unification_weight = 0``), into ``DIR/run`` and ``DIR/run_no_uni``.
3. Scores every ordered pair of domains on the test cells against their true re-staining:
   latent styles (``--samples`` draws; diversity is reported), the style of a reference (the
   first training tile of the target domain), and the baselines identity and histogram matching
   (to the pooled training tiles of the target domain). L1 (0-255), PSNR, SSIM
   (``benchmarks.tasks.metrics``).
4. Unification, per domain and model: a logistic-regression classifier (torch, L2-regularised)
   learns to tell latent styles from reference styles (the test tiles' codes) on half of each and
   is scored on the other half: held-out accuracy 0.5 means indistinguishable.

Prints markdown tables; writes ``DIR/results.json``. ``--iters 2 --tile 128`` checks that it runs.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import permutations
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.tasks.metrics import histogram_matching_baseline, score
from benchmarks.tasks.multidomain import MultiDomainTask, multidomain_task
from benchmarks.tasks.task import Task
from napari_i2i.contract.engine_api import StyleMode, StyleRequest
from napari_i2i.core.model_file import load_model
from trainers.run import make_settings, train


def write_domains(task: MultiDomainTask, root: Path) -> Path:
    for name, tiles in task.train.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file, tile in tiles.items():
            Image.fromarray(tile).save(root / name / file)
    return root


def to_tensor(tile: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(tile).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [p.permute(1, 2, 0).numpy() for p in pixels]


@torch.inference_mode()
def translations(model, task: MultiDomainTask, source: str, target: str, samples: int) -> dict[str, dict]:
    """Per test file: latent samples and the reference-guided output."""
    reference = to_tensor(next(iter(task.train[target].values())))
    direction = f"to_{target}"
    by_reference = model.condition(StyleRequest(StyleMode.REFERENCE, direction, references=[reference]))
    latent, guided = {}, {}
    for index, (file, tile) in enumerate(sorted(task.test[source].items())):
        styles = model.condition(StyleRequest(StyleMode.RANDOM, direction, n_samples=samples, seed=index))
        latent[file] = to_uint8(model.translate(to_tensor(tile), styles))
        guided[file] = to_uint8(model.translate(to_tensor(tile), by_reference))[0]
    return {"latent": latent, "reference": guided}


def score_pairs(model, task: MultiDomainTask, samples: int) -> list[dict]:
    rows = []
    for source, target in permutations(task.train, 2):
        truth = task.test[target]
        baseline_task = Task("pair", {"test_a": task.test[source], "train_b": task.train[target]})
        predictions = {"identity": dict(task.test[source]),
                       "histogram matching": histogram_matching_baseline(baseline_task),
                       **translations(model, task, source, target, samples)}
        for method, predicted in predictions.items():
            rows.append({"pair": f"{source}→{target}", "method": method, **score(truth, predicted)})
    return rows


def held_out_accuracy(first: torch.Tensor, second: torch.Tensor, seed: int = 0) -> float:
    """Logistic regression telling ``first`` (label 1) from ``second`` (0): accuracy on the held-out half."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.cat([first, second]).float()
    labels = torch.cat([torch.ones(len(first)), torch.zeros(len(second))])
    order = torch.randperm(len(codes), generator=generator)
    train_rows, test_rows = order[: len(order) // 2], order[len(order) // 2:]
    mean, std = codes[train_rows].mean(0), codes[train_rows].std(0) + 1e-6
    codes = (codes - mean) / std
    weight = torch.zeros(codes.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200)

    def closure():
        optimizer.zero_grad()
        logits = codes[train_rows] @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[train_rows])
        loss = loss + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (codes[test_rows] @ weight + bias) > 0
    return float((predicted == labels[test_rows].bool()).float().mean())


def unification(model, task: MultiDomainTask) -> dict[str, float]:
    """Per domain: held-out accuracy of telling latent from reference styles (0.5: one space).
    ``condition`` computes styles without gradients; the classifier needs them, so no inference mode."""
    result = {}
    for name, tiles in task.test.items():
        direction = f"to_{name}"
        references = [model.condition(StyleRequest(StyleMode.REFERENCE, direction, references=[to_tensor(t)])).styles
                      for t in tiles.values()]
        latent = model.condition(StyleRequest(StyleMode.RANDOM, direction, n_samples=len(references), seed=7)).styles
        result[name] = held_out_accuracy(latent, torch.cat(references))
    return result


def print_rows(rows: list[dict]) -> None:
    print("| pair | method | L1 | PSNR | SSIM | diversity |\n|---|---|---|---|---|---|")
    for row in rows:
        diversity = "" if row["diversity"] is None else f"{row['diversity']:.1f}"
        print(f"| {row['pair']} | {row['method']} | {row['l1']:.1f} | {row['psnr']:.2f} | {row['ssim']:.3f} | "
              f"{diversity} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iters", type=int, default=None, help="training iterations (default: the preset's)")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=3, help="latent styles per test tile")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    task = multidomain_task(args.tile, args.seed)
    root = write_domains(task, args.out / "data")
    loop = {"size": args.tile, "seed": args.seed, **({"iterations": args.iters} if args.iters else {})}
    results: dict = {"task": task.manifest, "models": {}}
    for label, training in (("unified", {}), ("unified, no L_uni", {"unification_weight": 0.0})):
        run_dir = args.out / ("run" if not training else "run_no_uni")
        settings = make_settings("unified", "small", {"domains": root}, config={**loop, "training": training})
        model = load_model(train(run_dir, settings), device=torch.device("cpu")).model.eval()
        results["models"][label] = {"unification_accuracy": unification(model, task)}
        if not training:
            results["pairs"] = score_pairs(model, task, args.samples)
    print(f"multidomain task: {task.manifest['train']} training tiles, {task.manifest['test_cells']} test cells")
    print_rows(results["pairs"])
    print("\n| model | " + " | ".join(task.train) + " |\n|---|" + "---|" * len(task.train))
    for label, record in results["models"].items():
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in record["unification_accuracy"].values()) + " |")
    results["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{results['seconds']} s; results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
