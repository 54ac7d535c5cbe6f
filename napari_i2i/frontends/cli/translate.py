"""``napari-i2i translate``: image files through a model file.

Everything is checked before any work (inputs' headers and pixel limit, the
model, every output file and its type); outputs are written only once the
whole job is done, under temporary names renamed at the end, so a failed or
interrupted run leaves no partial file and never touches an input. Outputs
too large to hold (zarr stores, any output of a lazily read input; ``core.stores``)
are written as the job goes under a temporary name, renamed at the end. Importing
this module (``napari-i2i translate --help``) imports no torch: the core
modules are imported in :func:`run`.
"""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path

from napari_i2i.core.constants import (
    COMPILE_CHOICES, DEFAULT_MAX_PIXELS, DEFAULT_TILE, DEVICE_CHOICES, PRECISION_CHOICES, SUFFIXES,
)
from napari_i2i.frontends.cli.arguments import positive
from napari_i2i.frontends.cli.batch import add_batch_flags, expand_inputs, on_cluster
from napari_i2i.frontends.cli.progress import TranslationProgressLines
from napari_i2i.frontends.cli.translate_outputs import (
    DEFAULT_NAME_TEMPLATE, NAME_FIELDS, check_name_template, check_output_files, folders_to_create, output_paths,
    stored_diversity_map, stored_outputs, written_as_made,
)
from napari_i2i.frontends.cli.translate_request import (  # noqa: F401 (CLI_WORDS re-exported)
    CLI_WORDS, direction_for as _direction, pixel_hint as _pixel_hint, style_inputs as _style_inputs,
)



def add_parser(commands) -> None:
    """``napari-i2i translate``."""
    translate = commands.add_parser(
        "translate",
        help="translate image files with a model file",
        description="Translate TIFF/PNG/JPEG images and zarr/OME-Zarr stores. With one input, OUT may be a "
        f"file; otherwise OUT is a folder and outputs are named by --name-template ({DEFAULT_NAME_TEMPLATE}). No input is ever "
        "written over, an existing output only with --overwrite.",
    )
    translate.add_argument("model", type=Path, help="model file (.safetensors)")
    translate.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    translate.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                           help="output file (one input) or folder (made if missing)")
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
    translate.add_argument(
        "--typical-style", action="store_true",
        help="multi-domain models (unified): the target domain's typical style, the mean style of its "
        "training images (stored in the model when training ended), instead of a reference or a random style",
    )
    translate.add_argument("--samples", type=positive, default=1, help="random styles per input")
    translate.add_argument("--seed", type=int, default=0, help="seed of the random styles")
    translate.add_argument("--direction", default=None, help="e.g. a2b or b2a (default: the model's first)")
    translate.add_argument("--domain", default=None, metavar="NAME",
                           help="models whose directions are target domains (unified): translate into "
                           "domain NAME (the direction to_NAME)")
    translate.add_argument(
        "--style-edit", action="append", default=[], metavar="AXIS=VALUE",
        help="models with style axes (munit, step, unified): set style axis AXIS (counted from 0, as the "
        "style explorer's sliders) to VALUE in standard units (training styles: mean 0, sd 1), starting "
        "from the style of --seed or of the --reference images; repeat for more axes",
    )
    translate.add_argument(
        "--diversity-map", type=Path, default=None, metavar="OUT.tif",
        help="with one input and --samples N >= 2 (random styles): also write the per-pixel standard "
        "deviation over the samples, averaged over channels (float32 TIFF, or OME-Zarr for OUT.ome.zarr; "
        "written band by band when the output is)",
    )
    _add_run_flags(translate)
    translate.add_argument("--format", default=None, choices=sorted(s.lstrip(".") for s in SUFFIXES),
                           help="output type when OUT is a folder (default: the input's)")
    translate.add_argument(
        "--name-template", default=None, metavar="TEMPLATE",
        help=f"output names in the OUT folder (default {DEFAULT_NAME_TEMPLATE}); fields: "
        + "; ".join(f"{{{name}}} {meaning}" for name, meaning in NAME_FIELDS.items()),
    )
    translate.add_argument("--overwrite", action="store_true",
                           help="replace output files that exist (never an input)")
    translate.add_argument(
        "--max-pixels", type=positive, default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse images of more pixels (height × width × planes) than this, from the file's header "
        f"(default {DEFAULT_MAX_PIXELS}, 2**28)",
    )
    translate.add_argument("--quiet", action="store_true", help="no progress")
    add_batch_flags(translate)


@cache
def _add_run_flags(translate: argparse.ArgumentParser) -> None:
    """Where and how the job runs: device, tile size, precision, compilation."""
    translate.add_argument("--device", default="auto", help=f"{'|'.join(DEVICE_CHOICES)} or cuda:N")
    translate.add_argument("--tile", type=positive, default=DEFAULT_TILE, metavar="PX",
                           help="tile size in pixels; bounds memory for large images")
    translate.add_argument(
        "--precision", default="auto", choices=PRECISION_CHOICES,
        help="arithmetic of the model: auto = bf16 where the hardware runs it fast (CPUs with AVX512-BF16 or "
        "AMX, GPUs with bf16), else fp32; fp16 on GPUs only (default auto)",
    )
    translate.add_argument(
        "--compile", default="auto", choices=COMPILE_CHOICES,
        help="compile the model with torch.compile: faster per pixel after a first compile of tens of "
        "seconds (cached on disk for later runs); auto compiles only jobs large enough to repay it",
    )


def _translate(steps, quiet: bool) -> list:
    """Drive the job, showing its progress (a bar on a terminal, else lines) and any notice."""
    from tqdm import tqdm

    lines = None if quiet or sys.stderr.isatty() else TranslationProgressLines()
    with tqdm(total=1000, disable=quiet or lines is not None, unit="‰", desc="translating",
              file=sys.stderr) as bar:
        while True:
            try:
                progress = next(steps)
            except StopIteration as finished:
                results = finished.value
                break
            if progress.notice:
                bar.write(progress.message, file=sys.stderr)
            if lines is not None:
                lines.update(progress)
            bar.update(round(progress.fraction * 1000) - bar.n)
    if lines is not None:
        lines.close()
    return results


def _style_edits(texts: list[str]) -> dict[int, float]:
    """``--style-edit`` values, their syntax checked before the model loads."""
    if not texts:
        return {}
    from napari_i2i.core.style_edits import parse_style_edits

    return parse_style_edits(texts)


def _diversity_files(args: argparse.Namespace, options, plan, out_channels: int) -> list[Path]:
    """The files ``--diversity-map`` writes, checked like the outputs (before any work)."""
    import numpy as np

    from napari_i2i.core.diversity import require_samples
    from napari_i2i.core.image_io import check_writable, output_files

    if args.diversity_map is None:
        return []
    if len(args.inputs) != 1:
        raise ValueError(f"--diversity-map maps one input's samples; {len(args.inputs)} inputs given")
    require_samples(options, "--samples")
    check_writable(args.diversity_map, np.dtype(np.float32), False)
    leading = plan.leading_shape[1:]  # the samples axis goes
    if out_channels not in (1, 3):  # and so does a channel axis before Y/X
        leading = leading[:-1]
    return output_files(args.diversity_map, leading)


def _make_folders(folders: list[Path]) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        print(f"napari-i2i: made the output folder {folder}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from napari_i2i.contract.engine_api import StyleMode
    from napari_i2i.core.device import resolve_device, resolve_precision
    from napari_i2i.core.image_io import check_writable, image_header, output_files, read_image, write_images
    from napari_i2i.core.model_file import load_model
    from napari_i2i.core.style_choice import choose_style_mode
    from napari_i2i.core.translate import TranslateOptions, check_options, planned_output, run_translation

    args.inputs = expand_inputs(args.inputs)
    if on_cluster(args):
        from napari_i2i.frontends.cli.batch_run import run_batch

        return run_batch(args)
    if args.domain is not None and args.direction is not None:
        raise ValueError("give --domain NAME or --direction, not both (--domain NAME is --direction to_NAME)")
    template = None if args.name_template is None else check_name_template(args.name_template)
    style_edits = _style_edits(args.style_edit)
    style_files = [*args.reference, *args.class_images, *(args.interpolate or [])]
    headers = [_pixel_hint(image_header, path, args.max_pixels) for path in [*args.inputs, *style_files]]
    loaded = load_model(args.model, device=resolve_device(args.device))
    if not loaded.info.trained:
        print(f"warning: {args.model} holds untrained weights; its outputs are noise", file=sys.stderr)
    direction = _direction(args, loaded.model.capabilities)
    mode = choose_style_mode(_style_inputs(args), loaded.model.capabilities.style_modes, loaded.info.engine,
                             CLI_WORDS)
    options = TranslateOptions(direction=direction, mode=mode, seed=args.seed, tile=args.tile,
                               precision=args.precision, compile=args.compile,
                               n_samples=args.steps if mode is StyleMode.INTERPOLATE else args.samples)
    check_options(loaded, options)
    if style_edits:
        from napari_i2i.core.style_edits import check_editable

        check_editable(options)
    resolve_precision(args.precision, next(loaded.model.parameters()).device)  # fp16 on a CPU: refused now
    outputs = output_paths(args.inputs, args.output, direction, args.format, template)
    planned = [planned_output(loaded, options, source.stem, header.shape, header.rgb, header.dtype)
               for source, header in zip(args.inputs, headers)]
    files = []
    for path, plan in zip(outputs, planned):
        check_writable(path, plan.dtype, plan.rgb)
        files += output_files(path, plan.leading_shape)
    files += _diversity_files(args, options, planned[0], loaded.model.capabilities.directions[direction][1])
    check_output_files(files, [args.model, *args.inputs, *style_files], args.overwrite)
    new_folders = folders_to_create(files)

    sources = [_pixel_hint(read_image, path, args.max_pixels) for path in args.inputs]
    given = {StyleMode.FEW_SHOT: args.class_images, StyleMode.INTERPOLATE: args.interpolate}
    references = [_pixel_hint(read_image, path, args.max_pixels) for path in given.get(mode, args.reference)]
    conditioning = None
    if style_edits:
        from napari_i2i.core.style_edits import edited_conditioning

        conditioning = edited_conditioning(loaded.model, options, references, style_edits,
                                           next(loaded.model.parameters()).device)
    if any(written_as_made(path, source) for path, source in zip(outputs, sources)):
        _make_folders(new_folders)  # those outputs are written into their folders as the job goes
        new_folders = []
    out_channels = loaded.model.capabilities.directions[direction][1]
    stored = stored_outputs(outputs, planned, headers, sources)
    targets, stored_map = _with_stored_diversity_map(args.diversity_map, stored, out_channels)
    try:
        results = _translate(run_translation(loaded, sources, options, references, conditioning, targets),
                             args.quiet)
    except BaseException:  # also Ctrl-C: no partial store stays behind
        for store in filter(None, [*stored, stored_map]):
            store.discard()
        raise
    _make_folders(new_folders)
    for store in filter(None, [*stored, stored_map]):
        for written in store.finish():
            print(written)
    items = [(path, result.data, result.rgb)
             for result, path, store in zip(results, outputs, stored) if store is None]
    pixel_sizes = [source.pixel_size for source, store in zip(sources, stored) if store is None]
    image_metadata = [result.image_metadata for result, store in zip(results, stored) if store is None]
    if args.diversity_map is not None and stored_map is None:
        from napari_i2i.core.diversity import diversity_result, map_metadata

        items.append((args.diversity_map, diversity_result(results[0], out_channels).data, False))
        pixel_sizes.append(sources[0].pixel_size)
        image_metadata.append(map_metadata(results[0].image_metadata, out_channels))
    for written in write_images(items, pixel_sizes, image_metadata):
        print(written)
    return 0


def _with_stored_diversity_map(path: Path | None, stored: list, out_channels: int) -> tuple[list, object]:
    """The job's output targets and, for ``--diversity-map`` of an output written as made (one
    input), the map's own store, which the first target fills band by band alongside the samples."""
    if path is None or stored[0] is None:
        return stored, None
    from napari_i2i.core.diversity import DiversityBands

    stored_map = stored_diversity_map(path, stored[0], out_channels)
    return [DiversityBands(stored[0], stored_map, out_channels)], stored_map
