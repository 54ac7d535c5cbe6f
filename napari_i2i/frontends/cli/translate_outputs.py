"""Where ``napari-i2i translate`` writes, checked before any work.

With one input, ``-o`` may name the output file. Otherwise ``-o`` is a folder
and each output is named by ``--name-template`` (default
:data:`DEFAULT_NAME_TEMPLATE`, fields in :data:`NAME_FIELDS`). A PNG/JPEG
output of a stack is one file per plane (``NAME_0.png``, …). No output may be
an input (model, image, reference: paths compared after resolving links), two
outputs may not share a file, and an existing file is replaced only with
``--overwrite``. A zarr store (``.zarr``, ``.ome.zarr``, a folder) counts as one
file. Nothing here imports torch.
"""

from __future__ import annotations

import os
import string
from collections.abc import Sequence
from pathlib import Path

from napari_i2i.core.constants import STORE_SUFFIXES, SUFFIXES

DEFAULT_NAME_TEMPLATE = "{stem}_{direction}{suffix}"
NAME_FIELDS = {
    "stem": "the input's file name without its type (cells for cells.png)",
    "direction": "the direction translated (a2b)",
    "suffix": "the output's type with its dot: the input's, or .FORMAT with --format",
    "index": "the input's position on the command line, from 1",
}


def check_name_template(template: str) -> str:
    """*template* if it names files with known fields only; else a one-line ``ValueError``."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise ValueError(f"--name-template {template!r}: {error}") from None
    unknown = [field for field in fields if field not in NAME_FIELDS]
    if unknown:
        raise ValueError(f"--name-template {template!r}: unknown field {{{unknown[0]}}}; "
                         f"fields are {', '.join('{' + name + '}' for name in NAME_FIELDS)}")
    return template


def _name(template: str, source: Path, index: int, direction: str, file_format: str | None) -> str:
    suffix = f".{file_format}" if file_format else source.suffix
    try:
        name = template.format(stem=source.stem, direction=direction, suffix=suffix, index=index)
    except (ValueError, TypeError) as error:
        raise ValueError(f"--name-template {template!r}: {error}") from None
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"--name-template {template!r} gives {name!r}, not a file name")
    if Path(name).suffix.lower() not in SUFFIXES:
        raise ValueError(f"--name-template {template!r} gives {name!r}, which is no image type "
                         f"({', '.join(sorted(SUFFIXES))}); end it with {{suffix}}")
    return name


def output_paths(inputs: Sequence[Path], out: Path, direction: str, file_format: str | None,
                 template: str | None) -> list[Path]:
    """The output path of each input (before PNG/JPEG stacks become one file per plane)."""
    if out.suffix and out.suffix.lower() not in SUFFIXES and not out.is_dir():
        raise ValueError(f"{out}: unsupported output type; use one of {sorted(SUFFIXES)}")
    if out.suffix.lower() in SUFFIXES and (not out.is_dir() or out.suffix.lower() in STORE_SUFFIXES):
        if len(inputs) > 1:
            raise ValueError(f"{out}: with several inputs, -o must be a folder")
        if template is not None:
            raise ValueError(f"--name-template names outputs in a folder; -o {out} is a file")
        return [out]
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a folder for the outputs")
    template = DEFAULT_NAME_TEMPLATE if template is None else template
    return [out / _name(template, source, index, direction, file_format)
            for index, source in enumerate(inputs, 1)]


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_output_files(files: Sequence[Path], inputs: Sequence[Path], overwrite: bool) -> None:
    """Refuse a file that is an input, written twice, or already there without *overwrite*."""
    seen: dict[Path, Path] = {}
    for path in files:
        given = next((source for source in inputs if _same_file(path, source)), None)
        if given is not None:
            raise ValueError(f"{path}: is an input ({given}); napari-i2i never writes over an input, "
                             "choose another -o or --name-template")
        key = path.resolve()
        if key in seen:
            raise ValueError(f"two outputs would be written to {path}; give inputs different names "
                             "or a --name-template with {index}")
        seen[key] = path
        if path.exists() and not overwrite:
            raise ValueError(f"{path}: exists; --overwrite replaces it")
        if path.is_dir() and path.suffix.lower() not in STORE_SUFFIXES:
            raise ValueError(f"{path}: is a folder, not an output file")


def folders_to_create(files: Sequence[Path]) -> list[Path]:
    """The missing folders the outputs go in; a ``ValueError`` where one cannot be made."""
    missing = []
    for folder in dict.fromkeys(path.parent for path in files):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"{folder}: cannot make this folder, {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"{folder}: cannot write in {existing}")
        if existing != folder:
            missing.append(folder)
    return missing


def finished_inputs(files_per_input: Sequence[Sequence[Path]], overwrite: bool, skip_existing: bool) -> list[bool]:
    """For each input, whether ``--skip-existing`` skips it (all its output files exist); any
    other existing output is refused without ``--overwrite``, as :func:`check_output_files` does."""
    finished = []
    for files in files_per_input:
        existing = [path for path in files if path.exists()]
        finished.append(skip_existing and bool(files) and len(existing) == len(files))
        if existing and not finished[-1] and not overwrite:
            if skip_existing:
                raise ValueError(f"{existing[0]}: exists but other outputs of its input do not; "
                                 "remove it to translate that input again")
            raise ValueError(f"{existing[0]}: exists; --overwrite replaces it, --skip-existing skips its input")
    return finished


def written_as_made(path: Path, source) -> bool:
    """Whether the output *path* of *source* (an ``ImageData``) is written band by band as the job
    goes, not whole at the end: a zarr store, or any output of a lazily read input (a TIFF is then
    written tile by tile, PNG/JPEG files plane by plane, from a temporary store)."""
    return path.suffix.lower() in STORE_SUFFIXES or source.lazy


def stored_outputs(outputs: Sequence[Path], planned: Sequence, headers: Sequence, sources: Sequence) -> list:
    """Per output, a ``core.stores.PendingOutput`` that the job writes into band by band
    (:func:`written_as_made`), with the result's axes and channel names, or None for one written
    whole at the end."""
    from napari_i2i.core.image_metadata import translated_metadata
    from napari_i2i.core.stores import PendingOutput

    stored = []
    for path, plan, header, source in zip(outputs, planned, headers, sources):
        if not written_as_made(path, source):
            stored.append(None)
            continue
        spatial = header.shape[-3:-1] if header.rgb else header.shape[-2:]
        shape = (*plan.leading_shape, *spatial, *((3,) if plan.rgb else ()))
        metadata = translated_metadata(source.image_metadata, plan.axes, plan.samples_axis, plan.rgb, shape)
        stored.append(PendingOutput(path, shape, plan.dtype, plan.rgb, source.pixel_size, metadata))
    return stored


def stored_diversity_map(path: Path, samples, output_channels: int):
    """The ``--diversity-map`` of a result of random styles written as made into *samples* (a
    ``PendingOutput``): a float32 ``PendingOutput`` at *path* that the job fills band by band too
    (``core.diversity.DiversityBands``), with the result's pixel size and axes less samples and channels."""
    import numpy as np

    from napari_i2i.core.diversity import map_metadata, map_shape
    from napari_i2i.core.stores import PendingOutput

    return PendingOutput(path, map_shape(samples.shape, output_channels), np.dtype(np.float32), False,
                         samples.pixel_size, map_metadata(samples.metadata, output_channels))
