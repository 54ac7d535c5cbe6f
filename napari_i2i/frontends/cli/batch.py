"""Many images for ``napari-i2i translate``: folders and glob patterns as inputs, and
when the files go to dask.distributed instead of one job in this process.

An input that is a folder stands for its image files (by name, hidden files
left out, not recursive; a folder with an image type, a ``.zarr`` store, is one
image); one with ``*``, ``?`` or ``[`` is a glob pattern
(quoted, so that the shell leaves it to us), its matches sorted by name.

The files run on a dask.distributed cluster (:mod:`napari_i2i.frontends.cli.batch_run`)
when ``--workers``, ``--scheduler`` or ``--skip-existing`` is given or there are
more than :data:`IN_PROCESS_MAX_FILES` inputs; otherwise as one job in this
process, as for a single file (a local cluster's start and each worker's
``import torch`` cost seconds that a few images do not repay). Importing this
module imports neither torch nor dask, so ``translate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import glob
from collections.abc import Sequence
from pathlib import Path

from napari_i2i.core.constants import SUFFIXES
from napari_i2i.frontends.cli.arguments import positive

# More inputs than this run on a cluster even without --workers/--scheduler.
IN_PROCESS_MAX_FILES = 8
_GLOB_CHARACTERS = frozenset("*?[")


def add_batch_flags(translate: argparse.ArgumentParser) -> None:
    """The flags of the many-files path."""
    batch = translate.add_argument_group(
        "many images",
        f"INPUT may be a folder (its image files) or a quoted glob pattern ('slides/*.tif'). More than "
        f"{IN_PROCESS_MAX_FILES} inputs, --workers, --scheduler or --skip-existing run the files on "
        "dask.distributed: a failed file does not stop the others, each is reported at the end (exit status 1 "
        "if any failed).",
    )
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive, default=None, metavar="N",
                       help="local worker processes (default: one per GPU, else one per 2 CPU cores)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="an existing dask.distributed scheduler, e.g. tcp://head:8786 (dask-jobqueue, "
                       "Kubernetes); its workers must see the files under the same paths")
    batch.add_argument("--threads", type=positive, default=None, metavar="N",
                       help="torch threads in each worker (default for local workers: CPU cores / workers)")
    batch.add_argument("--skip-existing", action="store_true",
                       help="skip inputs whose outputs all exist (a rerun finishes what is missing)")


def _folder_images(folder: Path) -> list[Path]:
    images = sorted(path for path in folder.iterdir()
                    if path.suffix.lower() in SUFFIXES and not path.name.startswith("."))
    if not images:
        raise ValueError(f"{folder}: a folder without image files ({', '.join(sorted(SUFFIXES))})")
    return images


def _glob_images(pattern: str) -> list[Path]:
    matches = sorted(Path(match) for match in glob.glob(pattern) if Path(match).suffix.lower() in SUFFIXES)
    if not matches:
        raise ValueError(f"{pattern}: no image file matches this pattern")
    return matches


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """*inputs* with each folder and glob pattern replaced by the files it names (see the module)."""
    expanded = []
    for given in inputs:
        if given.is_dir() and given.suffix.lower() not in SUFFIXES:
            expanded += _folder_images(given)
        elif not given.exists() and _GLOB_CHARACTERS & set(str(given)):
            expanded += _glob_images(str(given))
        else:
            expanded.append(given)
    return expanded


def on_cluster(args: argparse.Namespace) -> bool:
    """Whether the (expanded) inputs run on dask.distributed; ``--threads`` needs that."""
    clustered = (args.workers is not None or args.scheduler is not None or args.skip_existing
                 or len(args.inputs) > IN_PROCESS_MAX_FILES)
    if args.overwrite and args.skip_existing:
        raise ValueError("--skip-existing keeps existing outputs, --overwrite replaces them: give one")
    if args.threads is not None and not clustered:
        raise ValueError("--threads sets the torch threads of dask workers; give it with --workers or "
                         "--scheduler (one job in this process follows OMP_NUM_THREADS)")
    return clustered
