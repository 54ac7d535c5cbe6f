"""``napari-i2i engines``, ``convert`` and ``demo``.

Torch, the plugins and napari are imported only when a command runs, so that
these parsers (and ``--help``) cost nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")  # storage types for `convert`


def add_engines_parser(commands) -> None:
    """``napari-i2i engines``."""
    engines = commands.add_parser("engines", help="list installed engines, their capabilities and load errors")
    engines.add_argument("--traceback", action="store_true", help="show the traceback of each load error")


def add_convert_parser(commands) -> None:
    """``napari-i2i convert``."""
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


def add_demo_parser(commands) -> None:
    """``napari-i2i demo``."""
    demo = commands.add_parser(
        "demo",
        help="open napari with a sample image and the Translate widget on the bundled stain model",
        description="Open napari with the stain sample (an IHC tile and an H&E-like style "
        "reference) and the Translate widget set up on the bundled stain model. With "
        "--screenshot, translate once, write the window to FILE (PNG) and exit.",
    )
    demo.add_argument("--screenshot", type=Path, metavar="FILE",
                      help="translate, save a PNG of the window and exit instead of staying open")


def list_engines(args: argparse.Namespace) -> int:
    from napari_i2i.contract.registry import default_registry

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
        if args.traceback:
            print(error.details)
    return 0


def convert(args: argparse.Namespace) -> int:
    import torch

    from napari_i2i.core.model_file import convert_model

    if args.output.suffix.lower() != ".safetensors":
        raise ValueError(f"{args.output}: write model files as .safetensors")
    info = convert_model(args.model, args.output, dtype=getattr(torch, args.dtype),
                         display_name=args.display_name, description=args.description)
    size = args.output.stat().st_size / 1e6
    print(f"{args.output}: {info.engine} model, {args.dtype} weights, {size:.1f} MB")
    return 0


def demo(args: argparse.Namespace) -> int:
    from napari_i2i.frontends.demo import DemoError, run_demo

    try:
        return run_demo(args.screenshot)
    except DemoError as error:
        raise ValueError(str(error)) from None

