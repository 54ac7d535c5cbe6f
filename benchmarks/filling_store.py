"""What filling the pyramid as bands arrive costs: a result written band by band into an OME-Zarr.

The Translate widget writes the results of large layers into a
:class:`napari_i2i.core.filling_store.FillingStore`, whose coarser levels are filled with every band
(so napari shows them filling in); the CLI's :class:`napari_i2i.core.stores.PendingOutput` builds
the pyramid once at the end. Both are fed the same random RGB uint8 result of ``SIZE²`` in bands
of 512 rows (what tile 512 hands over), with no model, so the figures are the stores' own:

- ``pending``: ``PendingOutput`` bands, then ``finish()`` (pyramid, metadata, rename);
- ``filling``: ``FillingStore`` bands, each also filling the coarser levels' rows.

Each case runs in its own process; peak RSS is its ``ru_maxrss``, "extra" the peak minus the peak
once the stores' modules are imported (zarr, dask, and torch through ``napari_i2i.core``).

    OMP_NUM_THREADS=1 python benchmarks/filling_store.py --sizes 2048 4096 8192
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

MODES = ("pending", "filling")
BAND = 512


def measure(mode: str, size: int, folder: Path) -> dict:
    """One case, in this (child) process."""
    import dask.array  # noqa: F401  (imported by both stores; its footprint counts as "before")
    import numpy as np
    import zarr  # noqa: F401

    from napari_i2i.core.filling_store import FillingStore
    from napari_i2i.core.stores import PendingOutput

    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(0)
    path = folder / f"{mode}_{size}.ome.zarr"
    start = time.perf_counter()
    store = (PendingOutput if mode == "pending" else FillingStore)(path, (size, size, 3), np.uint8, True)
    for top in range(0, size, BAND):
        rows = min(BAND, size - top)
        store[(slice(top, top + rows), slice(None), slice(None))] = rng.integers(0, 256, (rows, size, 3), np.uint8)
    if mode == "pending":
        store.finish()
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "size": size, "seconds": round(seconds, 1), "peak_mb": round(peak_mb),
            "before_mb": round(before_mb), "extra_mb": round(peak_mb - before_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SIZE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, size, folder = args.child
        print(json.dumps(measure(mode, int(size), Path(folder))))
        return
    print("| result | store | seconds | peak RSS MB | before MB | extra MB |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for mode in args.modes:
            with tempfile.TemporaryDirectory() as folder:
                done = subprocess.run([sys.executable, __file__, "--child", mode, str(size), folder],
                                      capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {size}² RGB | {mode} | {row['seconds']} | {row['peak_mb']} | {row['before_mb']} "
                  f"| {row['extra_mb']} |", flush=True)


if __name__ == "__main__":
    main()
