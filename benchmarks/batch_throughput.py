"""Throughput of ``napari-i2i translate`` on a folder of images: dask workers vs one process.

Writes ``--count`` RGB TIFFs of ``--size``² (a seeded pattern plus noise, into a
temporary folder that is removed afterwards) and an untrained MUNIT model of
``--preset`` (default ``small``: the weights do not change the arithmetic, so
untrained weights time the same as trained ones). Then, each in a fresh process
timed from its start to its end (Python start, ``import torch``, model loads,
cluster start and close all included):

* the in-process loop: one process reads, translates and writes the files one
  after another with the model loaded once (``--loop-threads`` torch threads);
* ``napari-i2i translate MODEL FOLDER -o OUT --workers N --threads T`` for each N
  of ``--workers`` and T of ``--threads`` with N × T at most the CPU cores (a
  local dask.distributed cluster of N processes of T torch threads each).

Arithmetic is pinned (``--precision fp32 --compile off``). ``--rounds N`` runs the
configurations in turn N times and keeps each one's fastest (the machine may be
shared: the load average before and after is printed). Prints a line per finished
run (with the load average then), then a Markdown table of wall seconds, images
per minute and the median seconds per image (the loop's own timing; for workers,
the report's: start-up excluded).

    python benchmarks/batch_throughput.py --count 64 --size 1024 --workers 1 2 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from napari_i2i.core.constants import DEFAULT_TILE

PINNED = ["--precision", "fp32", "--compile", "off"]


def write_inputs(folder: Path, count: int, size: int) -> list[Path]:
    """*count* deterministic RGB uint8 TIFFs of size²: smooth stripes plus seeded noise."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    paths = []
    for index in range(count):
        phase = index / max(count, 1)
        channels = [np.sin(2 * np.pi * (3 * x + 2 * y + phase + shift)) for shift in (0.0, 0.33, 0.66)]
        image = 127.5 * (1 + np.stack(channels, axis=-1)) * 0.8 + rng.uniform(0, 51, (size, size, 3))
        path = folder / f"field_{index:03d}.tif"
        tifffile.imwrite(path, image.astype(np.uint8), photometric="rgb")
        paths.append(path)
    return paths


def write_model(path: Path, preset: str) -> None:
    import torch

    from engines.munit import MunitEngine
    from napari_i2i.core.model_file import save_model

    torch.manual_seed(0)
    engine = MunitEngine()
    save_model(path, engine, engine.build(engine.config(preset)).eval(), provenance={"note": "benchmark"})


def loop(model: Path, folder: Path, out: Path, threads: int, tile: int) -> None:
    """The in-process loop (run in a child process): prints the seconds per image as JSON."""
    import torch

    from napari_i2i.core.device import resolve_device
    from napari_i2i.core.image_io import read_image, write_images
    from napari_i2i.core.job_progress import run_to_completion
    from napari_i2i.core.model_file import load_model
    from napari_i2i.core.translate import TranslateOptions, run_translation

    torch.set_num_threads(threads)
    loaded = load_model(model, device=resolve_device("cpu"))
    options = TranslateOptions(direction="a2b", tile=tile, precision="fp32", compile="off")
    out.mkdir()
    seconds = []
    for path in sorted(folder.glob("*.tif")):
        start = time.perf_counter()
        [result] = run_to_completion(run_translation(loaded, [read_image(path)], options))
        write_images([(out / f"{path.stem}_a2b.tif", result.data, result.rgb)])
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"per_image": seconds}))


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of *command* in a fresh process, and the finished process (output captured)."""
    environment = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(),
                                                                            os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done


# A report line of a finished file: "  ok       IN -> OUT (8.3 s)".
REPORTED_SECONDS = re.compile(r"^  ok .*\(([0-9.]+) s\)$", re.MULTILINE)


def runs(args: argparse.Namespace, model: Path, root: Path) -> dict[str, Callable[[Path], list[float]]]:
    """Each configuration by name: a function of an output folder running it, returning the
    seconds per image (the loop's own timing; the report's for workers)."""
    configurations = {}
    for threads in args.loop_threads:
        def run_loop(out: Path, threads: int = threads) -> list[float]:
            _, done = timed([sys.executable, __file__, "--loop", str(model), str(root / "in"), str(out),
                             "--loop-threads", str(threads), "--tile", str(args.tile)])
            return json.loads(done.stdout)["per_image"]

        configurations[f"in-process loop, {threads} torch thread(s)"] = run_loop
    for workers in args.workers:
        for threads in args.threads:
            if workers * threads > (os.cpu_count() or 1):
                continue

            def run_workers(out: Path, workers: int = workers, threads: int = threads) -> list[float]:
                _, done = timed([sys.executable, "-m", "napari_i2i", "translate", str(model), str(root / "in"),
                                 "-o", str(out), "--workers", str(workers), "--threads", str(threads),
                                 "--tile", str(args.tile), "--quiet", *PINNED])
                return [float(seconds) for seconds in REPORTED_SECONDS.findall(done.stderr)]

            configurations[f"`--workers {workers} --threads {threads}`"] = run_workers
    return configurations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help=f"tile size (default {DEFAULT_TILE}, as the CLI)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads per worker")
    parser.add_argument("--loop-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, in turn; the fastest run counts")
    parser.add_argument("--loop", nargs=3, type=Path, metavar=("MODEL", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        loop(*args.loop, threads=args.loop_threads[0], tile=args.tile)
        return

    best: dict[str, tuple[float, list[float]]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="batch_throughput_") as temporary:
        root = Path(temporary)
        (root / "in").mkdir()
        write_inputs(root / "in", args.count, args.size)
        model = root / f"munit_{args.preset}.safetensors"
        write_model(model, args.preset)
        for round_ in range(args.rounds):
            for index, (name, run) in enumerate(runs(args, model, root).items()):
                start = time.perf_counter()
                per_image = run(root / f"out_{round_}_{index}")
                seconds = time.perf_counter() - start
                print(f"{name}: {seconds:.1f} s for {args.count} images (round {round_ + 1}; 1-minute load average "
                      f"{os.getloadavg()[0]:.1f})", flush=True)  # a long run shows how far it got
                if name not in best or seconds < best[name][0]:
                    best[name] = seconds, sorted(per_image)
    print(f"{args.count} images of {args.size}² RGB, MUNIT {args.preset} (untrained), tile {args.tile}, fp32, "
          f"{os.cpu_count()} CPU cores, fastest of {args.rounds} round(s); 1-minute load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| run | wall s | images/min | s per image (median) |")
    print("| --- | --- | --- | --- |")
    for name, (seconds, per_image) in best.items():
        print(f"| {name} | {seconds:.1f} | {60 * args.count / seconds:.1f} | {per_image[len(per_image) // 2]:.2f} |")


if __name__ == "__main__":
    main()
