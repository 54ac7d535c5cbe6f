"""``napari-i2i translate``: image files through a model file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.device import DEVICE_CHOICES, resolve_device
from napari_i2i.core.image_io import SUFFIXES, read_image, write_image
from napari_i2i.core.model_file import load_model
from napari_i2i.core.style_choice import StyleInputs, StyleWords, Wording, choose_style_mode
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


# The style inputs as the command line names them, for the style rule's messages.
CLI_WORDS = StyleWords(
    references=Wording("--reference", "--reference IMG..."),
    match=Wording("--match", "--match"),
    class_examples=Wording("--class-images", "--class-images IMG..."),
    interpolate=Wording("--interpolate", "--interpolate REF1 REF2"),
    steps=Wording("--steps", "--steps N"),
    samples=Wording("--samples", "--samples"),
    front_end="the command line",
)


def _style_inputs(args: argparse.Namespace) -> StyleInputs:
    """The style flags as the style rule counts them (an absent flag: None)."""
    return StyleInputs(
        references=len(args.reference) or None,
        match=args.match,
        class_examples=len(args.class_images) or None,
        interpolation_ends=len(args.interpolate) if args.interpolate else None,
        steps=args.steps,
        n_samples=args.samples,
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_i2i.core.translate import TranslateOptions, run_translation

    device = resolve_device(args.device)
    loaded = load_model(args.model, device=device)
    if not loaded.info.trained:
        print(f"warning: {args.model} holds untrained weights; its outputs are noise", file=sys.stderr)
    direction = args.direction or next(iter(loaded.model.capabilities.directions))
    mode = choose_style_mode(_style_inputs(args), loaded.model.capabilities.style_modes, loaded.info.engine,
                             CLI_WORDS)
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

