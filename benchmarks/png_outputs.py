"""Peak memory of ``napari-i2i translate`` with a PNG output: whole in memory vs written as made.

Each case runs ``napari-i2i translate`` in its own process (MUNIT ``small``, untrained, fp32,
compile off, tile 512) on the random RGB uint8 tiled TIFF of ``benchmarks/large_images.py``,
into ``OUT.png``:

- ``memory``: the input read whole, the result held whole and written at the end (small inputs);
- ``made``: the input read lazily window by window, activations between statistics passes on
  disk, the result written band by band into a temporary store and from it one PNG plane at a
  time (what a large TIFF or zarr input gets).

Peak RSS is the child's ``ru_maxrss``; "before" is its peak once torch is imported and the model
built, so "extra" is what the translation added. Both PNGs are compared (equal: "same").

    OMP_NUM_THREADS=1 python benchmarks/png_outputs.py --sizes 1024 2048
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.large_images import add_case_arguments, untrained_model_file, write_input

MODES = ("memory", "made")


def measure(size: int, mode: str, folder: Path, tile: int) -> dict:
    """One case, in this (child) process."""
    import torch  # noqa: F401  (its footprint counts as "before")

    from napari_i2i.core import image_io, tiling
    from napari_i2i.frontends.cli import main

    model_file = untrained_model_file(folder)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lazy = mode == "made"
    image_io.LAZY_ABOVE_PIXELS = 0 if lazy else 2**62
    tiling.SPILL_ABOVE_PIXELS = 0 if lazy else 2**62
    started = time.perf_counter()
    code = main(["translate", str(model_file), str(folder / f"in_{size}.tif"), "-o", str(folder / f"{mode}.png"),
                 "--quiet", "--tile", str(tile), "--precision", "fp32", "--compile", "off", "--device", "cpu",
                 "--overwrite", "--max-pixels", str(2**31)])
    if code != 0:
        raise SystemExit(f"translate exited with {code}")
    return {"size": size, "mode": mode, "seconds": time.perf_counter() - started, "before_mb": before_mb,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def same_pngs(folder: Path) -> bool:
    import numpy as np
    from PIL import Image

    memory, made = (np.asarray(Image.open(folder / f"{mode}.png")) for mode in MODES)
    return bool(np.array_equal(memory, made))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tile", type=int, default=512)
    add_case_arguments(parser, MODES)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.mode, Path(args.folder), args.tile)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="napari-i2i-png-") as folder:
        for size in args.sizes:
            write_input(Path(folder) / f"in_{size}.tif", size)
            for mode in MODES:
                done = subprocess.run([sys.executable, __file__, "--one", str(size), "--mode", mode, "--tile",
                                       str(args.tile), "--folder", folder], capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"{size}² {mode}: failed: {done.stderr.strip().splitlines()[-1:]}")
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{size}² {mode}: {rows[-1]['seconds']:.1f} s, peak RSS {rows[-1]['peak_mb']:.0f} MB",
                      flush=True)
            rows[-1]["same"] = same_pngs(Path(folder))
    print(f"\n| image | output | seconds | peak RSS MB | before MB | extra MB |  (tile {args.tile})")
    print("|---|---|---|---|---|---|")
    for row in rows:
        same = {True: ", same PNG", False: ", PNG differs"}.get(row.get("same"), "")
        print(f"| {row['size']}² | {row['mode']}{same} | {row['seconds']:.1f} | {row['peak_mb']:.0f} | "
              f"{row['before_mb']:.0f} | {row['peak_mb'] - row['before_mb']:.0f} |")


if __name__ == "__main__":
    main()
