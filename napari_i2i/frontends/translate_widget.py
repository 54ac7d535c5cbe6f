"""The Translate dock widget: pick a model (bundled, or a file), source layers and a style, run.

Everything napari-specific happens in the main thread: the widget snapshots
the layers' data and placement before a run, and adds result layers when the
worker (:mod:`napari_i2i.frontends.translate_job`) returns; it yields progress after
every tile so that Cancel takes effect between tiles. The results of large, multiscale
or lazy layers are written into stores instead and shown from the start as layers that
fill in (:mod:`napari_i2i.frontends.stored_results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
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
from napari.qt.threading import GeneratorWorker
from qtpy.QtCore import QTimer
from napari.utils.notifications import show_error, show_info, show_warning

from napari_i2i.contract.engine_api import Capabilities, EngineError, StyleMode
from napari_i2i.contract.registry import default_registry
from napari_i2i.core.bundled_models import BundledModel, bundled_models
from napari_i2i.core.device import COMPILE_CHOICES, DEVICE_CHOICES, PRECISION_CHOICES, DeviceError
from napari_i2i.core.diversity import DiversityMapError, require_samples
from napari_i2i.core.layer_data import LayerDataError
from napari_i2i.core.model_file import ModelFileError, read_model_info
from napari_i2i.core.style_choice import StyleChoiceError, check_style
from napari_i2i.core.tiling import DEFAULT_TILE
from napari_i2i.core.translate import Progress, TranslateOptions, TranslationResult
from napari_i2i.frontends.layer_choosers import PROGRESS_STEPS, LayerChoosersWidget, snapshot
from napari_i2i.frontends.stored_results import StoredLayers, store_paths
from napari_i2i.frontends.style_explorer import StyleExplorer, check_start_mode, dock_style_explorer
from napari_i2i.frontends.style_explorer_job import ExplorationJob
from napari_i2i.frontends.trained_models import TRAINED_MODELS
from napari_i2i.frontends.translate_job import (
    REFERENCE_LABELS,
    WIDGET_WORDS,
    Placement,
    StoredResult,
    TranslationJob,
    style_inputs,
    translation_worker,
    writes_into_store,
)

OPEN_FILE = "open file…"  # the model chooser's entry that shows the file picker


class TranslateWidget(LayerChoosersWidget):
    """Translate image layers with a napari-i2i model file."""

    user_errors = (ModelFileError, EngineError, LayerDataError, DeviceError)

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self._registry = default_registry()
        self.worker: GeneratorWorker | None = None
        self._stored: StoredLayers | None = None  # the running job's store-backed results
        self._returned = False  # whether the running job returned its results
        self._model_path: Path | None = None  # the file whose metadata filled the controls
        self._capabilities: Capabilities | None = None  # what that file's model can do
        # Bundled models whose engine is installed, chosen by path; or OPEN_FILE.
        self._bundled: dict[Path, BundledModel] = {
            model.path: model for model in bundled_models() if model.info.engine in self._registry.names()
        }

        self.engine = ComboBox(label="Engine", choices=self._registry.names())
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.model_file = FileEdit(label="Model file", mode="r", filter="*.safetensors")
        self.sources = Select(label="Source layer(s)", choices=self.image_layers)
        self.direction = ComboBox(label="Direction", choices=self._direction_choices)
        self.style_mode = ComboBox(label="Style mode", choices=self._style_mode_choices)
        self.n_samples = SpinBox(label="Number of samples", value=1, min=1, max=64)
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.diversity_map = CheckBox(
            text="Diversity map", value=False,
            tooltip="also add, per source, how much the random styles' outputs differ per pixel "
            "(standard deviation over the samples, averaged over channels); 2 samples or more",
        )
        self.references = Select(label=REFERENCE_LABELS[StyleMode.REFERENCE][0], choices=self.image_layers)
        self._add_run_controls()
        self.run_button = PushButton(text="Run")
        self.explore_button = PushButton(
            text="Explore styles…",
            tooltip="sliders over the style of the first source layer, with a live preview",
        )
        self.explorer: StyleExplorer | None = None  # the last one opened
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=PROGRESS_STEPS)
        self.status = Label(value="choose a model file")
        self.extend([
            self.engine, self.model, self.model_file, self.sources, self.direction, self.style_mode,
            self.n_samples, self.seed, self.diversity_map, self.references, self.device, self.tile_size,
            self.precision, self.compile, self.write_into, self.run_button, self.explore_button, self.cancel_button,
            self.progress, self.status,
        ])
        self.fit_dock()

        self.engine.changed.connect(self._show_engine_description)
        self.model.changed.connect(self._choose_model)
        self.model_file.changed.connect(self._read_model_file)
        self.style_mode.changed.connect(self._show_mode_controls)
        self.run_button.changed.connect(self.run)
        self.explore_button.changed.connect(self.explore_styles)
        self.cancel_button.changed.connect(self.cancel)
        self.follow_layers()
        TRAINED_MODELS.added.connect(self._list_trained_model)
        # a closed widget must not hear of later models (its Qt widgets are gone)
        self.native.destroyed.connect(lambda: TRAINED_MODELS.added.disconnect(self._list_trained_model))

        self._show_engine_description()
        self._choose_model()  # the first bundled model, if there is one
        for failure in self._registry.load_errors:
            show_warning(f"napari-i2i engine {failure}")

    def _add_run_controls(self) -> None:
        """Where and how a job runs: device, tile size, precision, compilation."""
        self.device = ComboBox(label="Device", choices=DEVICE_CHOICES, value="auto")
        self.tile_size = SpinBox(
            label="Tile size", value=DEFAULT_TILE, min=64, max=8192, step=64,
            tooltip="pixels per tile; smaller tiles need less GPU memory",
        )
        self.precision = ComboBox(
            label="Precision", choices=PRECISION_CHOICES, value="auto",
            tooltip="auto: bf16 where the hardware runs it fast (CPUs with AVX512-BF16/AMX, GPUs with bf16), "
            "else fp32; fp16 on GPUs only",
        )
        self.compile = ComboBox(
            label="Compile", choices=COMPILE_CHOICES, value="auto",
            tooltip="torch.compile in the worker: a first compile of tens of seconds (cached on disk), "
            "then faster; auto compiles only large jobs",
        )
        self.write_into = FileEdit(
            label="Write into", mode="d", value=None, nullable=True,
            tooltip="folder for the results of large, multiscale or dask layers (OME-Zarr stores, "
            "written as the job goes); empty: a folder of the job in napari-i2i's cache",
        )

    @property
    def model_path(self) -> Path | None:
        """The model file Run uses (bundled or chosen), or None while none is usable."""
        return self._model_path

    def layer_choosers(self) -> list[Select]:
        return [self.sources, self.references]

    # --- model file and style controls ------------------------------------

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, Path | str]]:
        """Bundled models, then those trained in this session (newest first), then OPEN_FILE."""
        bundled = [(model.display_name, path) for path, model in self._bundled.items()]
        short = [f"{path.parent.name}/{path.name}" for path in TRAINED_MODELS.paths]
        # two runs in folders of one name would share a label, and a chooser keeps one per label
        trained = [(f"trained: {name if short.count(name) == 1 else path}", path)
                   for name, path in zip(short, TRAINED_MODELS.paths)]
        return bundled + trained + [(OPEN_FILE, OPEN_FILE)]

    def _list_trained_model(self, _path: Path) -> None:
        self.model.reset_choices()

    def _show_engine_description(self, _value: Any = None) -> None:
        name = self.engine.value
        description = self._registry.get(name).description if name else "no engine installed"
        self.engine.tooltip = description

    def _choose_model(self, _value: Any = None) -> None:
        """A listed model is used at once; OPEN_FILE shows the file picker and uses its file."""
        choice = self.model.value
        self._show_file_picker(choice == OPEN_FILE)
        if choice == OPEN_FILE:
            self._read_model_file()
        else:
            self._use_model(choice)

    def _read_model_file(self, _value: Any = None) -> None:
        """Use the file in the file picker (choosing one there selects OPEN_FILE)."""
        if self.model.value != OPEN_FILE:
            with self.model.changed.blocked():
                self.model.value = OPEN_FILE
            self._show_file_picker(True)
        path = self.model_file.value
        if not path.is_file():  # nothing chosen yet, or a path still being typed
            self._offer(None, None)
            self.status.value = "choose a model file"
            return
        self._use_model(path)

    def _show_file_picker(self, show: bool) -> None:
        self.model_file.visible = show
        self.model.tooltip = (
            "a napari-i2i model file (.safetensors)" if show
            else self._bundled[self.model.value].description if self.model.value in self._bundled
            else f"trained in this session: {self.model.value}"
        )

    def _use_model(self, path: Path) -> None:
        """Fill the controls from the file's metadata; the weights are read only on Run."""
        self._offer(None, None)
        try:
            info = read_model_info(path)
            capabilities = self._registry.get(info.engine).build(info.config).capabilities
        except (ModelFileError, EngineError) as error:
            show_error(str(error))
            self.status.value = "this model file cannot be used"
            return
        self.engine.value = info.engine
        self._offer(path, capabilities)
        self.status.value = f"{info.engine} model: {capabilities.describe()}"
        if not info.trained:
            show_warning(
                f"{path.name} holds untrained weights: its outputs are noise, not translations"
            )

    def _offer(self, path: Path | None, capabilities: Capabilities | None) -> None:
        """Make *path* the model to run and offer what it can do (nothing for None)."""
        self._model_path, self._capabilities = path, capabilities
        self.direction.reset_choices()
        self.style_mode.reset_choices()
        self._show_mode_controls()

    def _direction_choices(self, _widget: Any = None) -> list[str]:
        return list(self._capabilities.directions) if self._capabilities else []

    def _style_mode_choices(self, _widget: Any = None) -> list[tuple[str, StyleMode]]:
        modes = self._capabilities.style_modes if self._capabilities else ()
        return [(mode.value, mode) for mode in modes]

    def _show_mode_controls(self, _value: Any = None) -> None:
        """Show only the controls the chosen style mode uses."""
        mode = self.style_mode.value
        self.n_samples.visible = mode in (StyleMode.RANDOM, StyleMode.INTERPOLATE)
        self.seed.visible = self.diversity_map.visible = mode is StyleMode.RANDOM
        # the spinbox counts random styles, or the steps of an interpolation (both ends included)
        interpolate = mode is StyleMode.INTERPOLATE
        self.n_samples.label = "Steps" if interpolate else "Number of samples"
        self.n_samples.tooltip = (
            "styles from the first reference to the second, both included" if interpolate else None
        )
        self.n_samples.min = 2 if interpolate else 1
        self.references.visible = mode in REFERENCE_LABELS
        if mode in REFERENCE_LABELS:  # style references, or the class examples of few-shot mode
            self.references.label, self.references.tooltip = REFERENCE_LABELS[mode]

    # --- running ------------------------------------------------------------

    def run(self) -> None:
        """Snapshot the chosen layers and start translating them in a worker thread."""
        if self.worker is not None and self.worker.is_running:
            return
        if self._model_path is None:
            show_error("Choose a model first: a bundled one, or a napari-i2i model file (.safetensors).")
            return
        sources = self.selected(self.sources)
        if not sources:
            show_error("Choose at least one source layer to translate.")
            return
        mode: StyleMode = self.style_mode.value
        references = self.selected(self.references) if mode in REFERENCE_LABELS else []
        try:
            check_style(mode, style_inputs(mode, len(references), self.n_samples.value),
                        self._capabilities.style_modes, self.engine.value, WIDGET_WORDS)
            diversity = self.diversity_map.value and mode is StyleMode.RANDOM
            if diversity:
                require_samples(TranslateOptions(self.direction.value, mode, self.n_samples.value),
                                "Number of samples")
        except (StyleChoiceError, DiversityMapError) as error:
            show_error(str(error))
            return
        into_store = [writes_into_store(layer) for layer in sources]
        if diversity and any(into_store):
            show_error("Diversity map needs the results in memory; the results of large, multiscale or dask "
                       "layers are written into stores")
            return
        try:
            stores = store_paths([layer.name for layer in sources], into_store, self.direction.value,
                                 self.write_into.value)
        except ValueError as error:
            show_error(str(error))
            return
        job = TranslationJob(
            model_path=self._model_path,
            engine=self.engine.value,
            device=self.device.value,
            options=TranslateOptions(
                direction=self.direction.value,
                mode=mode,
                n_samples=self.n_samples.value,
                seed=self.seed.value,
                tile=self.tile_size.value,
                precision=self.precision.value,
                compile=self.compile.value,
            ),
            sources=[snapshot(layer) for layer in sources],
            references=[snapshot(layer) for layer in references],
            diversity_map=diversity,
            stores=stores,
        )
        # the job returns the translations, then (diversity map) each one's map: both over their source
        placements = [Placement.of(layer) for layer in sources] * (2 if diversity else 1)
        self._stored = StoredLayers(self._viewer, placements, "step" if mode is StyleMode.INTERPOLATE else "sample")
        self._returned = False

        worker = translation_worker(job)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda results: self._add_results(results, placements))
        worker.errored.connect(self.show_failure)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.status.value = "starting…"
        worker.start()

    def explore_styles(self) -> None:
        """Dock a style explorer on the first source layer, starting from the chosen style."""
        sources = self.selected(self.sources)
        if self._model_path is None or not sources:
            show_error("Choose a model and a source layer to explore styles on.")
            return
        mode: StyleMode = self.style_mode.value
        references = self.selected(self.references) if mode in REFERENCE_LABELS else []
        steps = self.n_samples.value if mode is StyleMode.INTERPOLATE else 1
        try:
            check_start_mode(mode)
            check_style(mode, style_inputs(mode, len(references), steps),
                        self._capabilities.style_modes, self.engine.value, WIDGET_WORDS)
        except EngineError as error:
            show_error(str(error))
            return
        options = TranslateOptions(direction=self.direction.value, mode=mode, n_samples=steps,
                                   seed=self.seed.value, tile=self.tile_size.value, precision=self.precision.value)
        job = ExplorationJob(self._model_path, self.engine.value, self.device.value, options,
                             [snapshot(layer) for layer in references])
        self.explorer = dock_style_explorer(self._viewer, job, sources[0])

    def cancel(self) -> None:
        """Stop the running translation at its next tile; nothing is added (a result being written
        into a store is removed with its store once the worker has stopped)."""
        if self.worker is None or not self.worker.is_running:
            return
        self.worker.quit()
        self.cancel_button.enabled = False
        self.status.value = "cancelling…"

    def _on_yielded(self, item: Progress | StoredResult) -> None:
        cancelled = self.worker is not None and self.worker.abort_requested  # item queued from before Cancel
        if isinstance(item, StoredResult):
            if cancelled:
                self._stored.keep_for_cleanup(item)
            else:
                self._stored.show(item)
            return
        if cancelled:
            return
        self.progress.value = round(item.fraction * PROGRESS_STEPS)
        self.status.value = item.message
        self._stored.refresh()

    def _add_results(self, results: list[TranslationResult], placements: list[Placement]) -> None:
        self._returned = True
        for number, (result, placement) in enumerate(zip(results, placements, strict=True)):
            if self._stored.finish(number, result):
                continue  # shown since the job started
            layer = self._viewer.add_image(
                result.data,
                name=f"{result.source} [{result.description}]",
                rgb=result.rgb,
                contrast_limits=result.contrast_limits,  # napari computes no range over the data
                metadata={"napari_i2i": result.metadata},
                visible=False,
                **placement.along(result.axes, "step" if "interpolation" in result.metadata else "sample"),
            )
            # shown in a later turn of the event loop: the texture upload and first draw then stall
            # the viewer apart from the layer's creation, not on top of it (docs/benchmarks.md)
            QTimer.singleShot(0, lambda layer=layer: setattr(layer, "visible", True))
        self.progress.value = PROGRESS_STEPS
        self.status.value = f"done: added {len(results)} layer(s)"

    def _on_finished(self) -> None:
        if not self._returned and (removed := self._stored.remove()):
            show_info(f"removed the unfinished result(s) {', '.join(removed)}; their stores were deleted")
        if self.worker is not None and self.worker.abort_requested:
            self.progress.value = 0
            self.status.value = "cancelled"
        self.run_button.enabled = True
        self.cancel_button.enabled = False
