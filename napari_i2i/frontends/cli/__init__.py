"""The ``napari-i2i`` command line: list engines, translate files, train, convert, demo.

Each subcommand lives in a module of its own; a user error (bad input, a
missing file) ends with one line on standard error and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from napari_i2i import __version__
from napari_i2i.contract.engine_api import EngineError
from napari_i2i.core.device import DeviceError
from napari_i2i.core.image_io import ImageFileError
from napari_i2i.core.layer_data import LayerDataError
from napari_i2i.core.model_file import ModelFileError
from napari_i2i.frontends.cli import models, train, translate

USER_ERRORS = (
    DeviceError, EngineError, FileNotFoundError, ImageFileError, LayerDataError, ModelFileError, ValueError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-i2i", description="Image-to-image translation (napari-i2i)."
    )
    parser.add_argument("--version", action="version", version=f"napari-i2i {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    models.add_engines_parser(commands)
    translate.add_parser(commands)
    train.add_parser(commands)
    models.add_file_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"engines": lambda: models.list_engines(args.traceback), "train": lambda: train.run(args),
                "translate": lambda: translate.run(args), "convert": lambda: models.convert(args),
                "demo": lambda: models.demo(args)}
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
