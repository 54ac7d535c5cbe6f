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
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from napari_i2i.core.layer_data import ImageData, LayerDataError, iter_planes, layout
from trainers.loop import VALIDATION_DIR
from trainers.run import RUN_FILE

LAYERS_DIR = "layers"  # in RUN_DIR: the layers' planes as training folders
MANIFEST = "layers.json"  # in LAYERS_DIR: which layer each folder came from
STOP_FILE = "stop-requested"  # in RUN_DIR: its existence stops the run (see request_stop)
STDERR_FILE = "train-stderr.log"  # in RUN_DIR: the training process's messages
WARNING = re.compile(r"Warning: (.+)$")  # a Python warning's line on standard error
STOP_TIMEOUT_S = 120  # seconds a process gets to save its checkpoint when napari closes it

# The layer roles of each kind of training data, and the `napari-i2i train` flag of each.
ROLES = {
    "unpaired": {"domain_a": "--domain-a", "domain_b": "--domain-b"},
    "paired": {"pairs_a": "--pairs-a", "pairs_b": "--pairs-b"},
    "classes": {"classes": "--classes"},
}


class TrainJobError(ValueError):
    """A problem with the chosen layers, settings or run folder; the message says which."""


class TrainingCrashed(RuntimeError):
    """The training process ended with an unexpected error (its messages are in the run folder)."""


@dataclass(frozen=True)
class TrainRequest:
    """A training run as the user asked for it; ``layers`` maps each role of the engine's
    data kind (:data:`ROLES`) to its layer snapshots (empty when resuming)."""

    engine: str
    data: str  # the engine's kind of training data: "unpaired", "paired" or "classes"
    run_dir: Path
    iterations: int
    preset: str = "small"
    size: int = 64  # crop size
    device: str = "auto"
    resume: bool = False
    layers: dict[str, list[ImageData]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainProgress:
    fraction: float  # 0…1 of the iterations
    message: str
    preview: Path | None = None  # a validation image the run has just written


@dataclass(frozen=True)
class TrainOutcome:
    model: Path | None  # None: stopped on request, checkpoint saved
    warnings: list[str]  # what the training process warned about (e.g. a loss switched off)


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
    roles = ROLES.get(request.data)
    if roles is None:
        raise TrainJobError(f"engine {request.engine!r} trains on {request.data!r} data, which the "
                            "Train widget cannot make from layers; train it with `napari-i2i train`")
    for role in roles:
        if not request.layers.get(role):
            raise TrainJobError(f"choose the layer(s) for {role.replace('_', ' ')}")
    shapes = {role: [_checked_shape(image, request.size) for image in images]
              for role, images in request.layers.items()}
    if request.data == "paired":
        if len(request.layers["pairs_a"]) != 1 or len(request.layers["pairs_b"]) != 1:
            raise TrainJobError("paired training takes one layer of inputs (A) and one of targets (B)")
        (a,), (b,) = request.layers["pairs_a"], request.layers["pairs_b"]
        (shape_a,), (shape_b,) = shapes["pairs_a"], shapes["pairs_b"]
        if shape_a != shape_b:
            raise TrainJobError(
                f"paired layers must have equal shapes, pixel for pixel: {a.name} has "
                f"{_describe(shape_a)}, {b.name} has {_describe(shape_b)}"
            )
    if request.data == "classes" and len(request.layers["classes"]) < 2:
        raise TrainJobError("few-shot training learns to translate between classes: choose at least two "
                            "class layers (one class per layer, its planes the class's images)")


def _checked_shape(image: ImageData, crop: int) -> tuple[int, tuple[int, int]]:
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
    return plan.n_planes, (height, width)


def _describe(shape: tuple[int, tuple[int, int]]) -> str:
    planes, (height, width) = shape
    return f"{planes} plane(s) of {height}×{width}"


def rendered_planes(image: ImageData) -> Generator[np.ndarray, None, None]:
    """Each 2-D plane ``(H, W)`` or RGB image ``(H, W, 3)`` of *image*, uint8 through its
    contrast limits: what napari shows."""
    channels = 3 if image.rgb else 1
    for plane in iter_planes(image, layout(image, channels), channels):
        values = np.rint((plane[0].numpy() + 1.0) * 127.5).astype(np.uint8)  # (C, H, W)
        yield values[0] if channels == 1 else np.moveaxis(values, 0, -1)


def _folder_name(name: str, taken: set[str]) -> str:
    """A file-system-safe, unique folder name for a layer (class folders are named after layers)."""
    base = re.sub(r"[^\w.-]+", "_", name).strip("._") or "layer"
    unique, number = base, 2
    while unique.lower() in taken:  # case-insensitive file systems
        unique, number = f"{base}_{number}", number + 1
    taken.add(unique.lower())
    return unique


def _layer_folders(request: TrainRequest, layers_dir: Path) -> list[tuple[ImageData, Path, str]]:
    """Where each layer's planes go: (layer, folder, file-name prefix). Paired planes share
    their names across the two folders, which is how pairs are matched."""
    places = []
    if request.data == "classes":
        taken: set[str] = set()
        for image in request.layers["classes"]:
            places.append((image, layers_dir / "classes" / _folder_name(image.name, taken), ""))
    else:
        for role, images in request.layers.items():
            for index, image in enumerate(images):
                prefix = "" if request.data == "paired" else f"layer{index:02d}_"
                places.append((image, layers_dir / role, prefix))
    return places


def write_layers(request: TrainRequest) -> Generator[TrainProgress, None, dict[str, Path]]:
    """Write the layers' planes as PNG files under ``RUN_DIR/layers``; returns the folder of
    each role. Yields after every plane."""
    layers_dir = request.run_dir / LAYERS_DIR
    places = _layer_folders(request, layers_dir)
    manifest = []
    for image, folder, prefix in places:
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for index, plane in enumerate(rendered_planes(image)):
            path = folder / f"{prefix}{index:05d}.png"
            PILImage.fromarray(plane).save(path)
            files.append(path.name)
            yield TrainProgress(0.0, f"writing {image.name}: plane {index + 1}")
        manifest.append({"layer": image.name, "folder": str(folder.relative_to(layers_dir)), "files": files,
                         "contrast_limits": image.contrast_limits, "rgb": image.rgb})
    (layers_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return {role: layers_dir / role for role in ROLES[request.data]}


def train_command(request: TrainRequest, folders: dict[str, Path] | None) -> list[str]:
    """The ``napari-i2i train`` command line of *request* (``folders``: each role's, None to resume)."""
    command = [sys.executable, "-m", "napari_i2i", "train", request.engine, "--out", str(request.run_dir),
               "--iters", str(request.iterations), "--device", request.device, "--progress-json",
               "--stop-file", str(request.run_dir / STOP_FILE)]
    if request.resume:
        return command + ["--resume"]
    command += ["--preset", request.preset, "--size", str(request.size)]
    for role, flag in ROLES[request.data].items():
        command += [flag, str(folders[role])]
    return command


def request_stop(run_dir: Path) -> None:
    """Ask the run's training process to save a checkpoint and stop (safe from any thread)."""
    (Path(run_dir) / STOP_FILE).touch()


def run_training(request: TrainRequest) -> Generator[TrainProgress, None, TrainOutcome]:
    """Write the layers (unless resuming), then train in a child process, yielding progress after
    every iteration. The outcome has no model when stopped (:func:`request_stop`); resume such a
    run with ``resume=True``."""
    check_request(request)
    run_dir = request.run_dir
    folders = None
    if not request.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        folders = yield from write_layers(request)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    model, started, first = None, time.monotonic(), None
    shown = None  # the newest validation image passed on
    with open(run_dir / STDERR_FILE, "w") as messages:
        process = subprocess.Popen(
            train_command(request, folders), stdout=subprocess.PIPE, stderr=messages, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield TrainProgress(0.0, f"starting {request.engine} training")
            for line in process.stdout:
                try:
                    record = json.loads(line)
                except ValueError:  # something else printed to standard output
                    continue
                if "model" in record:
                    model = Path(record["model"])
                    continue
                iteration, total = record["iteration"], record["iterations"]
                if first is None:
                    first, started = iteration, time.monotonic()
                newest = _newest_validation_image(run_dir)
                preview, shown = (newest, newest) if newest != shown else (None, shown)
                yield TrainProgress(iteration / total, _progress_message(record, first, started), preview)
            status = process.wait()
        finally:
            if process.poll() is None:  # closed early (napari quitting): let it save, then end it
                request_stop(run_dir)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.stdout.close()
    errors = (run_dir / STDERR_FILE).read_text().strip().splitlines()
    warnings = [found.group(1) for line in errors if (found := WARNING.search(line))]
    if status == 0 and model is not None:
        return TrainOutcome(model, warnings)
    if status == 130:
        return TrainOutcome(None, warnings)
    prefix = "napari-i2i: error: "
    user_errors = [line.removeprefix(prefix) for line in errors if line.startswith(prefix)]
    if status == 2 and user_errors:
        raise TrainJobError(user_errors[-1])
    last = "\n".join(errors[-5:]) or "(no message)"
    raise TrainingCrashed(f"training stopped with exit status {status}; {run_dir / STDERR_FILE} ends:\n{last}")


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

