"""Few-shot glyph benchmark (FUNIT, issue 4): translate into fonts never seen in training.

    python -m benchmarks.fewshot --out DIR [--iters N] [--tile 32] [--seed 0] [--model FILE] [--set KEY=VALUE ...]

1. Generates the task (``benchmarks.tasks.fewshot``) into ``DIR/data``: training
   fonts as class folders, unseen font families, a source font, example and
   test characters (disjoint), seeded K-shot draws.
2. Trains FUNIT ``small`` on ``DIR/data/train`` through ``trainers.run``
   (``make_settings`` + ``train``, CPU) into ``DIR/run``, or loads ``--model``.
3. Trains a small character classifier (:class:`GlyphClassifier`) on every
   training font's glyphs; its accuracy on the unseen fonts' true glyphs of the
   test characters is the ceiling for "content kept".
4. For every unseen font, draw and K in ``--shots`` (1 and 5): translates the
   source font's glyphs of the test characters with the K example glyphs as
   class examples, through the host API (``napari_i2i.core.translate.run_translation``,
   ``StyleMode.FEW_SHOT``), and scores against the unseen font's true glyphs:
   L1 (0-255), SSIM (``benchmarks.tasks.metrics``) and content kept (the
   classifier's accuracy on the translations). Baselines: identity (the source
   font's glyph) and the nearest training font on the K examples.

Prints a markdown table (method × K) and the wall time; writes ``DIR/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.table import parse_setting
from benchmarks.tasks import fewshot as task_module
from benchmarks.tasks.fewshot import FewShotTask
from benchmarks.tasks.fewshot_baselines import identity_prediction, nearest_font_prediction
from benchmarks.tasks.metrics import score

# Scores are measured in float32, uncompiled: the figures must not depend on the machine's bf16.
FP32 = {"precision": "fp32", "compile": "off"}

ENGINE, PRESET = "funit", "small"
DEFAULT_ITERS = 1200  # ≈ 5–10 min of training on one CPU thread (docs/benchmarks.md)
CLASSIFIER_EPOCHS = 12
#: How the translations are made (recorded in the results).
TRANSLATION_PATH = ("napari_i2i.core.translate.run_translation (StyleMode.FEW_SHOT, "
                    "one ImageData per example glyph)")


# --------------------------------------------------------------------------- classifier

class GlyphClassifier(nn.Module):
    """A tiny CNN: which character is this glyph? (any tile side divisible by 4)."""

    def __init__(self, n_classes: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Linear(2 * width * 16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` -> float ``(N, 1, H, W)`` in [-1, 1] (as the engines see images)."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)[:, None]


def _augment(batch: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    """Random shifts (±``shift`` px; glyph ink keeps a 2 px margin, so nothing wraps) and
    ink contrast (ink darkness × 0.5–1: translations can be greyer than rendered glyphs)."""
    out = np.empty_like(batch)
    for i, image in enumerate(batch):
        dy, dx = rng.integers(-shift, shift + 1, 2)
        out[i] = np.roll(image, (int(dy), int(dx)), axis=(0, 1))
    contrast = rng.uniform(0.5, 1.0, (len(batch), 1, 1))
    return np.round(255.0 - (255.0 - out.astype(np.float64)) * contrast).astype(np.uint8)


def train_classifier(images: np.ndarray, labels: np.ndarray, n_classes: int, epochs: int = CLASSIFIER_EPOCHS,
                     seed: int = 0, batch: int = 64, shift: int = 2) -> GlyphClassifier:
    """Adam (lr 1e-3), cross-entropy, shuffled mini-batches, :func:`_augment`; deterministic given seed."""
    torch.manual_seed(seed)
    model = GlyphClassifier(n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng([seed, 21])
    targets = torch.from_numpy(labels.astype(np.int64))
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for start in range(0, len(order), batch):
            index = order[start:start + batch]
            x = _as_input(_augment(images[index], rng, shift))
            loss = nn.functional.cross_entropy(model(x), targets[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def classify(model: GlyphClassifier, images: Sequence[np.ndarray], batch: int = 512) -> np.ndarray:
    """Predicted class index per image."""
    stacked = np.stack(images)
    out = []
    with torch.inference_mode():
        for start in range(0, len(stacked), batch):
            out.append(model(_as_input(stacked[start:start + batch])).argmax(1).numpy())
    return np.concatenate(out)


def char_classifier(task: FewShotTask, epochs: int, seed: int) -> Callable[[Sequence[np.ndarray]], list[str]]:
    """Train on every training font's glyphs of every character; returns glyphs -> characters."""
    images = np.stack([task.glyphs[f][c] for f in task.train_fonts for c in task.chars])
    labels = np.array([i for _ in task.train_fonts for i in range(len(task.chars))])
    model = train_classifier(images, labels, len(task.chars), epochs, seed)
    return lambda glyphs: [task.chars[i] for i in classify(model, list(glyphs))]


def content_accuracy(classify_chars: Callable[[Sequence[np.ndarray]], list[str]],
                     predictions: Mapping[str, np.ndarray]) -> float:
    """Fraction of ``{char: image}`` that the classifier reads as their own character."""
    chars = sorted(predictions)
    read = classify_chars([predictions[c] for c in chars])
    return float(np.mean([r == c for r, c in zip(read, chars)]))


# ---------------------------------------------------------------------------- FUNIT

def train_funit(data_dir: Path, run_dir: Path, iters: int, tile: int, seed: int, batch: int | None,
                log: Callable[[str], None], should_stop: Callable[[], bool] | None = None,
                config: Mapping[str, Mapping] | None = None) -> tuple[Path, float]:
    """FUNIT ``small`` on ``data_dir/train`` (CPU); returns the model file and seconds per iteration.

    ``should_stop`` (e.g. a wall-clock budget) ends training early; the model so far is returned.
    ``config``: ``{"model": {...}, "training": {...}}`` over the preset."""
    from trainers.run import make_settings, train

    # No flips: a mirrored glyph is another character (b/d), a mirrored italic another font.
    overrides = {"iterations": iters, "seed": seed, "size": tile, "resize": tile, "batch": batch,
                 "flip": False, "precision": "fp32", "compile": "off"}  # scores as measured: fp32, eager
    settings = make_settings(ENGINE, PRESET, {"classes": data_dir / "train"}, config=config, overrides=overrides)
    every = max(1, iters // 20)
    started = time.perf_counter()
    last = [0, started]  # iteration and time of the previous report

    def progress(iteration: int, losses: Mapping[str, float]) -> None:
        if iteration % every == 0 or iteration == iters:
            now = time.perf_counter()
            window = (now - last[1]) / max(iteration - last[0], 1)
            last[:] = [iteration, now]
            log(f"funit: iteration {iteration}/{iters}, {window:.3f} s/iter over the last "
                f"{min(every, iteration)}, {(now - started) / 60:.1f} min so far; "
                f"gen {losses.get('gen', float('nan')):.3f}, dis {losses.get('dis', float('nan')):.3f}")

    done = [0]

    def counting(iteration: int, losses: Mapping[str, float]) -> None:
        done[0] = iteration
        progress(iteration, losses)

    path = train(run_dir, settings, torch.device("cpu"), on_progress=counting, should_stop=should_stop)
    if path is None:
        if should_stop is None or not (run_dir / "model.safetensors").is_file():
            raise KeyboardInterrupt("training stopped before the last iteration")
        path = run_dir / "model.safetensors"
    return path, (time.perf_counter() - started) / max(done[0], 1)


def funit_translate(loaded, sources: Mapping[str, np.ndarray],
                    examples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{char: translation}`` of the source glyphs into the class of the example glyphs,
    through the host API (one ``ImageData`` per example: K class examples)."""
    from napari_i2i.contract.engine_api import StyleMode
    from napari_i2i.core.layer_data import ImageData
    from napari_i2i.core.translate import (
        TranslateOptions,
        run_to_completion,
        run_translation,
    )

    direction = next(iter(loaded.model.capabilities.directions))
    names = list(sources)
    results = run_to_completion(run_translation(
        loaded,
        [ImageData(sources[c], f"source {c}", rgb=sources[c].ndim == 3) for c in names],
        TranslateOptions(direction, StyleMode.FEW_SHOT, **FP32),
        [ImageData(image, f"example {c}", rgb=image.ndim == 3) for c, image in examples.items()],
    ))
    return {c: np.asarray(r.data) for c, r in zip(names, results)}


# --------------------------------------------------------------------------- evaluation

def score_method(targets: Mapping[str, np.ndarray], predictions: Mapping[str, np.ndarray],
                 classify_chars: Callable[[Sequence[np.ndarray]], list[str]]) -> dict:
    """L1, SSIM, PSNR (``benchmarks.tasks.metrics.score``) and content accuracy over ``{char: image}``."""
    result = score(targets, predictions)
    return {"l1": result["l1"], "ssim": result["ssim"], "psnr": result["psnr"], "n": result["n"],
            "content": content_accuracy(classify_chars, {c: predictions[c] for c in targets})}


def summarise(cases: Sequence[dict]) -> list[dict]:
    """One row per (method, K): means over cases (each case = one font, draw, K, method),
    weighted by the number of characters scored."""
    rows = {}
    for case in cases:
        rows.setdefault((case["method"], case["k"]), []).append(case)
    out = []
    methods = list(dict.fromkeys(method for method, _ in rows))
    for (method, k), group in sorted(rows.items(), key=lambda item: (methods.index(item[0][0]), item[0][1])):
        weights = np.array([c["n"] for c in group], np.float64)
        mean = lambda key: float(np.average([c[key] for c in group], weights=weights))  # noqa: E731
        out.append({"method": method, "k": k, "n": int(weights.sum()),
                    "fonts": len({c["font"] for c in group}),
                    "l1": mean("l1"), "ssim": mean("ssim"), "psnr": mean("psnr"), "content": mean("content")})
    return out


def evaluate(task: FewShotTask, loaded, classify_chars, shots: Sequence[int], funit_label: str = "FUNIT",
             log: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Every (unseen font, draw, K) for FUNIT (when ``loaded``) and both baselines: one case each."""
    cases = []
    sources = identity_prediction(task)
    for index, font in enumerate(task.test_fonts):
        targets = {c: task.glyphs[font][c] for c in task.test_chars}
        group = task.faces[font].group
        baseline_scores: dict[str, dict] = {}  # the baselines' outputs depend on the chosen font only

        def baseline(name: str, predictions: Mapping[str, np.ndarray]) -> dict:
            if name not in baseline_scores:
                baseline_scores[name] = score_method(targets, predictions, classify_chars)
            return baseline_scores[name]
        for draw in range(len(task.draws[font])):
            for k in shots:
                chars = task.examples(font, draw, k)
                base = {"font": font, "group": group, "draw": draw, "k": k, "examples": chars}
                if loaded is not None:
                    examples = {c: task.glyphs[font][c] for c in chars}
                    translated = funit_translate(loaded, sources, examples)
                    cases.append({**base, "method": funit_label,
                                  **score_method(targets, translated, classify_chars)})
                cases.append({**base, "method": "identity (source font)", **baseline(task.source, sources)})
                chosen, nearest = nearest_font_prediction(task, font, draw, k)
                cases.append({**base, "method": "nearest training font", "chosen": chosen,
                              **baseline(chosen, nearest)})
        log(f"evaluated {index + 1}/{len(task.test_fonts)} unseen fonts ({font})")
    return cases


def markdown_table(rows: Sequence[dict]) -> str:
    header = ["method", "K", "unseen fonts", "translations", "L1 (0-255) ↓", "SSIM ↑", "content acc. ↑"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['k']} | {row['fonts']} | {row['n']} | {row['l1']:.2f} | "
                     f"{row['ssim']:.3f} | {100 * row['content']:.1f} % |")
    return "\n".join(lines)


def group_table(cases: Sequence[dict]) -> str:
    """L1 per family group × (method, K)."""
    columns = list(dict.fromkeys((c["method"], c["k"]) for c in cases))
    groups = sorted({c["group"] for c in cases})
    header = ["group", *(f"{m}, K={k}" for m, k in columns)]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for group in groups:
        cells = [group]
        for method, k in columns:
            chosen = [c for c in cases if c["group"] == group and c["method"] == method and c["k"] == k]
            cells.append(f"{np.average([c['l1'] for c in chosen], weights=[c['n'] for c in chosen]):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar(rows: Sequence[dict], method: str) -> dict | None:
    """Issue 4's bar: 5-shot beats 1-shot and both beat identity, on L1."""
    l1 = {(r["method"], r["k"]): r["l1"] for r in rows}
    needed = [(method, 1), (method, 5), ("identity (source font)", 1)]
    if not all(key in l1 for key in needed):
        return None
    one, five, identity = (l1[key] for key in needed)
    return {"5-shot < 1-shot": five < one, "1-shot < identity": one < identity,
            "5-shot < identity": five < identity, "met": five < one < identity}


# ---------------------------------------------------------------------------------- main

def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _timed(times: dict, key: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        times[key] = round(time.perf_counter() - started, 1)


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fewshot",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="DIR: data/, run/ and results.json go here")
    parser.add_argument("--iters", type=int, default=DEFAULT_ITERS,
                        help=f"FUNIT training iterations (default {DEFAULT_ITERS})")
    parser.add_argument("--batch", type=int, help="training batch (default: the small preset's, 4)")
    parser.add_argument("--model", type=Path, help="a trained FUNIT model file: skip training")
    parser.add_argument("--shots", type=int, nargs="+", default=list(task_module.SHOTS),
                        help="K values (default 1 5)")
    parser.add_argument("--classifier-epochs", type=int, default=CLASSIFIER_EPOCHS,
                        help=f"character classifier epochs (default {CLASSIFIER_EPOCHS})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="training",
                        help="a training setting over the small preset (e.g. classmate_weight=0)")
    task_module.add_task_arguments(parser)
    args = parser.parse_args(argv)
    try:
        args.training = dict(parse_setting(item) for item in args.training)
    except ValueError as error:
        parser.error(str(error))
    if min(args.shots) < 1:
        parser.error("--shots must be >= 1")
    if args.model is not None and args.training:
        parser.error("--set changes training; with --model nothing is trained")
    return args


def _model(args: argparse.Namespace, data_dir: Path) -> tuple[Path, str, float | None]:
    """``(model file, its label in the table, seconds per training iteration or None)``:
    the ``--model`` file, or a FUNIT ``small`` run trained on the task's training fonts."""
    if args.model is not None:
        return args.model, f"FUNIT small ({args.model.name})", None
    model_path, seconds_per_iter = train_funit(data_dir, args.out / "run", args.iters, args.tile,
                                               args.seed, args.batch, _log, config={"training": args.training})
    settings = "".join(f", {key}={value}" for key, value in args.training.items())
    return model_path, f"FUNIT small{settings}, {args.iters} it", seconds_per_iter


def _classifier_report(task: FewShotTask, classify_chars) -> dict:
    """The classifier's accuracy on the unseen fonts' true glyphs (the ceiling) and on the source font."""
    ceiling = {font: content_accuracy(classify_chars, {c: task.glyphs[font][c] for c in task.test_chars})
               for font in task.test_fonts}
    return {"ceiling_mean": float(np.mean(list(ceiling.values()))), "ceiling_per_font": ceiling,
            "source_font_accuracy": content_accuracy(classify_chars,
                                                     {c: task.glyphs[task.source][c] for c in task.chars})}


def _print_report(rows: list[dict], cases: list[dict], classifier: dict, passed: dict | None,
                  times: dict, seconds_per_iter: float | None) -> None:
    print(markdown_table(rows))
    print(f"\nContent ceiling: the classifier reads {100 * classifier['ceiling_mean']:.1f} % of the unseen "
          f"fonts' true glyphs of the test characters correctly "
          f"({100 * classifier['source_font_accuracy']:.1f} % of the source font's).")
    print("\nL1 per unseen family group:\n")
    print(group_table(cases))
    if passed is not None:
        print(f"\nBar (5-shot < 1-shot < identity on L1): {'met' if passed['met'] else 'not met'} "
              f"({', '.join(f'{k}: {v}' for k, v in passed.items() if k != 'met')})")
    spi = f" at {seconds_per_iter:.3f} s/iter" if seconds_per_iter is not None else " (loaded)"
    print(f"\nWall time {times['total_s'] / 60:.1f} min: data {times['data_s']} s, training "
          f"{times['training_s']} s{spi}, classifier {times['classifier_s']} s, evaluation "
          f"{times['evaluation_s']} s; {torch.get_num_threads()} torch thread(s).")


def main(argv: list[str] | None = None) -> int:
    args = _parse_arguments(argv)
    from napari_i2i.core.model_file import load_model

    started = time.perf_counter()
    times: dict[str, float] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    with _timed(times, "data_s"):
        try:
            task = task_module.task_from_arguments(args, max_shots=max(args.shots))
        except (task_module.MissingData, ValueError) as error:
            print(f"fewshot: FAILED: {error}", file=sys.stderr)
            return 1
        data_dir = task_module.write_task(task, args.out / "data")
    _log(task.describe())
    with _timed(times, "training_s"):
        model_path, label, seconds_per_iter = _model(args, data_dir)
    loaded = load_model(model_path, engine=ENGINE)
    loaded.model.eval()
    seen_unseen = set(loaded.info.provenance.get("training", {}).get("classes") or ()) & set(task.test_fonts)
    if seen_unseen:
        print("fewshot: FAILED: the model was trained on fonts this task holds out: "
              + ", ".join(sorted(seen_unseen)), file=sys.stderr)
        return 1
    with _timed(times, "classifier_s"):
        classify_chars = char_classifier(task, args.classifier_epochs, args.seed)
        classifier = _classifier_report(task, classify_chars)
    with _timed(times, "evaluation_s"):
        cases = evaluate(task, loaded, classify_chars, args.shots, label, _log)
    rows = summarise(cases)
    times["total_s"] = round(time.perf_counter() - started, 1)
    passed = bar(rows, label)
    _print_report(rows, cases, classifier, passed, times, seconds_per_iter)

    results = {
        "command": "python -m benchmarks.fewshot " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(model_path), "translation_path": TRANSLATION_PATH,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "task": {"manifest": str(data_dir / "manifest.json"), "describe": task.describe(),
                 "source": task.source, "train_fonts": task.train_fonts, "test_fonts": task.test_fonts,
                 "example_chars": task.example_chars, "test_chars": task.test_chars},
        "rows": rows, "bar": passed,
        "classifier": {"epochs": args.classifier_epochs, **classifier},
        "times": {**times, "seconds_per_iter": seconds_per_iter, "torch_threads": torch.get_num_threads()},
        "cases": cases,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    _log(f"results: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
