"""The ``napari-i2i`` command line: list engines, translate files, train, convert, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_i2i import __version__
from napari_i2i.device import DEVICE_CHOICES, DeviceError, resolve_device
from napari_i2i.engine_api import EngineError, StyleMode
from napari_i2i.image_io import SUFFIXES, ImageFileError, read_image, write_image
from napari_i2i.layer_data import LayerDataError
from napari_i2i.model_file import ModelFileError, convert_model, load_model
from napari_i2i.registry import default_registry
from napari_i2i.tiling import DEFAULT_TILE

DTYPES = ("bfloat16", "float16", "float32")  # storage types for `convert`
USER_ERRORS = (
    DeviceError, EngineError, FileNotFoundError, ImageFileError, LayerDataError, ModelFileError, ValueError,
)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-i2i", description="Image-to-image translation (napari-i2i)."
    )
    parser.add_argument("--version", action="version", version=f"napari-i2i {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    engines = commands.add_parser("engines", help="list installed engines, their capabilities and load errors")
    engines.add_argument("--traceback", action="store_true", help="show the traceback of each load error")

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
    translate.add_argument("--samples", type=_positive, default=1, help="random styles per input")
    translate.add_argument("--seed", type=int, default=0, help="seed of the random styles")
    translate.add_argument("--direction", default=None, help="e.g. a2b or b2a (default: the model's first)")
    translate.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N")
    translate.add_argument("--tile", type=_positive, default=DEFAULT_TILE, metavar="PX",
                           help="tile size in pixels; bounds memory for large images")
    translate.add_argument("--format", default=None, choices=sorted(s.lstrip(".") for s in SUFFIXES),
                           help="output type when OUT is a folder (default: the input's)")
    translate.add_argument("--quiet", action="store_true", help="no progress bar")

    train = commands.add_parser(
        "train",
        help="train an engine on image folders",
        description="Train ENGINE on two folders of unpaired images (--domain-a, --domain-b: "
        "munit, unit), on one folder of class subfolders (--classes: funit) or on aligned "
        "pairs (--pairs-a [--pairs-b]: step). Writes "
        "checkpoints, log.jsonl, validation images and RUN_DIR/model.safetensors. "
        "Ctrl-C saves a checkpoint; --resume continues it.",
    )
    train.add_argument("engine", help="a trainable engine (see `napari-i2i engines`)")
    train.add_argument("--domain-a", type=Path, metavar="DIR", help="unpaired engines: images of domain A")
    train.add_argument("--domain-b", type=Path, metavar="DIR", help="unpaired engines: images of domain B")
    train.add_argument("--classes", type=Path, metavar="DIR",
                       help="class-folder engines (funit): one subfolder of images per class")
    train.add_argument("--holdout-classes", metavar="N|NAME,NAME",
                       help="class-folder engines: keep N classes (drawn with the seed) or the named "
                       "ones out of training, to try translation into unseen classes")
    train.add_argument("--pairs-a", type=Path, metavar="DIR",
                       help="paired engines (step): images of domain A, or side-by-side A|B images "
                       "without --pairs-b")
    train.add_argument("--pairs-b", type=Path, metavar="DIR",
                       help="paired engines: images of domain B, named as their partners in --pairs-a")
    train.add_argument("--stages", metavar="NAME,NAME",
                       help="paired engines (step): the training stages to run, of "
                       "style,generator,finetune,mapper (default: all)")
    train.add_argument("--out", type=Path, required=True, metavar="RUN_DIR")
    train.add_argument("--preset", default="small", help="small (CPU, minutes) or paper (published sizes)")
    train.add_argument("--config", type=Path, metavar="FILE",
                       help="TOML/YAML with [model] and [training] tables and loop settings")
    train.add_argument("--iters", type=_positive, metavar="N")
    train.add_argument("--size", type=_positive, metavar="PX", help="training crop size")
    train.add_argument("--batch", type=_positive, metavar="B")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N")
    train.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--progress-json", action="store_true",
                       help="instead of the progress bar, one JSON line per iteration on standard "
                       'output, {"iteration": i, "iterations": n, "losses": {...}}, and '
                       '{"model": PATH} at the end (for front ends); once nothing reads them any more '
                       "(the front end closed), the run stops as on Ctrl-C")
    train.add_argument("--stop-file", type=Path, metavar="FILE",
                       help="stop as Ctrl-C does (checkpoint saved, exit status 130) once FILE exists: "
                       "a way for front ends to stop a run on any platform")

    convert = commands.add_parser(
        "convert",
        help="re-save a model file, e.g. in float16 with a name and description",
        description="Copy MODEL to OUT through the model-file checks, optionally storing the "
        "weights in another floating-point type (loaded back as float32) and setting the name "
        "and description model choosers show. The provenance is kept.",
    )
    convert.add_argument("model", type=Path, help="model file (.safetensors)")
    convert.add_argument("output", type=Path, metavar="OUT", help="file to write (.safetensors)")
    convert.add_argument("--dtype", choices=DTYPES, default="float32",
                         help="storage type of the weights (default float32; float16 halves the file)")
    convert.add_argument("--display-name", default=None, help="name in model choosers (default: keep)")
    convert.add_argument("--description", default=None, help="what the model does (default: keep)")

    demo = commands.add_parser(
        "demo",
        help="open napari with a sample image and the Translate widget on the bundled stain model",
        description="Open napari with the stain sample (an IHC tile and an H&E-like style "
        "reference) and the Translate widget set up on the bundled stain model. With "
        "--screenshot, translate once, write the window to FILE (PNG) and exit.",
    )
    demo.add_argument("--screenshot", type=Path, metavar="FILE",
                      help="translate, save a PNG of the window and exit instead of staying open")
    return parser


def _list_engines(show_tracebacks: bool) -> int:
    registry = default_registry()
    for engine in registry:
        source = registry.source(engine.name)
        capabilities = engine.build(engine.config("small")).capabilities
        print(f"{engine.name}: {engine.description}")
        print(f"    presets: {', '.join(engine.presets)}")
        print(f"    {capabilities.describe()}")
        print(f"    trainable: {'yes' if engine.name in registry.trainable() else 'no'}")
        print(f"    from {source}")
    if not registry.names():
        print("no engines installed")
    for error in registry.load_errors:
        print(f"load error: {error}")
        if show_tracebacks:
            print(error.details)
    return 0


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


def _translate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_i2i.translate import TranslateOptions, run_translation

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


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trainers.run import (
        RUN_FILE,
        data_kind,
        make_class_settings,
        make_paired_settings,
        make_settings,
        read_config_file,
        train,
    )

    device = resolve_device(args.device)
    settings = None
    if args.resume and args.stages:
        raise ValueError("--stages cannot change a run being resumed: its stages come from RUN_DIR/run.json")
    if not args.resume:
        kind = data_kind(args.engine)
        _check_data_flags(args, kind)
        overrides = {"size": args.size, "batch": args.batch, "iterations": args.iters, "seed": args.seed}
        config = read_config_file(args.config) if args.config else None
        # Dataset problems are DatasetErrors, a kind of ValueError: reported in one message.
        if kind == "classes":
            if args.classes is None:
                raise ValueError(f"--classes is required for {args.engine} (unless --resume)")
            flag = args.holdout_classes  # a number of classes, or their names
            holdout = None if flag is None else int(flag) if flag.isdigit() else [n for n in flag.split(",") if n]
            settings = make_class_settings(args.engine, args.preset, args.classes, holdout=holdout,
                                           config=config, overrides=overrides)
        elif kind == "paired":
            if args.pairs_a is None:
                raise ValueError(f"--pairs-a is required for {args.engine} (unless --resume)")
            stages = [name.strip() for name in args.stages.split(",")] if args.stages else None
            settings = make_paired_settings(args.engine, args.preset, args.pairs_a, args.pairs_b,
                                            config=config, overrides=overrides,
                                            training={"stages": stages} if stages else None)
        else:
            if args.domain_a is None or args.domain_b is None:
                raise ValueError("--domain-a and --domain-b are required (unless --resume)")
            settings = make_settings(args.engine, args.preset, args.domain_a, args.domain_b,
                                     config=config, overrides=overrides)
    if settings is not None:
        total = settings.iterations
    else:  # resumed: --iters, or the run's own
        run_file = args.out / RUN_FILE
        total = args.iters or (json.loads(run_file.read_text())["iterations"] if run_file.is_file() else None)

    reader_gone = False  # --progress-json: whoever read standard output has closed it

    def report(iteration: int, losses: dict[str, float]) -> None:
        nonlocal reader_gone
        if not reader_gone:
            reader_gone = not _print_json({"iteration": iteration, "iterations": total, "losses": losses})

    def should_stop() -> bool:  # the front end's Cancel, or the front end gone (e.g. napari closed)
        return reader_gone or (args.stop_file is not None and args.stop_file.exists())

    with tqdm(disable=args.quiet or args.progress_json, desc=f"training {args.engine}", unit="it",
              file=sys.stderr) as bar:
        def progress(iteration: int, losses: dict[str, float]) -> None:
            if bar.total is None:
                bar.total = total
            bar.n = iteration
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
            bar.refresh()

        path = train(args.out, settings, device=device, resume=args.resume,
                     on_progress=report if args.progress_json else progress,
                     iterations=args.iters if args.resume else None, should_stop=should_stop)
    if path is None:
        print(f"stopped; checkpoint saved in {args.out}. Continue with --resume.", file=sys.stderr)
        return 130
    if args.progress_json:
        _print_json({"model": str(path)})
    else:
        print(path)
    return 0


def _print_json(record: dict) -> bool:
    """One JSON line on standard output; False when nothing reads it any more (a closed pipe)."""
    try:
        print(json.dumps(record), flush=True)
        return True
    except BrokenPipeError:
        # Standard output goes nowhere from now on, so that later writes (and the flush at exit)
        # cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False


# The flags of each kind of training data, and what that kind is.
DATA_FLAGS = {
    "unpaired": (("--domain-a", "domain_a"), ("--domain-b", "domain_b")),
    "classes": (("--classes", "classes"), ("--holdout-classes", "holdout_classes")),
    "paired": (("--pairs-a", "pairs_a"), ("--pairs-b", "pairs_b"), ("--stages", "stages")),
}
DATA_KINDS = {
    "unpaired": "two folders of unpaired images (--domain-a DIR --domain-b DIR)",
    "classes": "one folder of class subfolders (--classes DIR)",
    "paired": "aligned image pairs (--pairs-a DIR [--pairs-b DIR])",
}


def _check_data_flags(args: argparse.Namespace, kind: str) -> None:
    """Data flags of the other kinds of training data are an error, not silently ignored."""
    given = [flag for other, flags in DATA_FLAGS.items() if other != kind
             for flag, name in flags if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{args.engine} trains on {DATA_KINDS[kind]}; drop {' and '.join(given)}")


def _convert(args: argparse.Namespace) -> int:
    import torch

    if args.output.suffix.lower() != ".safetensors":
        raise ValueError(f"{args.output}: write model files as .safetensors")
    info = convert_model(args.model, args.output, dtype=getattr(torch, args.dtype),
                         display_name=args.display_name, description=args.description)
    size = args.output.stat().st_size / 1e6
    print(f"{args.output}: {info.engine} model, {args.dtype} weights, {size:.1f} MB")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from napari_i2i.demo import DemoError, run_demo

    try:
        return run_demo(args.screenshot)
    except DemoError as error:
        raise ValueError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"engines": lambda: _list_engines(args.traceback), "train": lambda: _train(args),
                "translate": lambda: _translate(args), "convert": lambda: _convert(args),
                "demo": lambda: _demo(args)}
    try:
        return commands[args.command]()
    except USER_ERRORS as error:
        print(f"napari-i2i: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-i2i: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
