"""Milliseconds per style-explorer preview update: one slider value → the style placed on its
axes → a 256² crop translated (what the explorer's worker does per request), per multimodal
engine at its ``small`` preset (untrained weights: the cost does not depend on them).

The budget is 200 ms per update on 2 CPU cores. Each update runs twice, interleaved: *cached*
(the crop's content code kept, as a slider move in the explorer: the decoder only) and
*uncached* (the whole network), so load from other jobs on shared cores falls on both alike;
the ratio is the median of the per-update ratios. ``--precision`` is the Translate widget's
choice (``auto``: bf16 where the CPU has AVX512-BF16/AMX). Each engine runs ``--warmup``
untimed updates, then ``--repeats`` timed ones, each with another slider value. The load
average is printed before and after.

    python benchmarks/style_preview.py --threads 2 --repeats 20 --precision auto
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.contract.registry import default_registry
from napari_i2i.core.device import PRECISION_CHOICES
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import save_model
from napari_i2i.core.translate import TranslateOptions
from napari_i2i.frontends.style_explorer_job import (
    Exploration,
    ExplorationJob,
    PreviewRequest,
    preview,
    start_exploration,
)

SIDE = 256
BUDGET_MS = 200.0
# engine -> (direction, style mode the exploration starts from; StEP's untrained mapper: references)
ENGINES = {
    "munit": ("a2b", StyleMode.RANDOM),
    "step": ("a2b", StyleMode.REFERENCE),
    "unified": ("to_b", StyleMode.RANDOM),
}


def exploration_of(name: str, folder: Path, precision: str) -> Exploration:
    direction, mode = ENGINES[name]
    engine = default_registry().get(name)
    torch.manual_seed(0)
    path = folder / f"{name}.safetensors"
    save_model(path, engine, engine.build(engine.config("small")).eval())
    rng = np.random.default_rng(0)
    references = [ImageData(rng.random((64, 64, 3), dtype=np.float32), f"ref{i}", rgb=True) for i in range(2)]
    options = TranslateOptions(direction=direction, mode=mode, precision=precision)
    return start_exploration(ExplorationJob(path, name, "cpu", options,
                                            references if mode is StyleMode.REFERENCE else []))


def interleaved(exploration: Exploration, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds per update, cached and uncached, one of each per slider value."""
    pixels = np.random.default_rng(1).random((SIDE, SIDE, 3), dtype=np.float32)
    crop = ImageData(pixels, "crop", rgb=True, contrast_limits=(0.0, 1.0))
    cached, uncached = [], []
    for step in range(warmup + repeats):
        values = exploration.axes.values.clone()
        values[0] = -2.0 + 4.0 * step / (warmup + repeats)
        for reuse, times in ((True, cached), (False, uncached)):
            seconds = preview(exploration, PreviewRequest(values, crop, (0, 0, 0)), reuse_content=reuse).seconds
            if step >= warmup:
                times.append(seconds * 1000)
    return cached, uncached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto")
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{SIDE}² preview, {args.threads} CPU thread(s), torch {torch.__version__}; budget {BUDGET_MS:.0f} ms; "
          "load average %.2f %.2f %.2f" % os.getloadavg())
    with tempfile.TemporaryDirectory() as folder:
        for name in args.engines:
            exploration = exploration_of(name, Path(folder), args.precision)
            cached, uncached = interleaved(exploration, args.warmup, args.repeats)
            ratio = statistics.median(u / c for c, u in zip(cached, uncached))
            median = statistics.median(cached)
            verdict = "within" if median <= BUDGET_MS else "OVER"
            print(f"{name:8s} {exploration.precision}  cached median {median:6.1f} ms (slowest {max(cached):6.1f})  "
                  f"uncached median {statistics.median(uncached):6.1f} ms  uncached/cached {ratio:4.2f}×  "
                  f"({verdict} budget)")
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
