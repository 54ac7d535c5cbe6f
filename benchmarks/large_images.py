"""Time and peak memory of ``napari-i2i translate`` on large RGB images: whole vs tiled vs store-backed.

Each case runs ``napari-i2i translate`` in its own process (MUNIT ``small``, untrained, fp32,
compile off) on a tiled RGB uint8 TIFF written beforehand:

- ``whole``: one window the size of the image (``--tile SIZE``), TIFF output written at the end;
- ``tiled``: ``--tile TILE``, the image, the activations between statistics passes and the
  result in memory, TIFF output written at the end;
- ``store``: ``--tile TILE``, the input read lazily window by window, activations between
  statistics passes on disk and the result written band by band into an OME-Zarr store.

``--input zarr`` writes the input as a zarr array ``(3, SIZE, SIZE)`` (channels before Y/X, as
zarr stores hold colours; 512² chunks, written chunk by chunk) instead of the TIFF: a zarr input
to a zarr output, for sizes whose TIFF would not be worth writing. ``--progress`` shows each
case's progress lines (the translation's, on stderr) for runs of tens of minutes.

Peak RSS is the child's ``ru_maxrss``; "before" is its peak once torch is imported and the
model built (torch's own footprint), so "extra" is what the translation added.

    OMP_NUM_THREADS=1 python benchmarks/large_images.py --sizes 1024 2048 4096
    OMP_NUM_THREADS=1 python benchmarks/large_images.py --sizes 16384 --modes store --input zarr --progress
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("whole", "tiled", "store")
INPUTS = {"tif": ".tif", "zarr": ".zarr"}


def write_input(path: Path, size: int, tile: int = 512) -> None:
    """A random RGB uint8 ``size²`` TIFF, tile by tile (so this process never holds it whole)."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    tiles = (rng.integers(0, 256, (min(tile, size - top), min(tile, size - left), 3), dtype=np.uint8)
             for top in range(0, size, tile) for left in range(0, size, tile))
    tifffile.imwrite(path, tiles, shape=(size, size, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb")


def write_zarr_input(path: Path, size: int, chunk: int = 512) -> None:
    """A random ``(3, size, size)`` uint8 zarr array, chunk by chunk (never whole in memory)."""
    import numpy as np
    import zarr

    rng = np.random.default_rng(0)
    array = zarr.create_array(path, shape=(3, size, size), dtype=np.uint8, chunks=(3, chunk, chunk))
    for top in range(0, size, chunk):
        for left in range(0, size, chunk):
            rows, cols = min(chunk, size - top), min(chunk, size - left)
            array[:, top : top + rows, left : left + cols] = rng.integers(0, 256, (3, rows, cols), dtype=np.uint8)


def untrained_model_file(folder: Path) -> Path:
    """MUNIT ``small``, untrained (seed 0), saved once in *folder*: what the cases translate with."""
    import torch

    from engines.munit import MunitEngine
    from napari_i2i.core.model_file import save_model

    model_file = folder / "munit_small.safetensors"
    if not model_file.exists():
        engine = MunitEngine()
        torch.manual_seed(0)
        save_model(model_file, engine, engine.build(engine.config("small")).eval())
    return model_file


def add_case_arguments(parser: argparse.ArgumentParser, modes: tuple[str, ...]) -> None:
    """The hidden arguments that make the script measure one case in a child process."""
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=modes, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)


def measure(args: argparse.Namespace) -> dict:
    """One case, in this (child) process."""
    import torch  # noqa: F401  (its footprint counts as "before")

    from napari_i2i.core import image_io, tiling
    from napari_i2i.frontends.cli import main

    folder = Path(args.folder)
    model_file = untrained_model_file(folder)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = args.mode == "store"
    if store:  # read lazily and keep activations on disk at every size, as a whole slide would
        image_io.LAZY_ABOVE_PIXELS = 0
        tiling.SPILL_ABOVE_PIXELS = 0
    else:  # everything in memory, as before stores existed
        image_io.LAZY_ABOVE_PIXELS = tiling.SPILL_ABOVE_PIXELS = 2**62
    output = folder / (f"out_{args.mode}_{args.one}" + (".ome.zarr" if store else ".tif"))
    tile = args.one if args.mode == "whole" else args.tile
    started = time.perf_counter()
    quiet = [] if args.progress else ["--quiet"]
    source = folder / f"in_{args.one}{INPUTS[args.input]}"
    code = main(["translate", str(model_file), str(source), "-o", str(output), *quiet, "--tile", str(tile),
                 "--precision", "fp32", "--compile", "off", "--device", "cpu", "--overwrite",
                 "--max-pixels", str(2**31)])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"translate exited with {code}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": args.one, "mode": args.mode, "seconds": seconds, "before_mb": before_mb, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--input", choices=sorted(INPUTS), default="tif",
                        help="input type: a tiled RGB TIFF or a (3, SIZE, SIZE) zarr array (default tif)")
    parser.add_argument("--progress", action="store_true", help="show each case's progress lines")
    add_case_arguments(parser, MODES)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="napari-i2i-large-") as folder:
        for size in args.sizes:
            source = Path(folder) / f"in_{size}{INPUTS[args.input]}"
            (write_zarr_input if args.input == "zarr" else write_input)(source, size)
            for mode in args.modes:
                done = subprocess.run(
                    [sys.executable, __file__, "--one", str(size), "--mode", mode, "--tile", str(args.tile),
                     "--folder", folder, "--input", args.input, *(["--progress"] if args.progress else [])],
                    stdout=subprocess.PIPE, stderr=None if args.progress else subprocess.PIPE, text=True)
                if done.returncode != 0:
                    print(f"{size}² {mode}: failed: {(done.stderr or '').strip().splitlines()[-1:]}", flush=True)
                    continue
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                row = rows[-1]
                print(f"{size}² {mode}: {row['seconds']:.1f} s, peak RSS {row['peak_mb']:.0f} MB", flush=True)
            for output in [*Path(folder).glob(f"out_*_{size}*"), source]:  # the disk they take
                if output.is_dir():
                    shutil.rmtree(output)
                else:
                    output.unlink()
    print(f"\n| image | mode | seconds | peak RSS MB | before MB | extra MB |  (tile {args.tile})")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']}² | {row['mode']} | {row['seconds']:.1f} | {row['peak_mb']:.0f} | "
              f"{row['before_mb']:.0f} | {row['peak_mb'] - row['before_mb']:.0f} |")


if __name__ == "__main__":
    main()
