"""Training iterations per second in one process and in several (``napari-i2i train --nproc N``).

Each run is a real ``napari-i2i train munit`` (preset ``small``) on synthetic image folders with
the same global batch; the rate is taken from ``log.jsonl`` between the first and the last
logged iteration, so process start-up, data checks and the first iteration are left out. On the
CPU the cores are shared out: one process gets all ``--threads``, N processes
``threads / N`` each (``OMP_NUM_THREADS``), so the table compares the same machine used two ways.

    python benchmarks/ddp.py --processes 1 2 --iters 30 --size 32 --batch 4 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _folders(root: Path, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    folders = []
    for name, offset in (("a", 0), ("b", 128)):
        folder = root / name
        folder.mkdir()
        for i in range(8):
            Image.fromarray(rng.integers(offset, offset + 127, (size + 8, size + 8, 3), dtype=np.uint8)).save(
                folder / f"{i}.png")
        folders.append(folder)
    return folders[0], folders[1]


def measure(processes: int, args: argparse.Namespace, root: Path) -> dict[str, float]:
    """One run with *processes* processes; its iterations per second after the first iteration."""
    domain_a, domain_b = root / "a", root / "b"
    run = root / f"run{processes}"
    threads = max(1, args.threads // processes)
    command = [sys.executable, "-m", "napari_i2i", "train", "munit", "--domain-a", str(domain_a), "--domain-b",
               str(domain_b), "--out", str(run), "--iters", str(args.iters), "--size", str(args.size), "--batch",
               str(args.batch), "--device", args.device, "--checkpoint-every", str(args.iters), "--quiet",
               "--nproc", str(processes)]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    records = [r for r in records if "seconds" in r]
    first, last = records[0], records[-1]
    rate = (last["iteration"] - first["iteration"]) / (last["seconds"] - first["seconds"])
    return {"processes": processes, "threads_each": threads, "iterations_per_s": round(rate, 3),
            "images_per_s": round(rate * args.batch, 2), "wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4, help="the global batch (a multiple of every --processes)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _folders(root, args.size)
        for processes in args.processes:
            print(json.dumps({"device": args.device, "size": args.size, "batch": args.batch,
                              **measure(processes, args, root)}), flush=True)


if __name__ == "__main__":
    main()
