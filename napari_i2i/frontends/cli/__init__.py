"""The ``napari-i2i`` command line: list engines, translate files, train, convert, demo.

Each subcommand lives in a module of its own; a user error (bad input, a
missing file) ends with one line on standard error and exit status 2.

Starting is fast: only the module of the subcommand being run is imported
and only its parser is built (``train``'s flags come from the installed
plugins), so ``napari-i2i --help`` and ``--version`` never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from napari_i2i import __version__
from napari_i2i.contract.errors import EngineError
from napari_i2i.core.errors import DeviceError, ImageFileError, LayerDataError, ModelFileError


@dataclass(frozen=True)
class Subcommand:
    """Where a subcommand lives, by name, so that nothing is imported until it runs."""

    module: str  # in napari_i2i.frontends.cli
    add_parser: str  # the module's function adding the full parser to the subparsers
    run: str  # the module's function running it with the parsed arguments; returns the exit status
    summary: str  # its line in `napari-i2i --help`; equal to the full parser's help (a test checks)


SUBCOMMANDS = {  # in the order `napari-i2i --help` lists them
    "engines": Subcommand("models", "add_engines_parser", "list_engines",
                          "list installed engines, their capabilities and load errors"),
    "translate": Subcommand("translate", "add_parser", "run", "translate image files with a model file"),
    "train": Subcommand("train", "add_parser", "run", "train an engine on image folders"),
    "convert": Subcommand("models", "add_convert_parser", "convert",
                          "re-save a model file, e.g. in float16 with a name and description"),
    "demo": Subcommand("models", "add_demo_parser", "demo",
                       "open napari with a sample image and the Translate widget on the bundled stain model"),
}

# Errors whose message says it all (and their subclasses); their modules import no torch.
USER_ERRORS = (
    FileNotFoundError, ValueError, EngineError, DeviceError, ImageFileError, LayerDataError, ModelFileError,
)


def _module(subcommand: Subcommand) -> ModuleType:
    return importlib.import_module(f"{__name__}.{subcommand.module}")


def requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand *argv* names: its first word that is not an option (the top level has
    only ``--help`` and ``--version``, which take no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with the full parser of *command* and a one-line placeholder for every other
    subcommand (enough to list it and to reject a misspelt one)."""
    parser = argparse.ArgumentParser(
        prog="napari-i2i", description="Image-to-image translation (napari-i2i)."
    )
    parser.add_argument("--version", action="version", version=f"napari-i2i {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        if name == command:
            getattr(_module(subcommand), subcommand.add_parser)(commands)
        else:
            commands.add_parser(name, help=subcommand.summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(requested_command(argv)).parse_args(argv)
    subcommand = SUBCOMMANDS[args.command]
    try:
        return getattr(_module(subcommand), subcommand.run)(args)
    except KeyboardInterrupt:
        print("napari-i2i: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(f"napari-i2i: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
