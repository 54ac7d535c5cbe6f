"""What a dask worker runs for ``napari-i2i translate`` on many files: one file per task.

A task translates one file through the same core path as a single-file run
(:func:`~napari_i2i.core.translate.run_translation` into a store as it goes, or
:func:`~napari_i2i.core.image_io.write_images` at the end: temporary names renamed
once complete) and returns a small :class:`FileResult`, never the image: the worker
writes the output itself. Any error of that one file (unreadable, out of memory,
a model error) becomes the result's one-line reason, so a failed file never
stops the others. The model is loaded once per worker process and kept while the
file (path, size, modification time) and device stay the same.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_i2i.core.translate import TranslateOptions

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class BatchJob:
    """What every task of one run shares (small: sent with each task)."""

    model: Path  # absolute: workers may run elsewhere
    device: str  # --device, or "gpu-by-worker": cuda:(worker index mod GPUs) on a local cluster
    options: TranslateOptions
    references: tuple[Path, ...]  # style references or class examples, as the options' mode takes them
    max_pixels: int
    torch_threads: int | None  # None: the worker's own setting
    style_edits: tuple[tuple[int, float], ...] = ()  # --style-edit: (axis, value) pairs


@dataclass(frozen=True)
class FileResult:
    """One input's outcome, as the report shows it."""

    source: Path
    status: str  # OK, FAILED or SKIPPED
    outputs: tuple[Path, ...] = ()
    seconds: float = 0.0
    reason: str = ""  # one line, for FAILED and SKIPPED


GPU_BY_WORKER = "gpu-by-worker"
_cache_lock = threading.Lock()
_cache: dict[tuple, Any] = {}  # one (key, LoadedModel) pair at most


def one_line(error: BaseException) -> str:
    """*error* as one line: the message of the project's user errors, else type and first line."""
    from napari_i2i.frontends.cli import USER_ERRORS

    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, USER_ERRORS) and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def worker_device(requested: str) -> str:
    """The device of this worker: *requested*, or for :data:`GPU_BY_WORKER` the GPU of its index."""
    if requested != GPU_BY_WORKER:
        return requested
    import torch
    from distributed import get_worker

    return f"cuda:{int(get_worker().name) % torch.cuda.device_count()}"


def cached_model(path: Path, device: str):
    """The model of *path* on *device*, loaded once per worker while the file is unchanged."""
    from napari_i2i.core.device import resolve_device
    from napari_i2i.core.model_file import load_model

    status = path.stat()
    key = (str(path), status.st_size, status.st_mtime_ns, device)
    with _cache_lock:
        if key not in _cache:
            _cache.clear()  # the old model's memory goes before the new one loads
            _cache[key] = load_model(path, device=resolve_device(device))
        return _cache[key]


def _translate_one(loaded, options: TranslateOptions, header, image, references, output: Path,
                   style_edits: tuple[tuple[int, float], ...] = ()) -> list[Path]:
    """*image* through the model into *output*, as a single-file run writes it: into a store as
    the job goes (zarr, or a TIFF of a lazily read input), else whole at the end."""
    from napari_i2i.core.image_io import write_images
    from napari_i2i.core.job_progress import run_to_completion
    from napari_i2i.core.translate import planned_output, run_translation
    from napari_i2i.frontends.cli.translate_outputs import stored_outputs

    plan = planned_output(loaded, options, image.name, header.shape, header.rgb, header.dtype)
    conditioning = None
    if style_edits:
        from napari_i2i.core.style_edits import edited_conditioning

        conditioning = edited_conditioning(loaded.model, options, references, dict(style_edits),
                                           next(loaded.model.parameters()).device)
    [store] = stored_outputs([output], [plan], [header], [image])
    try:
        [result] = run_to_completion(run_translation(loaded, [image], options, references, conditioning, [store]))
    except BaseException:  # also a cancelled task: no partial store stays behind
        if store is not None:
            store.discard()
        raise
    if store is not None:
        return store.finish()
    return write_images([(output, result.data, result.rgb)], [image.pixel_size], [result.image_metadata])


def translate_file(job: BatchJob, source: Path, output: Path) -> FileResult:
    """Translate *source* into *output* (see the module); never raises for the file's own errors."""
    import torch

    start, threads = time.perf_counter(), torch.get_num_threads()
    try:
        from napari_i2i.core.image_io import image_header, read_image

        if job.torch_threads is not None and threads != job.torch_threads:
            torch.set_num_threads(job.torch_threads)
        loaded = cached_model(job.model, worker_device(job.device))
        references = [read_image(path, job.max_pixels) for path in job.references]
        written = _translate_one(loaded, job.options, image_header(source, job.max_pixels),
                                 read_image(source, job.max_pixels), references, output, job.style_edits)
    except Exception as error:  # noqa: BLE001 (the file's failure is reported, the others go on)
        return FileResult(source, FAILED, seconds=time.perf_counter() - start, reason=one_line(error))
    finally:  # a worker of a threads-only cluster shares its process: leave its thread count as it was
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return FileResult(source, OK, tuple(written), time.perf_counter() - start)

