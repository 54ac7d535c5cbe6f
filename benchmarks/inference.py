"""Inference speed and peak memory of an engine, whole-image and tiled.

Prints a table (seconds are the best of ``--repeat`` runs after a warm-up).
Each configuration runs in its own process so peak memory is its own: on
the CPU the process's peak resident memory, on CUDA ``max_memory_allocated``.

    python benchmarks/inference.py --preset paper --sizes 256 512 1024 --tile 512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(args: argparse.Namespace) -> dict:
    import torch

    from napari_i2i.core.device import autocast, resolve_device
    from napari_i2i.contract.engine_api import StyleMode, StyleRequest
    from napari_i2i.contract.registry import default_registry
    from napari_i2i.core.tiling import TilePlan, translate_tiled

    device = resolve_device(args.device)
    engine = default_registry().get(args.engine)
    torch.manual_seed(0)
    model = engine.build(engine.config(args.preset)).eval().to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "a2b", seed=0))
    image = torch.rand(1, model.config["channels_a"], args.one, args.one) * 2 - 1
    capabilities = model.capabilities
    plan = TilePlan.make(args.one, args.one, tile=args.tile or args.one,
                         context=capabilities.context, multiple=capabilities.size_multiple)

    def on_device(stage):
        def run(tile: torch.Tensor) -> torch.Tensor:
            if args.channels_last:
                tile = tile.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(device):
                return stage(tile)

        return run

    stages = [on_device(stage) for stage in model.stages(conditioning)]

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        steps = translate_tiled(stages, image, plan, model.shared_statistics(), device)
        for _ in steps:
            pass
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = min(once() for _ in range(args.repeat))
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": args.one, "tiles": plan.n_tiles, "seconds": seconds, "peak_mb": peak_mb,
            "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="munit")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--tile", type=int, default=0, help="0: whole image, one window")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args)))
        return
    import torch

    print(f"engine {args.engine}, preset {args.preset}, tile {args.tile or 'whole image'}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'size':>6} {'tiles':>5} {'seconds':>8} {'peak MB':>8}  device")
    for size in args.sizes:
        command = [
            sys.executable, __file__, "--one", str(size), "--engine", args.engine,
            "--preset", args.preset, "--device", args.device, "--tile", str(args.tile),
            "--repeat", str(args.repeat),
        ] + (["--channels-last"] if args.channels_last else [])
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"size {size} failed:\n{done.stderr}")
        row = json.loads(done.stdout)
        print(f"{row['size']:>6} {row['tiles']:>5} {row['seconds']:>8.2f} {row['peak_mb']:>8.0f}  {row['device']}")


if __name__ == "__main__":
    main()
