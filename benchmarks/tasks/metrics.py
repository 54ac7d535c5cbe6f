"""Metrics and baselines for the quality-benchmark tasks (see ``generate.py``).

All images are 8-bit; every metric is computed per test pair on the 0-255
scale and averaged over the test set:

* PSNR (dB, higher is better): ``skimage.metrics.peak_signal_noise_ratio`` with
  ``data_range=255``; identical images (MSE 0, skimage's ``inf``) are capped at
  ``PSNR_CAP_DB`` so a mean stays finite.
* SSIM (higher is better, at most 1): ``skimage.metrics.structural_similarity``
  with ``data_range=255``, its default 7×7 uniform window, ``channel_axis=-1``
  for RGB (mean over channels).
* L1 (lower is better): mean absolute difference in grey levels (0-255).
* Diversity (for multimodal engines): mean pairwise L1 (0-255) between the
  samples translated from the same input with different styles, averaged over
  the inputs. LPIPS is not used: its network weights would have to be
  downloaded, and this benchmark runs offline.

With several samples per input, PSNR/SSIM/L1 are the mean over samples.

Baselines (deterministic, no training, no test targets used):

* ``identity``: the output is the input, converted to the target's channel count
  (grey -> RGB by repeating the channel; RGB -> grey by skimage's ``rgb2gray``).
* ``histogram matching``: ``skimage.exposure.match_histograms`` of each test
  input (converted as for identity) to the *pooled* histogram of all ``train_b``
  images (the train_b tiles stacked into one reference array; per channel for RGB).

    python -m benchmarks.tasks.metrics baselines DIR [--tasks stain fluo2bf glyphs]
    python -m benchmarks.tasks.metrics score TASK_DIR PRED_DIR [--method NAME]

``PRED_DIR`` holds one file per test input with the ``test_a`` file name, or,
for several style samples, sub-folders ``sample_0/``, ``sample_1/``, ... each with
those names.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .task import Task, load_task, read_image

DATA_RANGE = 255
#: PSNR reported for identical images (skimage returns inf).
PSNR_CAP_DB = 100.0


def _check_pair(target: np.ndarray, pred: np.ndarray) -> None:
    if target.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")


def psnr(target: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB on the 0-255 scale, capped at ``PSNR_CAP_DB`` for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    _check_pair(target, pred)
    if np.array_equal(target, pred):
        return PSNR_CAP_DB
    value = peak_signal_noise_ratio(target.astype(np.float64), pred.astype(np.float64),
                                    data_range=DATA_RANGE)
    return float(min(value, PSNR_CAP_DB))


def ssim(target: np.ndarray, pred: np.ndarray) -> float:
    """SSIM with data_range=255 (7×7 window; RGB: channel_axis=-1, mean over channels)."""
    from skimage.metrics import structural_similarity

    _check_pair(target, pred)
    channel_axis = -1 if target.ndim == 3 else None
    return float(structural_similarity(target.astype(np.float64), pred.astype(np.float64),
                                       data_range=DATA_RANGE, channel_axis=channel_axis))


def l1(target: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute difference in grey levels (0-255)."""
    _check_pair(target, pred)
    return float(np.mean(np.abs(target.astype(np.float64) - pred.astype(np.float64))))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"psnr": psnr, "ssim": ssim, "l1": l1}


def diversity(samples: Sequence[np.ndarray]) -> float:
    """Mean pairwise L1 (0-255) between samples translated from one input."""
    if len(samples) < 2:
        raise ValueError("diversity needs at least two samples of the same input")
    return float(np.mean([l1(x, y) for x, y in itertools.combinations(samples, 2)]))


def _as_samples(pred) -> list[np.ndarray]:
    return list(pred) if isinstance(pred, (list, tuple)) else [pred]


def score(targets: Mapping[str, np.ndarray], predictions: Mapping[str, np.ndarray | Sequence[np.ndarray]]) -> dict:
    """Mean PSNR/SSIM/L1 over the paired test set (and diversity when samples > 1).

    ``predictions[name]`` is an array, or a list of style samples of that input.
    Every target must have a prediction.
    """
    missing = sorted(set(targets) - set(predictions))
    if missing:
        raise KeyError(f"{len(missing)} test inputs have no prediction, e.g. {missing[:3]}")
    values = {name: [] for name in METRICS}
    diversities = []
    for file in sorted(targets):
        samples = _as_samples(predictions[file])
        for sample in samples:
            for name, metric in METRICS.items():
                values[name].append(metric(targets[file], sample))
        if len(samples) > 1:
            diversities.append(diversity(samples))
    result = {name: float(np.mean(v)) for name, v in values.items()}
    result["n"] = len(targets)
    result["diversity"] = float(np.mean(diversities)) if diversities else None
    return result


# ---------------------------------------------------------------------------- baselines

def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 image with ``channels`` channels (1 -> 2-D array, 3 -> HxWx3)."""
    have = 1 if image.ndim == 2 else image.shape[-1]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image.reshape(image.shape[:2])[..., None], 3, axis=-1)
    if have == 3 and channels == 1:
        from skimage.color import rgb2gray

        return np.round(rgb2gray(image) * 255.0).astype(np.uint8)
    raise ValueError(f"cannot convert {have} channels to {channels}")


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[-1]


def identity_baseline(task: Task) -> dict[str, np.ndarray]:
    """Output = test input converted to the target's channel count."""
    channels = _channels(next(iter(task.splits["test_b"].values())))
    return {file: to_channels(a, channels) for file, a in task.splits["test_a"].items()}


def histogram_matching_baseline(task: Task) -> dict[str, np.ndarray]:
    """Each test input matched to the pooled histogram of all train_b images."""
    from skimage.exposure import match_histograms

    train_b = [task.splits["train_b"][f] for f in sorted(task.splits["train_b"])]
    channels = _channels(train_b[0])
    reference = np.concatenate(train_b, axis=0)
    out = {}
    for file, a in task.splits["test_a"].items():
        matched = match_histograms(to_channels(a, channels), reference,
                                   channel_axis=-1 if channels == 3 else None)
        out[file] = np.clip(np.round(matched), 0, 255).astype(np.uint8)
    return out


BASELINES: dict[str, Callable[[Task], dict[str, np.ndarray]]] = {
    "identity": identity_baseline,
    "histogram matching": histogram_matching_baseline,
}


def run_baselines(tasks: Sequence[Task]) -> list[dict]:
    """One row per (task, baseline): ``{"task", "method", "n", "psnr", "ssim", "l1", "diversity"}``."""
    rows = []
    for task in tasks:
        for method, baseline in BASELINES.items():
            rows.append({"task": task.name, "method": method, **score(task.splits["test_b"], baseline(task))})
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    """Markdown table of task × method × metric."""
    show_diversity = any(row.get("diversity") is not None for row in rows)
    header = ["task", "method", "test pairs", "PSNR (dB) ↑", "SSIM ↑", "L1 (0-255) ↓"]
    if show_diversity:
        header.append("diversity (L1) ↑")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        cells = [row["task"], row["method"], str(row["n"]),
                 "∞" if math.isinf(row["psnr"]) else f"{row['psnr']:.2f}",
                 f"{row['ssim']:.3f}", f"{row['l1']:.2f}"]
        if show_diversity:
            cells.append("–" if row.get("diversity") is None else f"{row['diversity']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_table(rows: Sequence[dict]) -> None:
    print(markdown_table(rows))


def load_predictions(pred_dir: str | Path, names: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Predictions for ``names`` from ``pred_dir`` (flat, or ``sample_*/`` sub-folders)."""
    pred_dir = Path(pred_dir)
    sample_dirs = sorted(p for p in pred_dir.glob("sample_*") if p.is_dir())
    folders = sample_dirs or [pred_dir]
    return {name: [read_image(folder / name) for folder in folders] for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tasks.metrics",
                                     description="Score predictions or run the baselines on generated tasks.")
    commands = parser.add_subparsers(dest="command", required=True)
    base = commands.add_parser("baselines", help="identity and histogram matching on generated tasks")
    base.add_argument("data", type=Path, help="the --out folder of benchmarks.tasks.generate")
    base.add_argument("--tasks", nargs="+", default=["stain", "fluo2bf", "glyphs"])
    sc = commands.add_parser("score", help="score a method's predictions on one task")
    sc.add_argument("task_dir", type=Path)
    sc.add_argument("pred_dir", type=Path)
    sc.add_argument("--method", default="method")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.command == "baselines":
        tasks = []
        for name in args.tasks:
            if not (args.data / name / "test_a").is_dir():
                print(f"{name}: not generated under {args.data} (run python -m "
                      f"benchmarks.tasks.generate {name} --out {args.data})", file=sys.stderr)
                return 1
            tasks.append(load_task(args.data / name))
        rows = run_baselines(tasks)
    else:
        task = load_task(args.task_dir)
        predictions = load_predictions(args.pred_dir, sorted(task.splits["test_a"]))
        rows = [{"task": task.name, "method": args.method, **score(task.splits["test_b"], predictions)}]
    print_table(rows)
    print(f"\n({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
