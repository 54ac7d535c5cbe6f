"""Inference speed and numerics of precision and compilation, as ratios in one run.

For each engine and preset: the same weights, one image, four ways — eager fp32 (the
baseline), eager in the precision ``auto`` picks here, compiled fp32 and compiled ``auto`` —
timed interleaved (A B C D A B C D …, best of ``--repeat``), so that a machine shared with
other work slows all of them alike. Prints the CPU, its bf16 flags, what ``auto`` chose, the
compile seconds (first call minus an eager call; a fresh compile cache unless ``--warm-cache``)
and the bf16-vs-fp32 difference of the outputs in grey levels of 8-bit output (mean, max).
``--freezing`` adds compiled ``auto`` with inductor's ``freezing`` (weights folded in as constants;
a probe, ``CompiledStages`` does not freeze). Not a timed test; run it by hand:

    OMP_NUM_THREADS=1 python benchmarks/precision.py --runs munit:paper:512 unit:small:512
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

# Grey levels per unit of the model's [-1, 1] range, for 8-bit output.
GREY_LEVELS = 127.5


def cpu_description() -> str:
    from napari_i2i.core.device import CPU_BF16_FLAGS, cpu_flags

    import torch

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    flags = sorted(cpu_flags() & {*CPU_BF16_FLAGS, "avx512f", "avx512_fp16", "amx_tile"})
    return (f"{model}; flags {' '.join(flags) or 'none of avx512/amx'}; torch {torch.__version__} "
            f"capability {torch.backends.cpu.get_cpu_capability()}; threads {torch.get_num_threads()}")


def build(engine_name: str, preset: str, size: int):
    """The model, its stages for one style and a random image of ``size``² (fixed seeds)."""
    import torch

    from napari_i2i.contract.engine_api import StyleMode, StyleRequest
    from napari_i2i.contract.registry import default_registry

    engine = default_registry().get(engine_name)
    torch.manual_seed(0)
    model = engine.build(engine.config(preset)).eval()
    capabilities = model.capabilities
    direction = next(iter(capabilities.directions))
    in_channels, out_channels = capabilities.directions[direction]
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, in_channels, size, size, generator=generator) * 2 - 1
    if StyleMode.RANDOM in capabilities.style_modes:
        request = StyleRequest(StyleMode.RANDOM, direction, seed=0)
    elif {StyleMode.FEW_SHOT, StyleMode.REFERENCE} & set(capabilities.style_modes):
        mode = StyleMode.FEW_SHOT if StyleMode.FEW_SHOT in capabilities.style_modes else StyleMode.REFERENCE
        example = torch.rand(1, out_channels, 128, 128, generator=generator) * 2 - 1
        request = StyleRequest(mode, direction, references=[example])
    else:
        request = StyleRequest(StyleMode.NONE, direction)
    with torch.inference_mode():
        stages = model.stages(model.condition(request))
    return model, stages, image


def measure(engine_name: str, preset: str, size: int, repeat: int, freezing: bool = False) -> dict:
    """Times (best of *repeat*, interleaved), compile seconds and bf16 differences for one model;
    with *freezing* also compiled ``auto`` with inductor's ``freezing`` (weights as constants)."""
    import functools

    import torch
    from torch._inductor.compile_fx import compile_fx

    from napari_i2i.core.device import resolve_precision
    from napari_i2i.core.stages import CompiledStages, on_device
    from napari_i2i.core.tiling import TilePlan, translate_tiled

    device = torch.device("cpu")
    model, stages, image = build(engine_name, preset, size)
    auto = resolve_precision("auto", device)
    plan = TilePlan.make(size, size, tile=size, context=model.capabilities.context,
                         multiple=model.capabilities.size_multiple)

    def run(whole=None, precision="fp32") -> torch.Tensor:
        steps = translate_tiled([on_device(s, device, precision) for s in stages], image, plan, None, device, whole)
        while True:
            try:
                next(steps)
            except StopIteration as finished:
                return finished.value

    ways = {"eager fp32": lambda: run(), f"eager {auto}": lambda: run(precision=auto)}
    outputs = {name: way() for name, way in ways.items()}  # warm-up
    compile_seconds = {}
    compiles = {f"compiled {precision}": (precision, None) for precision in dict.fromkeys(("fp32", auto))}
    if freezing:  # a backend of its own: dynamo compiles anew instead of reusing the graphs above
        compiles[f"compiled {auto} frozen"] = (auto, functools.partial(compile_fx, config_patches={"freezing": True}))
    for name, (precision, backend) in compiles.items():
        compiled = CompiledStages(stages, device, precision, backend)
        started = time.perf_counter()
        outputs[name] = run(compiled, precision)
        compile_seconds[name] = (time.perf_counter() - started, precision)
        ways[name] = lambda compiled=compiled, precision=precision: run(compiled, precision)
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(repeat):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            best[name] = min(best[name], time.perf_counter() - started)
    eager = best["eager fp32"]
    compile_seconds = {name: seconds - best[f"eager {precision}"]
                       for name, (seconds, precision) in compile_seconds.items()}
    reference = outputs["eager fp32"]
    difference = {name: ((out - reference).abs().mean().item() * GREY_LEVELS,
                         (out - reference).abs().max().item() * GREY_LEVELS) for name, out in outputs.items()}
    return {"model": f"{engine_name} {preset} {size}²", "auto": auto, "eager_s": eager,
            "ratios": {name: eager / seconds for name, seconds in best.items()},
            "compile_s": compile_seconds, "difference": difference}


def report(result: dict) -> None:
    print(f"\n{result['model']}: eager fp32 {result['eager_s']:.2f} s; auto chose {result['auto']}")
    for name, ratio in result["ratios"].items():
        mean, worst = result["difference"][name]
        print(f"  {name:14s} {ratio:5.2f}× faster   vs fp32: mean {mean:.3f}, max {worst:.1f} grey levels")
    for name, seconds in result["compile_s"].items():
        print(f"  compile ({name}): {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["munit:paper:512"], metavar="ENGINE:PRESET:SIZE")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--warm-cache", action="store_true",
                        help="use the per-user compile cache (default: a fresh one, so compile times are cold)")
    parser.add_argument("--freezing", action="store_true",
                        help="also compiled auto with inductor's freezing (weights folded in as constants)")
    args = parser.parse_args()
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="i2i-inductor-")
    print(cpu_description(), "|", time.strftime("%Y-%m-%d"), flush=True)
    for run in args.runs:
        engine_name, preset, size = run.split(":")
        report(measure(engine_name, preset, int(size), args.repeat, args.freezing))


if __name__ == "__main__":
    main()
