"""Milliseconds per style-explorer preview update: one slider value → the style placed on its
axes → a 256² crop translated (what the explorer's worker does per request), per multimodal
engine at its ``small`` preset (untrained weights: the cost does not depend on them).

The budget is 200 ms per update on 2 CPU cores. Each engine runs ``--warmup`` untimed updates,
then ``--repeats`` timed ones, each with another slider value; the median and the slowest are
printed.

    python benchmarks/style_preview.py --threads 2 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.contract.registry import default_registry
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import save_model
from napari_i2i.core.translate import TranslateOptions
from napari_i2i.frontends.style_explorer_job import ExplorationJob, PreviewRequest, preview, start_exploration

SIDE = 256
BUDGET_MS = 200.0
# engine -> (direction, style mode the exploration starts from; StEP's untrained mapper: references)
ENGINES = {
    "munit": ("a2b", StyleMode.RANDOM),
    "step": ("a2b", StyleMode.REFERENCE),
    "unified": ("to_b", StyleMode.RANDOM),
}


def milliseconds(name: str, folder: Path, warmup: int, repeats: int) -> list[float]:
    direction, mode = ENGINES[name]
    engine = default_registry().get(name)
    torch.manual_seed(0)
    path = folder / f"{name}.safetensors"
    save_model(path, engine, engine.build(engine.config("small")).eval())
    rng = np.random.default_rng(0)
    references = [ImageData(rng.random((64, 64, 3), dtype=np.float32), f"ref{i}", rgb=True) for i in range(2)]
    options = TranslateOptions(direction=direction, mode=mode)
    job = ExplorationJob(path, name, "cpu", options, references if mode is StyleMode.REFERENCE else [])
    exploration = start_exploration(job)
    crop = ImageData(rng.random((SIDE, SIDE, 3), dtype=np.float32), "crop", rgb=True, contrast_limits=(0.0, 1.0))
    times = []
    for step in range(warmup + repeats):
        values = exploration.axes.values.clone()
        values[0] = -2.0 + 4.0 * step / (warmup + repeats)
        started = time.perf_counter()
        preview(exploration, PreviewRequest(values, crop, (0, 0, 0)))
        if step >= warmup:
            times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{SIDE}² preview, {args.threads} CPU thread(s), torch {torch.__version__}; budget {BUDGET_MS:.0f} ms")
    with tempfile.TemporaryDirectory() as folder:
        for name in ENGINES:
            times = milliseconds(name, Path(folder), args.warmup, args.repeats)
            median, slowest = statistics.median(times), max(times)
            verdict = "within" if median <= BUDGET_MS else "OVER"
            print(f"{name:8s} median {median:6.1f} ms  slowest {slowest:6.1f} ms  ({verdict} budget)")


if __name__ == "__main__":
    main()
