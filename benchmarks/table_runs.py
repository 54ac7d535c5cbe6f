"""One seed of one task for ``python -m benchmarks.table``: the baselines' rows and each engine's.

A row is ``{"task", "method", "k", "kind", **metrics}`` (``kind``: ``baseline`` or
``engine``; engine rows also carry ``iterations`` and ``train_s``). Engines train their
``small`` preset through ``trainers.run`` with a wall-clock stop (``should_stop``),
are scored with the per-task code of ``benchmarks.quality`` and ``benchmarks.fewshot``,
and the baselines (``benchmarks.baselines``) are fitted on the images the engines get.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks import baselines
from benchmarks.tasks.metrics import score


@dataclass(frozen=True)
class RunOptions:
    """What every run of one table shares."""

    minutes: float  # wall-clock budget of one training run
    iters: int | None  # at most this many iterations (None: the preset's)
    batch: int
    samples: int
    log: Callable[[str], None]
    training: Mapping[str, object] = field(default_factory=dict)  # trainer settings over the preset (--set)
    score_only: bool = False  # score the unpaired runs an earlier table left in DIR/runs, train nothing
    model: Mapping[str, object] = field(default_factory=dict)  # model config keys over the preset (--model-set)

    def run_config(self) -> dict[str, dict[str, object]]:
        """The run config every trained engine gets: ``--model-set`` and ``--set`` over its preset."""
        return {"model": dict(self.model), "training": dict(self.training)}


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def deadline(minutes: float) -> Callable[[], bool]:
    """``should_stop`` for a wall-clock budget starting now."""
    end = time.perf_counter() + 60.0 * minutes
    return lambda: time.perf_counter() >= end


def _trained(run_dir: Path) -> tuple[torch.nn.Module, int]:
    """The model a (finished or stopped) run wrote and the iterations it trained."""
    from napari_i2i.core.model_file import load_model

    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise RuntimeError(f"{run_dir}: the budget ended before one iteration was trained")
    loaded = load_model(path)
    return loaded.model, int(loaded.info.provenance.get("training", {}).get("iterations", 0))


def _logged_seconds(run_dir: Path) -> float:
    """The training seconds of the last logged iteration of a run."""
    import json

    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return max((json.loads(line).get("seconds", 0.0) for line in lines), default=0.0)


# ------------------------------------------------------------------------- unpaired

def unpaired_scorer(task) -> Callable[[Mapping], dict]:
    """The task's metrics: keep_change's region errors, digits' judge, else PSNR/SSIM/L1."""
    if task.name == "keep_change":
        from benchmarks.tasks.keep_change import keep_change_scores

        return lambda predictions: keep_change_scores(task, predictions)
    if task.name == "digits":
        from benchmarks.tasks.digits import DigitJudge, digits_scores

        judge = DigitJudge(task)
        return lambda predictions: digits_scores(task, predictions, judge)
    return lambda predictions: score(task.splits["test_b"], predictions)


def train_unpaired(engine: str, task_dir: Path, run_dir: Path, tile: int, seed: int,
                   options: RunOptions) -> tuple[torch.nn.Module, int, float]:
    """``engine``'s ``small`` preset on ``task_dir``'s unpaired halves, within the budget (or, with
    ``score_only``, the model an earlier run left in ``run_dir`` and the seconds its log gives)."""
    from trainers.run import make_settings, train

    if options.score_only:
        model, iterations = _trained(run_dir)
        return model, iterations, _logged_seconds(run_dir)

    settings = make_settings(engine, "small", {"domain_a": task_dir / "train_a", "domain_b": task_dir / "train_b"},
                             config=options.run_config(),
                             overrides=dict(size=tile, batch=options.batch, iterations=options.iters, seed=seed,
                                            precision="fp32", compile="off"))
    settings.validate_every = settings.checkpoint_every = settings.iterations  # no time lost on either
    started = time.perf_counter()
    train(run_dir, settings, torch.device("cpu"), should_stop=deadline(options.minutes))
    model, iterations = _trained(run_dir)
    return model, iterations, time.perf_counter() - started


def unpaired_rows(name: str, engines: Sequence[str], tile: int, seed: int, out: Path,
                  options: RunOptions) -> list[dict]:
    """Baselines fitted on train_b, then each engine trained on the halves (own and matched styles)."""
    from benchmarks.quality import predict
    from benchmarks.tasks.generate import generate
    from benchmarks.tasks.task import write_task
    from napari_i2i.contract.engine_api import StyleMode

    task = generate(name, tile=tile, seed=seed)
    task_dir = write_task(task, out / "data" / f"{name}_seed{seed}")
    judge = unpaired_scorer(task)
    references = [task.splits["train_b"][n] for n in sorted(task.splits["train_b"])]
    rows = []
    for method, (predictions, fallbacks) in baselines.run_all(task.splits["test_a"], references).items():
        rows.append({"method": method, "kind": "baseline", "fallbacks": fallbacks, **judge(predictions)})
    for engine in engines:
        options.log(f"{name} seed {seed}: {'scoring' if options.score_only else 'training'} {engine}")
        model, iterations, seconds = train_unpaired(engine, task_dir, out / "runs" / f"{name}_{engine}_seed{seed}",
                                                    tile, seed, options)
        run = {"kind": "engine", "iterations": iterations, "train_s": round(seconds, 1)}
        rows.append({"method": f"{engine} small", **run, **judge(predict(engine, model, task, options.samples))})
        if StyleMode.MATCHED in model.capabilities.style_modes:
            matched = predict(engine, model, task, 1, "train_b_matched")
            rows.append({"method": f"{engine} small, matched train_b style", **run, **judge(matched)})
    return [{"task": name, "k": None, **row} for row in rows]


# ------------------------------------------------------------------------- few-shot

def _mean_rows(cases: Sequence[dict], task_name: str) -> list[dict]:
    """Cases (one per class, draw, K, method) averaged per (method, K)."""
    grouped: dict[tuple[str, int], list[dict]] = {}
    for case in cases:
        grouped.setdefault((case["method"], case["k"]), []).append(case)
    rows = []
    for (method, k), group in grouped.items():
        keys = [key for key in ("psnr", "ssim", "l1", "fallbacks") if key in group[0]]
        first = {key: group[0][key] for key in ("kind", "iterations", "train_s") if key in group[0]}
        rows.append({"task": task_name, "method": method, "k": k, **first,
                     **{key: float(np.mean([c[key] for c in group])) for key in keys}})
    return rows


def _stain_cases(task, method_outputs: Callable[[str, list[str], int], dict[str, tuple[dict, int]]]) -> list[dict]:
    """Every (unseen look, draw, K) scored for each method ``method_outputs`` returns."""
    cases = []
    sources = {cell: task.render(task.manifest["source_look"], cell) for cell in task.test_cells}
    for look in task.test_looks:
        targets = {cell: task.render(look, cell) for cell in task.test_cells}
        for draw in range(len(task.draws[look])):
            for k in (1, 5):
                chosen = task.examples(look, draw, k)
                for method, (predictions, fallbacks, kind) in method_outputs(look, chosen, sources).items():
                    metrics = score(targets, predictions)
                    cases.append({"method": method, "k": k, "kind": kind, "fallbacks": fallbacks,
                                  **{key: metrics[key] for key in ("psnr", "ssim", "l1")}})
    return cases


def fewshot_stain_rows(engines: Sequence[str], tile: int, seed: int, out: Path, options: RunOptions) -> list[dict]:
    """Stain looks as classes: baselines fitted on the K references; FUNIT with them as examples."""
    from benchmarks.fewshot import funit_translate, train_funit
    from benchmarks.tasks.fewshot_stain import fewshot_stain_task, write_task
    from napari_i2i.core.model_file import load_model

    task = fewshot_stain_task(tile, seed)
    data_dir = write_task(task, out / "data" / f"fewshot_stain_seed{seed}")

    def baseline_outputs(look, chosen, sources):
        references = [task.render(look, cell) for cell in chosen]
        outputs = {m: (p, f, "baseline") for m, (p, f) in baselines.run_all(sources, references).items()}
        renderings = {c: [task.render(c, cell) for cell in chosen] for c in task.train_looks}
        nearest = baselines.nearest_class(references, renderings)
        outputs["nearest training class"] = ({cell: task.render(nearest, cell) for cell in sources}, 0, "baseline")
        return outputs

    rows = _mean_rows(_stain_cases(task, baseline_outputs), "fewshot_stain")
    for engine in engines:
        options.log(f"fewshot_stain seed {seed}: training {engine} for at most {options.minutes} min")
        started = time.perf_counter()
        path, _ = train_funit(data_dir, out / "runs" / f"fewshot_stain_{engine}_seed{seed}",
                              options.iters or _preset_iterations(engine), tile, seed, options.batch, options.log,
                              should_stop=deadline(options.minutes), config=options.run_config())
        seconds = time.perf_counter() - started
        loaded = load_model(path, engine=engine)
        loaded.model.eval()
        iterations = int(loaded.info.provenance.get("training", {}).get("iterations", 0))

        def engine_outputs(look, chosen, sources, loaded=loaded):
            examples = {cell: task.render(look, cell) for cell in chosen}
            return {f"{engine} small": (funit_translate(loaded, sources, examples), 0, "engine")}

        for row in _mean_rows(_stain_cases(task, engine_outputs), "fewshot_stain"):
            rows.append({**row, "iterations": iterations, "train_s": round(seconds, 1)})
    return rows


def _preset_iterations(engine: str) -> int:
    from napari_i2i.contract.registry import default_registry

    spec = default_registry().trainer(engine)
    return int(default_registry().data_kind(spec.data).loop_presets["small"].get("iterations", 5000))


def fewshot_glyph_rows(engines: Sequence[str], tile: int, seed: int, out: Path, options: RunOptions) -> list[dict]:
    """The few-shot glyph benchmark's evaluation (``benchmarks.fewshot``) for one seed."""
    from benchmarks import fewshot as glyph_bench
    from benchmarks.tasks import fewshot as glyph_task
    from napari_i2i.core.model_file import load_model

    task = glyph_task.build_task(tile=tile, seed=seed)
    data_dir = glyph_task.write_task(task, out / "data" / f"fewshot_glyphs_seed{seed}")
    classify_chars = glyph_bench.char_classifier(task, glyph_bench.CLASSIFIER_EPOCHS, seed)
    runs = {}
    for engine in engines:
        options.log(f"fewshot_glyphs seed {seed}: training {engine} for at most {options.minutes} min")
        started = time.perf_counter()
        path, _ = glyph_bench.train_funit(data_dir, out / "runs" / f"fewshot_glyphs_{engine}_seed{seed}",
                                          options.iters or _preset_iterations(engine), tile, seed, options.batch,
                                          options.log, should_stop=deadline(options.minutes),
                                          config=options.run_config())
        runs[engine] = (load_model(path, engine=engine), round(time.perf_counter() - started, 1))
    cases = glyph_bench.evaluate(task, None, classify_chars, glyph_task.SHOTS)
    rows = [{"task": "fewshot_glyphs", "kind": "baseline", **row} for row in glyph_bench.summarise(cases)]
    for engine, (loaded, seconds) in runs.items():
        loaded.model.eval()
        iterations = int(loaded.info.provenance.get("training", {}).get("iterations", 0))
        label = f"{engine} small"
        engine_cases = [c for c in glyph_bench.evaluate(task, loaded, classify_chars, glyph_task.SHOTS, label)
                        if c["method"] == label]
        rows += [{"task": "fewshot_glyphs", "kind": "engine", "iterations": iterations, "train_s": seconds, **row}
                 for row in glyph_bench.summarise(engine_cases)]
    return [{key: value for key, value in row.items() if key not in ("fonts", "n")} for row in rows]
