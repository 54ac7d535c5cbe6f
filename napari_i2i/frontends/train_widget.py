"""The Train dock widget: train a model on image layers, without leaving napari.

The layers (snapshots taken in the main thread) are written into the run
folder and trained on by a ``napari-i2i train`` child process
(:mod:`napari_i2i.frontends.train_job`); a worker thread relays its progress. Cancel
asks the process to save a checkpoint and stop; *Resume* continues such a
run. A plot shows the run's losses as they come (the earlier part of a resumed
run from its log). The model file it writes is listed in every Translate
widget of the session.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, thread_worker
from napari.utils.notifications import (
    show_error,
    show_info,
    show_warning,
)
from PIL import Image as PILImage

from napari_i2i.contract.registry import default_registry
from napari_i2i.contract.trainer_api import DataKind, DataRole, LayerChoice
from napari_i2i.core.device import DEVICE_CHOICES, PRECISION_CHOICES
from napari_i2i.frontends.layer_choosers import PROGRESS_STEPS, LayerChoosersWidget, snapshot
from napari_i2i.frontends.loss_plot import LossPlot
from napari_i2i.frontends.train_job import (
    TrainJobError,
    TrainOutcome,
    TrainProgress,
    TrainRequest,
    check_request,
    logged_losses,
    request_stop,
    run_training,
    score_summary,
)
from napari_i2i.frontends.trained_models import TRAINED_MODELS
from trainers.run import preset_loop_settings


LIKELY_DATA_KIND = "unpaired"  # two folders of unrelated images: what most users have


@thread_worker(start_thread=False, ignore_errors=True)
def training_worker(request: TrainRequest, with_log: bool = False) -> Generator[TrainProgress, None, TrainOutcome]:
    """Relay a training process's progress, first (*with_log*) the losses the run logged before;
    never touches napari layers (it has snapshots)."""
    if with_log:
        yield TrainProgress(0.0, "resuming…", losses=logged_losses(request.run_dir))
    return (yield from run_training(request))


class TrainWidget(LayerChoosersWidget):
    """Train an engine on image layers: one layer chooser per layer role of each registered data
    kind (unpaired domains, aligned pairs, classes, a plugin's), only the engine's kind's shown."""

    user_errors = (TrainJobError,)

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self._registry = default_registry()
        self.worker: GeneratorWorker | None = None
        self._run_dir: Path | None = None  # of the run in progress
        self._preview: Image | None = None  # the layer showing the run's validation images

        self.engine = ComboBox(label="Engine", choices=self._registry.trainable(), value=self._likely_engine())
        self.preset = ComboBox(label="Preset", choices=self._preset_choices,
                               tooltip="small: trains in minutes on a CPU; paper: the published sizes")
        # by (data kind, role key); named after the role key, so `widget.domain_a` finds one
        self.choosers: dict[tuple[str, str], Select | ComboBox] = {
            (kind.name, role.key): self._chooser(role)
            for kind in self._registry.data_kinds() for role in kind.layer_roles()
        }
        self.iterations = SpinBox(label="Iterations", min=1, max=10_000_000, step=100)
        self.size = SpinBox(label="Crop size", min=8, max=4096, step=8, tooltip="training crops, pixels")
        self.device = ComboBox(label="Device", choices=DEVICE_CHOICES, value="auto")
        self.precision = ComboBox(label="Precision", choices=PRECISION_CHOICES, value="auto",
                                  tooltip="auto: bf16 where the hardware runs it fast, else fp32; fp16: GPUs only")
        self.run_folder = FileEdit(label="Run folder", mode="d",
                                   tooltip="a new or empty folder for the layers, checkpoints, log and model")
        self.resume = CheckBox(label="Resume the run in this folder", value=False)
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip="save a checkpoint and stop; Resume continues")
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_STEPS)
        self.status = Label(value="choose layers and a run folder")
        self.run_score = Label(value="run score: after the first validation",
                               tooltip="how good the run looks on its validation images, without ground truth "
                               "(docs/training.md): compare runs by it")
        self._notified: set[str] = set()  # content-lost warnings already shown while training
        self.loss_plot = LossPlot()
        self._plotted_run: Path | None = None  # whose losses the plot shows
        self.extend([
            self.engine, self.preset, *self.layer_choosers(), self.iterations, self.size, self.device, self.precision,
            self.run_folder, self.resume, self.train_button, self.cancel_button, self.progress, self.status,
            self.run_score,
        ])
        self.native.layout().addWidget(self.loss_plot.native)
        self.fit_dock()

        self.engine.changed.connect(self._engine_changed)
        self.preset.changed.connect(self._fill_preset_defaults)
        self.resume.changed.connect(self._show_data_controls)
        self.train_button.changed.connect(self.train)
        self.cancel_button.changed.connect(self.cancel)
        self.follow_layers()
        self._engine_changed()

    def layer_choosers(self) -> list[Select | ComboBox]:
        return list(self.choosers.values())

    def _chooser(self, role: DataRole) -> Select | ComboBox:
        """A multi-select list for several layers, a drop-down for exactly one."""
        widget = Select if role.layers is LayerChoice.SEVERAL else ComboBox
        return widget(name=role.key, label=role.label or role.key.replace("_", " "), tooltip=role.tooltip,
                      choices=self.image_layers)

    def chooser(self, key: str) -> Select | ComboBox:
        """The layer chooser of role *key* of the chosen engine's data kind."""
        return self.choosers[(self._data_kind().name, key)]

    def _data_kind(self) -> DataKind:
        return self._registry.trainer_data_kind(self.engine.value)

    def _likely_engine(self) -> str | None:
        """The first engine trained on unpaired images (MUNIT of the built-ins), else the first."""
        engines = self._registry.trainable()
        likely = [e for e in engines if self._registry.trainer(e).data == LIKELY_DATA_KIND]
        return (likely or engines or [None])[0]

    # --- controls -----------------------------------------------------------

    def _preset_choices(self, _widget: Any = None) -> list[str]:
        engine = self.engine.value
        return list(self._registry.trainer(engine).presets) if engine else []

    def _engine_changed(self, _value: Any = None) -> None:
        engine = self.engine.value
        self.engine.tooltip = self._registry.get(engine).description if engine else "no trainable engine"
        self.preset.reset_choices()
        if "small" in self.preset.choices:
            self.preset.value = "small"
        self._fill_preset_defaults()
        self._show_data_controls()

    def _fill_preset_defaults(self, _value: Any = None) -> None:
        """Iterations and crop size as `napari-i2i train` would use them with this preset."""
        if not (self.engine.value and self.preset.value):
            return
        loop = preset_loop_settings(self.engine.value, self.preset.value, self._registry)
        self.iterations.value, self.size.value = loop["iterations"], loop["size"]

    def _show_data_controls(self, _value: Any = None) -> None:
        """Only the layer choosers of the engine's kind of data; none when resuming."""
        kind = self._data_kind().name if self.engine.value else None
        for (kind_name, _), chooser in self.choosers.items():
            chooser.visible = kind_name == kind and not self.resume.value
        self.preset.enabled = self.size.enabled = not self.resume.value

    # --- running ------------------------------------------------------------

    def request(self) -> TrainRequest:
        """The training run the controls describe, with snapshots of the chosen layers."""
        engine = self.engine.value
        if not engine:
            raise TrainJobError("no trainable engine is installed")
        data = self._data_kind()
        run_dir = Path(self.run_folder.value).expanduser()
        if str(self.run_folder.value) in ("", "."):
            raise TrainJobError("choose a run folder (a new or empty folder)")
        layers: dict[str, list[Any]] = {}
        if not self.resume.value:
            for role in data.layer_roles():
                chooser = self.choosers[(data.name, role.key)]
                chosen: list[Image] = self.selected(chooser) if isinstance(chooser, Select) else (
                    [chooser.value] if chooser.value is not None else [])
                layers[role.key] = [snapshot(layer) for layer in chosen]
        return TrainRequest(
            engine=engine, data=data, run_dir=run_dir, iterations=self.iterations.value,
            preset=self.preset.value, size=self.size.value, device=self.device.value,
            precision=self.precision.value, resume=self.resume.value, layers=layers,
        )

    def train(self) -> None:
        """Check the request here, in the main thread, then train in a worker."""
        if self.worker is not None and self.worker.is_running:
            return
        try:
            request = self.request()
            check_request(request)
        except TrainJobError as error:
            show_error(str(error))
            self.status.value = f"not started: {error}"
            return
        keep_plot = request.resume and self._plotted_run == request.run_dir
        if not keep_plot:
            self.loss_plot.clear()
        worker = training_worker(request, with_log=request.resume and not keep_plot)
        worker.yielded.connect(self._show_progress)
        worker.returned.connect(self._show_outcome)
        worker.errored.connect(self.show_failure)
        worker.finished.connect(self._on_finished)
        self.worker, self._run_dir = worker, request.run_dir
        self._plotted_run = request.run_dir
        self.train_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.status.value = "starting…"
        self.run_score.value = "run score: after the first validation"
        self._notified.clear()
        worker.start()

    def cancel(self) -> None:
        """Ask the training process to save a checkpoint and stop after its current iteration."""
        if self.worker is None or not self.worker.is_running or self._run_dir is None:
            return
        request_stop(self._run_dir)
        self.cancel_button.enabled = False
        self.status.value = "stopping after this iteration (saving a checkpoint)…"

    def _show_progress(self, progress: TrainProgress) -> None:
        self.loss_plot.add(progress.losses)
        self.progress.value = round(progress.fraction * PROGRESS_STEPS)
        if self.cancel_button.enabled:  # not while stopping
            self.status.value = progress.message
        if progress.preview is not None:
            self._show_preview(progress.preview)
        if progress.run_score is not None:
            self.run_score.value = score_summary(progress.run_score)
        if progress.content_lost is not None:
            self._notified.add(progress.content_lost)
            show_warning(f"napari-i2i training: {progress.content_lost}")

    def _show_preview(self, path: Path) -> None:
        """The run's newest validation grid as one image layer, updated as training goes on."""
        try:
            with PILImage.open(path) as image:
                grid = np.asarray(image.convert("RGB"))
        except OSError:  # being written: the next one will do
            return
        name = f"training preview: {path.parent.parent.name} {path.stem}"  # run folder, iteration
        if self._preview is not None and self._preview in self._viewer.layers:
            self._preview.data, self._preview.name = grid, name
        else:
            self._preview = self._viewer.add_image(grid, name=name, rgb=True)

    def _show_outcome(self, outcome: TrainOutcome) -> None:
        for warning in dict.fromkeys(outcome.warnings):  # each once, content-lost ones when they came
            if warning in self._notified:
                continue
            show_warning(f"napari-i2i training: {warning}")
        model = outcome.model
        if model is not None:
            TRAINED_MODELS.add(model)
        if outcome.stopped:
            so_far = f"; the model so far: {model}" if model else ""
            self.status.value = (f"stopped; checkpoint saved in {self._run_dir}{so_far}. "
                                 "Tick Resume and Train to continue.")
            return
        self.progress.value = PROGRESS_STEPS
        self.status.value = f"done: {model}"
        show_info(f"napari-i2i: model saved to {model}; the Translate widget lists it as "
                  f"'trained: {model.parent.name}/{model.name}'")

    def _on_finished(self) -> None:
        self.train_button.enabled = True
        self.cancel_button.enabled = False
