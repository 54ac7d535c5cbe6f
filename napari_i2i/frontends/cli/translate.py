"""``napari-i2i translate``: image files through a model file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.device import DEVICE_CHOICES, resolve_device
from napari_i2i.core.image_io import SUFFIXES, read_image, write_image
from napari_i2i.core.model_file import load_model
from napari_i2i.core.tiling import DEFAULT_TILE
from napari_i2i.frontends.cli.arguments import positive


def add_parser(commands) -> None:
    """``napari-i2i translate``."""
    translate = commands.add_parser(
        "translate",
        help="translate image files with a model file",
        description="Translate TIFF/PNG/JPEG images. With one input, OUT may be a file; "
        "otherwise OUT is a folder and outputs are named INPUT_DIRECTION.EXT.",
    )
    translate.add_argument("model", type=Path, help="model file (.safetensors)")
    translate.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    translate.add_argument("-o", "--output", type=Path, required=True, metavar="OUT")
    translate.add_argument(
        "--reference", type=Path, nargs="+", default=[], metavar="IMG",
        help="style reference image(s); their style codes are averaged (see --match)",
    )
    translate.add_argument(
        "--match", action="store_true",
        help="with several --reference images of different looks: each input (each plane) takes the "
        "style of the reference whose content is closest to its own, instead of the averaged style",
    )
    translate.add_argument(
        "--class-images", type=Path, nargs="+", default=[], metavar="IMG",
        help="few-shot models (funit): example images of the class to translate into "
        "(K >= 1, any sizes; each plane of a stack is one example)",
    )
    translate.add_argument(
        "--interpolate", type=Path, nargs=2, default=None, metavar=("REF1", "REF2"),
        help="models with style interpolation (step): go from the style of REF1 to that of REF2 "
        "in --steps steps; the output gets a leading axis of steps",
    )
    translate.add_argument("--steps", type=int, default=None, metavar="N",
                           help="with --interpolate: the number of styles from REF1 to REF2 (>= 2, "
                           "both ends included)")
    translate.add_argument("--samples", type=positive, default=1, help="random styles per input")
    translate.add_argument("--seed", type=int, default=0, help="seed of the random styles")
    translate.add_argument("--direction", default=None, help="e.g. a2b or b2a (default: the model's first)")
    translate.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N")
    translate.add_argument("--tile", type=positive, default=DEFAULT_TILE, metavar="PX",
                           help="tile size in pixels; bounds memory for large images")
    translate.add_argument("--format", default=None, choices=sorted(s.lstrip(".") for s in SUFFIXES),
                           help="output type when OUT is a folder (default: the input's)")
    translate.add_argument("--quiet", action="store_true", help="no progress bar")


def _output_paths(args: argparse.Namespace, direction: str) -> list[Path]:
    out: Path = args.output
    if out.suffix and out.suffix.lower() not in SUFFIXES and not out.is_dir():
        raise ValueError(f"{out}: unsupported output type; use one of {sorted(SUFFIXES)}")
    if len(args.inputs) == 1 and out.suffix.lower() in SUFFIXES:
        return [out]
    if out.suffix.lower() in SUFFIXES:
        raise ValueError(f"{out}: with several inputs, -o must be a folder")
    paths = []
    for source in args.inputs:
        suffix = f".{args.format}" if args.format else source.suffix
        paths.append(out / f"{source.stem}_{direction}{suffix}")
    if len(set(paths)) != len(paths):
        raise ValueError("two inputs would write the same output file; rename one")
    return paths



def _style_mode(args: argparse.Namespace, engine: str, offered: Sequence[StyleMode]) -> StyleMode:
    """The class of the class images, or the style of the references, if given; else
    random styles, else none (deterministic models)."""
    names = ", ".join(mode.value for mode in offered)
    if args.match and not args.reference:
        raise ValueError("--match chooses among style references: give them with --reference IMG...")
    if args.interpolate:
        if StyleMode.INTERPOLATE not in offered:
            raise ValueError(f"this {engine} model does not interpolate between styles (styles: {names}); "
                             "drop --interpolate")
        if args.reference or args.class_images:
            raise ValueError("--interpolate REF1 REF2 takes the place of --reference and --class-images; "
                             "give it alone")
        if args.samples != 1:
            raise ValueError("--samples applies to random styles; give the number of interpolation "
                             "steps with --steps")
        if args.steps is None or args.steps < 2:
            raise ValueError("--interpolate needs --steps N with N >= 2 (the styles of REF1 and REF2 "
                             "included)")
        return StyleMode.INTERPOLATE
    if args.steps is not None:
        raise ValueError("--steps is the number of interpolation steps; give it with --interpolate REF1 REF2")
    if args.class_images:
        if StyleMode.FEW_SHOT not in offered:
            raise ValueError(f"this {engine} model does not translate into the class of example images "
                             f"(styles: {names}); drop --class-images")
        if args.reference:
            raise ValueError("give either --class-images or --reference, not both")
        if args.samples != 1:
            raise ValueError("--samples applies to random styles; drop it when giving --class-images")
        return StyleMode.FEW_SHOT
    if args.reference:
        if StyleMode.REFERENCE not in offered:
            hint = "; give class examples with --class-images" if StyleMode.FEW_SHOT in offered else ""
            raise ValueError(f"this {engine} model takes no style reference (styles: {names}); "
                             f"drop --reference{hint}")
        if args.samples != 1:
            raise ValueError("--samples applies to random styles; drop it when giving --reference")
        if args.match:
            if StyleMode.MATCHED not in offered:
                raise ValueError(f"this {engine} model cannot match references to inputs (styles: {names}); "
                                 "drop --match")
            return StyleMode.MATCHED
        return StyleMode.REFERENCE
    if StyleMode.RANDOM in offered:
        return StyleMode.RANDOM
    if args.samples != 1:
        raise ValueError(
            f"this {engine} model has no random styles (styles: {names}); drop --samples"
        )
    if StyleMode.NONE in offered:
        return StyleMode.NONE
    if StyleMode.FEW_SHOT in offered:
        raise ValueError(
            f"this {engine} model translates into the class shown by example images; "
            "give one or more with --class-images IMG..."
        )
    if StyleMode.REFERENCE in offered:
        also = " (or --interpolate REF1 REF2 --steps N)" if StyleMode.INTERPOLATE in offered else ""
        raise ValueError(f"this {engine} model takes its style from reference images: give "
                         f"--reference IMG...{also}")
    raise ValueError(
        f"this {engine} model needs a style the command line cannot give (styles: {names})"
    )



def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_i2i.core.translate import TranslateOptions, run_translation

    device = resolve_device(args.device)
    loaded = load_model(args.model, device=device)
    if not loaded.info.trained:
        print(f"warning: {args.model} holds untrained weights; its outputs are noise", file=sys.stderr)
    direction = args.direction or next(iter(loaded.model.capabilities.directions))
    mode = _style_mode(args, loaded.info.engine, loaded.model.capabilities.style_modes)
    outputs = _output_paths(args, direction)
    sources = [read_image(path) for path in args.inputs]
    given = {StyleMode.FEW_SHOT: args.class_images, StyleMode.INTERPOLATE: args.interpolate}
    references = [read_image(path) for path in given.get(mode, args.reference)]
    n_samples = args.steps if mode is StyleMode.INTERPOLATE else args.samples
    options = TranslateOptions(
        direction=direction, mode=mode, n_samples=n_samples, seed=args.seed, tile=args.tile
    )
    steps = run_translation(loaded, sources, options, references)
    with tqdm(total=1000, disable=args.quiet, unit="‰", desc="translating", file=sys.stderr) as bar:
        while True:
            try:
                progress = next(steps)
            except StopIteration as finished:
                results = finished.value
                break
            bar.update(round(progress.fraction * 1000) - bar.n)
    for result, path in zip(results, outputs):
        for written in write_image(path, result.data, result.rgb):
            print(written)
    return 0

