"""``napari-i2i translate`` on many files with dask.distributed: checks, cluster, report.

Before any work, as for one job: the flags, the style files, the model, every
output name and type, and existing outputs (refused, replaced with
``--overwrite``, or their input skipped with ``--skip-existing``). An input
whose header cannot be read (or is over ``--max-pixels``) is reported failed
instead of stopping the run, like any file that fails later in a worker.

The files then go to a ``LocalCluster`` of worker processes (one task at a time
each; ``--workers`` of them, else one per GPU, else one per
:data:`CPU_CORES_PER_WORKER` cores; torch threads per worker ``--threads``, else
the cores shared out) or to the cluster of ``--scheduler``. Each task writes its
own outputs (:mod:`napari_i2i.frontends.cli.batch_worker`). A line per finished
file (not with ``--quiet``), then a report of every input on standard error and
the files written on standard output; exit status 1 when any input failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from napari_i2i.frontends.cli.batch_worker import (
    FAILED, GPU_BY_WORKER, OK, SKIPPED, BatchJob, FileResult, one_line, translate_file,
)
from napari_i2i.frontends.cli.translate_outputs import (
    check_name_template, check_output_files, finished_inputs, folders_to_create, output_paths,
)
from napari_i2i.frontends.cli.translate_request import job_options, pixel_hint

# Local workers without GPUs, unless --workers: one per this many CPU cores.
CPU_CORES_PER_WORKER = 2
# Seconds to reach a --scheduler before giving up.
CONNECT_SECONDS = 20


def _readable(sources: Sequence[Path], max_pixels: int) -> tuple[dict, dict[int, FileResult]]:
    """Each input's header, or its failure (the run goes on without it), by input index."""
    from napari_i2i.core.errors import ImageFileError
    from napari_i2i.core.image_io import image_header

    headers, failures = {}, {}
    for index, source in enumerate(sources):
        try:
            headers[index] = pixel_hint(image_header, source, max_pixels)
        except ImageFileError as error:
            failures[index] = FileResult(source, FAILED, reason=_without_path(one_line(error), source))
    return headers, failures


def _without_path(reason: str, source: Path) -> str:
    """*reason* without a leading ``SOURCE: `` (the report names the input already)."""
    for prefix in (f"{source}: ", f"{source.resolve()}: "):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


def local_layout(workers: int | None, gpus: int, threads: int | None, files: int, cores: int) -> tuple[int, int]:
    """Worker processes and torch threads for each on a local cluster: ``--workers``, else one
    per GPU, else one per :data:`CPU_CORES_PER_WORKER` cores, never more than the files;
    ``--threads``, else the cores shared out."""
    count = min(workers or gpus or max(1, cores // CPU_CORES_PER_WORKER), files)
    return count, threads or max(1, cores // count)


def _local_cluster(workers: int | None, gpus: int, threads: int | None, files: int):
    """A LocalCluster of worker processes, and the torch threads each should use."""
    from distributed import LocalCluster

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count, threads = local_layout(workers, gpus, threads, files, cores)
    # dashboard (and health checks) on a free port: the fixed default may be another cluster's
    cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    return cluster, threads


def _client(stack: ExitStack, args: argparse.Namespace, gpus: int, files: int):
    """A client of the cluster the run goes to, closed with *stack*; and the torch threads to set."""
    from distributed import Client

    if args.scheduler is None:
        cluster, threads = _local_cluster(args.workers, gpus, args.threads, files)
        stack.enter_context(cluster)
        return stack.enter_context(Client(cluster)), threads
    try:
        client = Client(args.scheduler, timeout=CONNECT_SECONDS)
    except (OSError, ValueError) as error:  # refused, timed out, or no address
        raise ValueError(f"--scheduler {args.scheduler}: cannot connect ({one_line(error)})") from None
    return stack.enter_context(client), args.threads


def _progress_line(done: int, total: int, result: FileResult) -> str:
    if result.status == OK:
        return f"napari-i2i: [{done}/{total}] ok {result.source} ({result.seconds:.1f} s)"
    return f"napari-i2i: [{done}/{total}] failed {result.source}: {result.reason}"


def _translate_all(args: argparse.Namespace, job: BatchJob, todo: dict[int, tuple[Path, Path, list[Path]]],
                   gpus: int) -> dict[int, FileResult]:
    """Every ``index: (source, output, its files)`` of *todo* through the cluster, a line per
    finished one; the results by index, named as the command line gave them."""
    from distributed import as_completed

    results = {}
    with ExitStack() as stack:
        client, threads = _client(stack, args, gpus, len(todo))
        job = replace(job, torch_threads=threads)
        run = uuid.uuid4().hex[:8]
        futures = {client.submit(translate_file, job, source.resolve(), output.resolve(), pure=False,
                                 key=f"napari-i2i-translate-{run}-{index}"): index
                   for index, (source, output, _) in todo.items()}
        for future in as_completed(futures):
            index = futures[future]
            source, _, files = todo[index]
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 (a worker that died: this file failed, the rest go on)
                result = FileResult(source, FAILED, reason=one_line(error))
            results[index] = replace(result, source=source, outputs=tuple(files) if result.status == OK else (),
                                     reason=_without_path(result.reason, source.resolve()))
            if not args.quiet:
                print(_progress_line(len(results), len(todo), results[index]), file=sys.stderr, flush=True)
    return results


def report(results: Sequence[FileResult]) -> str:
    """The end-of-run report: a count line, then one line per input."""
    counts = {status: sum(result.status == status for result in results) for status in (OK, FAILED, SKIPPED)}
    lines = [f"napari-i2i: {len(results)} input(s): {counts[OK]} ok, {counts[FAILED]} failed, "
             f"{counts[SKIPPED]} skipped"]
    for result in results:
        if result.status == OK:
            outputs = ", ".join(str(path) for path in result.outputs)
            lines.append(f"  ok       {result.source} -> {outputs} ({result.seconds:.1f} s)")
        else:
            lines.append(f"  {result.status:<8} {result.source}: {result.reason}")
    return "\n".join(lines)


def _output_files(loaded, options, sources: Sequence[Path], outputs: Sequence[Path],
                  headers: dict) -> dict[int, list[Path]]:
    """The files each readable input's output makes, by input index; a one-line error where an
    output's type cannot hold its result."""
    from napari_i2i.core.image_io import check_writable, output_files
    from napari_i2i.core.translate import planned_output

    files = {}
    for index, header in headers.items():
        plan = planned_output(loaded, options, sources[index].stem, header.shape, header.rgb, header.dtype)
        check_writable(outputs[index], plan.dtype, plan.rgb)
        files[index] = output_files(outputs[index], plan.leading_shape)
    return files


def _checked_style_edits(args: argparse.Namespace, loaded, options) -> dict[int, float]:
    """``--style-edit`` values, checked against the model here, before any work (each worker
    builds the edited style again from the same seed or references)."""
    from napari_i2i.core.image_io import read_image
    from napari_i2i.core.style_edits import check_editable, edited_conditioning, parse_style_edits

    edits = parse_style_edits(args.style_edit)
    if edits:
        check_editable(options)
        references = [read_image(path, args.max_pixels) for path in args.reference]
        edited_conditioning(loaded.model, options, references, edits, next(loaded.model.parameters()).device)
    return edits


def run_batch(args: argparse.Namespace) -> int:
    """Translate ``args.inputs`` on dask.distributed (see the module); the exit status."""
    from napari_i2i.contract.engine_api import StyleMode
    from napari_i2i.core.device import resolve_device
    from napari_i2i.core.image_io import image_header
    from napari_i2i.core.model_file import load_model

    if args.diversity_map is not None:
        raise ValueError("--diversity-map maps the samples of one input; not with many images or a cluster")
    template = None if args.name_template is None else check_name_template(args.name_template)
    style_files = [*args.reference, *args.class_images, *(args.interpolate or [])]
    for path in style_files:
        pixel_hint(image_header, path, args.max_pixels)
    headers, results = _readable(args.inputs, args.max_pixels)
    loaded = load_model(args.model, device=resolve_device(args.device))
    if not loaded.info.trained:
        print(f"warning: {args.model} holds untrained weights; its outputs are noise", file=sys.stderr)
    options = job_options(args, loaded)
    edits = _checked_style_edits(args, loaded, options)
    outputs = output_paths(args.inputs, args.output, options.direction, args.format, template)
    files = _output_files(loaded, options, args.inputs, outputs, headers)
    check_output_files([path for paths in files.values() for path in paths],
                       [args.model, *args.inputs, *style_files], overwrite=True)
    finished = dict(zip(files, finished_inputs(list(files.values()), args.overwrite, args.skip_existing)))
    results |= {index: FileResult(args.inputs[index], SKIPPED, tuple(files[index]), reason="its outputs exist")
                for index, done in finished.items() if done}
    todo = {index: (args.inputs[index], outputs[index], files[index])
            for index, done in finished.items() if not done}
    device = next(loaded.model.parameters()).device
    gpus = 0
    if device.type == "cuda" and args.device in ("auto", "cuda") and args.scheduler is None:
        import torch

        gpus = torch.cuda.device_count()
    given = {StyleMode.FEW_SHOT: args.class_images, StyleMode.INTERPOLATE: args.interpolate}
    job = BatchJob(model=args.model.resolve(), device=GPU_BY_WORKER if gpus else args.device, options=options,
                   references=tuple(path.resolve() for path in given.get(options.mode, args.reference)),
                   max_pixels=args.max_pixels, torch_threads=None, style_edits=tuple(edits.items()))
    del loaded  # the workers load their own
    for folder in folders_to_create([path for _, _, paths in todo.values() for path in paths]):
        folder.mkdir(parents=True, exist_ok=True)
        print(f"napari-i2i: made the output folder {folder}", file=sys.stderr)
    if todo:
        results |= _translate_all(args, job, todo, gpus)
    in_order = [results[index] for index in sorted(results)]
    for result in in_order:
        for path in result.outputs if result.status == OK else ():
            print(path)
    print(report(in_order), file=sys.stderr)
    return 1 if any(result.status == FAILED for result in in_order) else 0
