"""Training from image layers, without napari: layers → run folder → a ``napari-i2i train`` process.

The Train widget hands this module snapshots of the chosen layers. They are
written into ``RUN_DIR/layers/`` as ordinary training folders, and training
runs as ``napari-i2i train`` in a child process, so a run started in napari
is an ordinary run folder: resumable, inspectable and retrainable from the
command line. The child process also keeps napari responsive, and a crash
in training (out of memory, a driver fault) cannot take napari and the
user's unsaved layers down with it. The layers are only read.

What a model learns from is what napari shows: every 2-D plane (every RGB
image) goes through its layer's contrast limits to 8 bits, 0…255, the range
the trainers map to −1…1 for uint8, as the Translate widget maps the layer
through the same limits at inference. Non-RGB layers with leading axes are
stacks of gray planes, one training image each; RGBA loses its alpha.

The engine's data kind says which roles come from layers, where each
layer's planes go and which choices it refuses. The child process talks
back in JSON lines only (``napari-i2i train --progress-json``: progress,
warnings, a user error, the model); its standard error goes to
``RUN_DIR/train-stderr.log``, whose last lines a crash report quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from napari_i2i.contract.trainer_api import DataKind, LayerShape
from napari_i2i.core.layer_data import ImageData, LayerDataError, iter_planes, layout
from trainers.loop import VALIDATION_DIR
from trainers.run import RUN_FILE

LAYERS_DIR = "layers"  # in RUN_DIR: the layers' planes as training folders
MANIFEST = "layers.json"  # in LAYERS_DIR: which layer each folder came from
STOP_FILE = "stop-requested"  # in RUN_DIR: its existence stops the run (see request_stop)
STDERR_FILE = "train-stderr.log"  # in RUN_DIR: the training process's messages, for crash reports
LOG_FILE = "log.jsonl"  # in RUN_DIR: what the training loop logs (losses every few iterations, events)
LOGGED_POINTS = 5000  # at most this many logged records go to a plot: a long run's log adds at once
STOP_TIMEOUT_S = 120  # seconds a process gets to save its checkpoint when napari closes it


class TrainJobError(ValueError):
    """A problem with the chosen layers, settings or run folder; the message says which."""


class TrainingCrashed(Exception):
    """The training process ended with an unexpected error (its messages are in the run folder).

    Not a RuntimeError: superqt takes one out of a worker for a deleted Qt object, only warns and
    emits neither ``errored`` nor ``finished`` (the Train widget would never hear of the crash).
    """


@dataclass(frozen=True)
class TrainRequest:
    """A training run as the user asked for it; ``layers`` maps the key of each layer role of
    the engine's data kind to its layer snapshots (empty when resuming)."""

    engine: str
    data: DataKind  # what the engine's trainer trains on
    run_dir: Path
    iterations: int
    preset: str = "small"
    size: int = 64  # crop size
    device: str = "auto"
    precision: str = "auto"  # of a new run's steps (a resumed run keeps its own)
    resume: bool = False
    layers: dict[str, list[ImageData]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainProgress:
    fraction: float  # 0…1 of the iterations
    message: str
    preview: Path | None = None  # a validation image the run has just written
    losses: tuple[tuple[int, dict[str, float]], ...] = ()  # (iteration, {term: value}) points for a plot
    run_score: dict | None = None  # a validation's run score record (trainers.run_score), just come
    content_lost: str | None = None  # its content check's warning, when it failed


@dataclass(frozen=True)
class TrainOutcome:
    model: Path | None  # the model file; when stopped, the model so far (None: stopped before one)
    warnings: list[str]  # what the training process warned about (e.g. a loss switched off)
    stopped: bool = False  # stopped on request: the checkpoint is saved, resuming continues it


def check_request(request: TrainRequest) -> None:
    """Every problem that can be seen before anything is written, as a :class:`TrainJobError`."""
    run_dir = request.run_dir
    if request.resume:
        run_file = run_dir / RUN_FILE
        if not run_file.is_file():
            raise TrainJobError(f"{run_dir} holds no run to resume (no {RUN_FILE})")
        engine = json.loads(run_file.read_text()).get("engine")
        if engine != request.engine:
            raise TrainJobError(f"{run_dir} holds a {engine} run: choose the engine {engine} to resume it")
        return
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise TrainJobError(
            f"{run_dir} is not an empty folder: choose a new or empty run folder, "
            "or tick Resume to continue the run in it"
        )
    roles = request.data.layer_roles()
    if not roles or any(role.required for role in request.data.roles if role not in roles):
        raise TrainJobError(f"engine {request.engine!r} trains on {request.data.description}, which the "
                            "Train widget cannot make from layers; train it with `napari-i2i train`")
    for role in roles:
        if not request.layers.get(role.key):
            raise TrainJobError(f"choose the layer(s) for {role.key.replace('_', ' ')}")
    shapes = {role.key: [_checked_shape(image, request.size) for image in request.layers[role.key]]
              for role in roles}
    try:
        request.data.check_layers(shapes)
    except ValueError as error:
        raise TrainJobError(str(error)) from None


def _checked_shape(image: ImageData, crop: int) -> LayerShape:
    """The number of 2-D training images in *image* and their height and width, which must
    hold a training crop."""
    try:
        plan = layout(image, 3 if image.rgb else 1)
    except LayerDataError as error:
        raise TrainJobError(str(error)) from None
    height, width = plan.shape[-3:-1] if image.rgb else plan.shape[-2:]
    if min(height, width) < crop:
        raise TrainJobError(f"{image.name}: {min(height, width)} pixels on its short side, less than the "
                            f"{crop}-pixel training crops; lower the crop size")
    return LayerShape(image.name, plan.n_planes, height, width)


def rendered_planes(image: ImageData) -> Generator[np.ndarray, None, None]:
    """Each 2-D plane ``(H, W)`` or RGB image ``(H, W, 3)`` of *image*, uint8 through its
    contrast limits: what napari shows."""
    channels = 3 if image.rgb else 1
    for plane in iter_planes(image, layout(image, channels), channels):
        values = np.rint((plane[0].numpy() + 1.0) * 127.5).astype(np.uint8)  # (C, H, W)
        yield values[0] if channels == 1 else np.moveaxis(values, 0, -1)


def write_layers(request: TrainRequest) -> Generator[TrainProgress, None, dict[str, Path]]:
    """Write the layers' planes as PNG files under ``RUN_DIR/layers``, where the data kind places
    them; returns the folder of each layer role. Yields after every plane."""
    layers_dir = request.run_dir / LAYERS_DIR
    names = {key: [image.name for image in images] for key, images in request.layers.items()}
    places = request.data.layer_places(names, layers_dir)
    manifest = []
    for key, images in request.layers.items():
        for image, place in zip(images, places[key], strict=True):
            place.folder.mkdir(parents=True, exist_ok=True)
            files = []
            for index, plane in enumerate(rendered_planes(image)):
                path = place.folder / f"{place.prefix}{index:05d}.png"
                PILImage.fromarray(plane).save(path)
                files.append(path.name)
                yield TrainProgress(0.0, f"writing {image.name}: plane {index + 1}")
            manifest.append({"layer": image.name, "folder": str(place.folder.relative_to(layers_dir)),
                             "files": files, "contrast_limits": image.contrast_limits, "rgb": image.rgb})
    (layers_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return {role.key: request.data.role_folder(role.key, layers_dir) for role in request.data.layer_roles()}


def train_command(request: TrainRequest, folders: dict[str, Path] | None) -> list[str]:
    """The ``napari-i2i train`` command line of *request* (``folders``: each role's, None to resume)."""
    command = [sys.executable, "-m", "napari_i2i", "train", request.engine, "--out", str(request.run_dir),
               "--iters", str(request.iterations), "--device", request.device, "--progress-json",
               "--stop-file", str(request.run_dir / STOP_FILE)]
    if request.resume:
        return command + ["--resume"]
    command += ["--preset", request.preset, "--size", str(request.size), "--precision", request.precision]
    for role in request.data.layer_roles():
        command += [role.flag, str(folders[role.key])]
    return command


def request_stop(run_dir: Path) -> None:
    """Ask the run's training process to save a checkpoint and stop (safe from any thread)."""
    (Path(run_dir) / STOP_FILE).touch()


def run_training(request: TrainRequest) -> Generator[TrainProgress, None, TrainOutcome]:
    """Write the layers (unless resuming), then train in a child process, yielding progress after
    every iteration. Stopped (:func:`request_stop`), the outcome says so and has the model so far,
    if the run wrote one; resume such a run with ``resume=True``."""
    check_request(request)
    run_dir = request.run_dir
    folders = None
    if not request.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        folders = yield from write_layers(request)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    with open(run_dir / STDERR_FILE, "w") as messages:
        process = subprocess.Popen(
            train_command(request, folders), stdout=subprocess.PIPE, stderr=messages, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield TrainProgress(0.0, f"starting {request.engine} training")
            records = yield from _follow(process, run_dir)
            status = process.wait()
        finally:
            if process.poll() is None:  # closed early (napari quitting): let it save, then end it
                request_stop(run_dir)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.stdout.close()
            (run_dir / STOP_FILE).unlink(missing_ok=True)  # served or moot: the next run starts clean
    warnings = [record["warning"] for record in records if "warning" in record]
    models = [Path(record["model"]) for record in records if "model" in record]
    if status == 0 and models:
        return TrainOutcome(models[-1], warnings)
    if status == 130:
        return TrainOutcome(models[-1] if models else None, warnings, stopped=True)
    errors = [record["error"] for record in records if "error" in record]
    if status == 2 and errors:
        raise TrainJobError(errors[-1])
    last = "\n".join((run_dir / STDERR_FILE).read_text().strip().splitlines()[-5:]) or "(no message)"
    raise TrainingCrashed(f"training stopped with exit status {status}; {run_dir / STDERR_FILE} ends:\n{last}")


def _follow(process: subprocess.Popen, run_dir: Path) -> Generator[TrainProgress, None, list[dict]]:
    """Yield the progress records of the child's JSON lines (``--progress-json``) as they come;
    return its other records (warnings, an error, the model)."""
    others, started, first = [], time.monotonic(), None
    latest = TrainProgress(0.0, "starting")
    shown = None  # the newest validation image passed on
    for line in process.stdout:
        try:
            record = json.loads(line)
        except ValueError:  # something else printed to standard output
            continue
        if not isinstance(record, dict):
            continue
        if "run_score" in record:  # the fraction and message stay as they were
            latest = replace(latest, preview=None, losses=(), run_score=record["run_score"],
                             content_lost=record.get("content_lost"))
            yield latest
            continue
        if "iteration" not in record:
            others.append(record)
            continue
        iteration, total = record["iteration"], record["iterations"]
        if first is None:
            first, started = iteration, time.monotonic()
        newest = _newest_validation_image(run_dir)
        preview, shown = (newest, newest) if newest != shown else (None, shown)
        latest = TrainProgress(iteration / total, _progress_message(record, first, started), preview,
                               ((iteration, record["losses"]),))
        yield latest
    return others


def score_summary(record: dict) -> str:
    """A run score record as the Train widget shows it: score, then its terms."""
    terms = ", ".join(f"{name.replace('_', ' ')} {value:.2f}" for name, value in record.items()
                      if name not in ("run_score", "iteration") and isinstance(value, float))
    lost = f" · content lost: {record['content_lost']}" if record.get("content_lost") else ""
    return f"run score {record['run_score']:.3f} at iteration {record['iteration']} (higher is better; {terms}){lost}"


def logged_losses(run_dir: Path, most: int = LOGGED_POINTS) -> tuple[tuple[int, dict[str, float]], ...]:
    """The (iteration, {term: value}) points a run logged so far (``RUN_DIR/log.jsonl``): the
    earlier part of a run being resumed; of more than *most*, evenly spaced ones and the last.
    Lines that are not loss records (events, a torn last line) are skipped; no log, no points."""
    try:
        lines = (run_dir / LOG_FILE).read_text().splitlines()
    except OSError:
        return ()
    points = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" not in record and isinstance(record.get("iteration"), int):
            points.append((record["iteration"], {term: value for term, value in record.items()
                                                 if term not in ("iteration", "seconds")}))
    if len(points) <= most:
        return tuple(points)
    step = -(-(len(points) - 1) // (most - 1))  # ceil: at most `most - 1` of all but the last
    return tuple(points[:-1:step] + points[-1:])


def _newest_validation_image(run_dir: Path) -> Path | None:
    """The run's latest validation grid (inputs and their translations), if any."""
    folder = run_dir / VALIDATION_DIR
    return max(folder.glob("*.png"), default=None) if folder.is_dir() else None


def _progress_message(record: dict, first: int, started: float) -> str:
    iteration, total = record["iteration"], record["iterations"]
    elapsed = time.monotonic() - started
    message = f"iteration {iteration}/{total}"
    if iteration > first and elapsed > 0:
        rate = (iteration - first) / elapsed
        message += f" · {rate:.2f} it/s · {_duration((total - iteration) / rate)} left"
    losses = ", ".join(f"{name} {value:.3g}" for name, value in list(record["losses"].items())[:3])
    return f"{message}\n{losses}" if losses else message


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"

