"""Training from image layers: napari_i2i.frontends.train_job (no napari) and the Train dock widget
(a real viewer under Xvfb). Training runs as a `napari-i2i train` child process."""

import json
import re

import numpy as np
import pytest
import torch
from conftest import drain
from napari.utils.notifications import NotificationSeverity, notification_manager
from PIL import Image as PILImage

from napari_i2i.contract.registry import default_registry
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import load_model, read_model_info
from napari_i2i.frontends.train_job import (
    LAYERS_DIR,
    MANIFEST,
    TrainJobError,
    TrainRequest,
    check_request,
    logged_losses,
    rendered_planes,
    run_training,
)
from napari_i2i.frontends.loss_plot import REDRAW_INTERVAL_MS, LossPlot
from napari_i2i.frontends.train_widget import TrainWidget
from napari_i2i.frontends.translate_widget import TranslateWidget
from trainers.run import preset_loop_settings

TRAIN_TIMEOUT_MS = 180_000


def kind(name):
    return default_registry().data_kind(name)


def gray(rng, shape, name, high=4000):
    return ImageData(rng.integers(0, high, shape, dtype=np.uint16), name, False, (0.0, float(high)))


# --- train_job ----------------------------------------------------------------------------


def test_planes_are_what_napari_shows_through_the_contrast_limits():
    data = np.array([[0, 100, 600, 1100, 5000]], dtype=np.uint16)
    (plane,) = rendered_planes(ImageData(data, "u16", False, (100.0, 1100.0)))
    assert plane.dtype == np.uint8 and plane.tolist() == [[0, 0, 128, 255, 255]]

    stack = np.zeros((3, 8, 9), np.float32)
    assert [p.shape for p in rendered_planes(ImageData(stack, "stack", False, (0.0, 1.0)))] == [(8, 9)] * 3

    rgba = np.full((8, 9, 4), 255, np.uint8)
    rgba[..., 0] = 0
    (colour,) = rendered_planes(ImageData(rgba, "rgba", True, (0.0, 255.0)))
    assert colour.shape == (8, 9, 3) and colour[0, 0].tolist() == [0, 255, 255]


@pytest.mark.parametrize(
    "data, layers, size, message",
    [
        ("paired", lambda rng: {"pairs_a": [gray(rng, (64, 64), "A")], "pairs_b": [gray(rng, (64, 72), "B")]},
         64, "A has 1 plane(s) of 64×64, B has 1 plane(s) of 64×72"),
        ("paired", lambda rng: {"pairs_a": [gray(rng, (2, 64, 64), "A")], "pairs_b": [gray(rng, (64, 64), "B")]},
         64, "equal shapes"),
        ("unpaired", lambda rng: {"domain_a": [gray(rng, (64, 64), "A")], "domain_b": [gray(rng, (40, 90), "B")]},
         64, "B: 40 pixels on its short side"),
        ("unpaired", lambda rng: {"domain_a": [gray(rng, (64, 64), "A")], "domain_b": []}, 64, "domain b"),
        ("classes", lambda rng: {"classes": [gray(rng, (32, 32), "only")]}, 32, "at least two class layers"),
        ("paired", lambda rng: {"pairs_a": [gray(rng, (64, 64), "A")] * 2, "pairs_b": [gray(rng, (64, 64), "B")] * 2},
         64, "one layer of inputs (A) and one of targets (B)"),
    ],
)
def test_bad_layers_are_refused_before_anything_is_written(tmp_path, rng, data, layers, size, message):
    run_dir = tmp_path / "run"
    request = TrainRequest(engine="x", data=kind(data), run_dir=run_dir, iterations=2, size=size, layers=layers(rng))
    with pytest.raises(TrainJobError, match=re.escape(message)):
        drain(run_training(request))[0]
    assert not run_dir.exists()


def test_run_folder_must_be_new_unless_resuming(tmp_path, rng):
    (tmp_path / "notes.txt").write_text("mine")
    layers = {"domain_a": [gray(rng, (64, 64), "A")], "domain_b": [gray(rng, (64, 64), "B")]}
    with pytest.raises(TrainJobError, match="not an empty folder"):
        check_request(TrainRequest(engine="munit", data=kind("unpaired"), run_dir=tmp_path, iterations=2, layers=layers))
    with pytest.raises(TrainJobError, match="no run to resume"):
        check_request(TrainRequest(engine="munit", data=kind("unpaired"), run_dir=tmp_path, iterations=2, resume=True))
    (tmp_path / "run.json").write_text(json.dumps({"engine": "unit"}))
    with pytest.raises(TrainJobError, match="holds a unit run: choose the engine unit"):
        check_request(TrainRequest(engine="munit", data=kind("unpaired"), run_dir=tmp_path, iterations=2, resume=True))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_paired_layers_train_step_and_stay_untouched(tmp_path, rng):
    """Issue 5: StEP from two equal-shape layers; plane i of A pairs with plane i of B."""
    a = gray(rng, (2, 64, 80), "label-free")
    b = ImageData((4000 - a.data).astype(np.uint16), "stained", False, (0.0, 4000.0))
    originals = [a.data.copy(), b.data.copy()]
    run_dir = tmp_path / "run"
    request = TrainRequest(engine="step", data=kind("paired"), run_dir=run_dir, iterations=3, size=64, device="cpu",
                           layers={"pairs_a": [a], "pairs_b": [b]})
    outcome, progress = drain(run_training(request))
    messages = [step.message for step in progress]

    assert outcome.model == run_dir / "model.safetensors"
    assert any("VGG16" in warning for warning in outcome.warnings)  # no weights here: said, not hidden
    assert any(m.startswith("iteration 3/3") for m in messages)
    np.testing.assert_array_equal(a.data, originals[0])
    np.testing.assert_array_equal(b.data, originals[1])
    manifest = json.loads((run_dir / LAYERS_DIR / MANIFEST).read_text())
    assert [(m["layer"], m["folder"], m["files"]) for m in manifest] == [
        ("label-free", "pairs_a", ["00000.png", "00001.png"]), ("stained", "pairs_b", ["00000.png", "00001.png"])]
    first_b = np.asarray(PILImage.open(run_dir / LAYERS_DIR / "pairs_b" / "00000.png"))
    np.testing.assert_allclose(first_b, b.data[0] / 4000 * 255, atol=0.5 + 1e-3)  # float32 rounding
    loaded = load_model(outcome.model, device=torch.device("cpu"))
    assert loaded.info.engine == "step" and loaded.info.trained
    assert read_model_info(outcome.model).provenance["training"]["pairs_a"] == str(run_dir / LAYERS_DIR / "pairs_a")


def test_class_layers_train_funit(tmp_path, rng):
    """One class per layer, named after it; a stack's planes are the class's images."""
    classes = [gray(rng, (3, 32, 32), "Serif"), gray(rng, (2, 40, 36), "Sans/Bold"), gray(rng, (32, 32), "Serif")]
    run_dir = tmp_path / "run"
    request = TrainRequest(engine="funit", data=kind("classes"), run_dir=run_dir, iterations=2, size=32, device="cpu",
                           layers={"classes": classes})
    outcome = drain(run_training(request))[0]

    assert outcome.model.is_file()
    folders = sorted(p.name for p in (run_dir / LAYERS_DIR / "classes").iterdir())
    assert folders == ["Sans_Bold", "Serif", "Serif_2"]
    assert read_model_info(outcome.model).provenance["training"]["classes"] == folders


def test_a_training_error_comes_back_as_the_cli_says_it(tmp_path, rng):
    layers = {"domain_a": [gray(rng, (64, 64), "A")], "domain_b": [gray(rng, (64, 64), "B")]}
    request = TrainRequest(engine="munit", data=kind("unpaired"), run_dir=tmp_path / "run", iterations=2, size=64,
                           preset="no-such-preset", device="cpu", layers=layers)
    with pytest.raises(TrainJobError, match="no training preset 'no-such-preset'"):
        drain(run_training(request))[0]


# --- the Train widget in napari ---------------------------------------------------------


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def notifications():
    start = len(notification_manager.records)
    return lambda: [(n.severity, str(n.message)) for n in notification_manager.records[start:]]


def add_gray(viewer, rng, name, shape=(64, 64)):
    return viewer.add_image(rng.random(shape, dtype=np.float32), name=name)


def test_docks_from_the_manifest_and_shows_the_engines_data(viewer, rng):
    _, widget = viewer.window.add_plugin_dock_widget("napari-i2i", "Train")
    assert isinstance(widget, TrainWidget)
    assert set(widget.engine.choices) >= {"funit", "munit", "step", "unit"}
    assert widget.engine.value == "munit"  # unpaired images, not FUNIT (first by name)
    assert widget.preset.value == "small" and not widget.loss_plot.terms()
    cells = add_gray(viewer, rng, "cells")
    assert cells in widget.domain_a.choices and cells in widget.pairs_a.choices

    shown = lambda: {key for (_, key), chooser in widget.choosers.items()  # noqa: E731
                     if not chooser.native.isHidden()}
    widget.engine.value = "step"
    assert shown() == {"pairs_a", "pairs_b"}
    assert widget.iterations.value == preset_loop_settings("step", "small")["iterations"]
    widget.engine.value = "funit"
    assert shown() == {"classes"} and widget.size.value == 32
    widget.engine.value = "munit"
    assert shown() == {"domain_a", "domain_b"}
    widget.resume.value = True
    assert shown() == set()


def test_bad_choices_are_error_notifications(tmp_path, viewer, rng, notifications):
    widget = TrainWidget(viewer)
    widget.engine.value = "step"
    widget.pairs_a.value = add_gray(viewer, rng, "A", (64, 64))
    widget.pairs_b.value = add_gray(viewer, rng, "B", (64, 96))
    widget.train()  # no run folder chosen yet
    widget.run_folder.value = tmp_path / "run"
    widget.train()

    errors = [text for severity, text in notifications() if severity == NotificationSeverity.ERROR]
    assert len(errors) == 2 and "choose a run folder" in errors[0] and "equal shapes" in errors[1]
    assert widget.worker is None and not (tmp_path / "run").exists()


def test_train_cancel_and_resume_from_layers(qtbot, tmp_path, viewer, rng, notifications):
    """MUNIT from two layers: Cancel saves a checkpoint; Resume finishes and writes the model,
    which the Translate widget then offers."""
    widget = TrainWidget(viewer)
    translate_widget = TranslateWidget(viewer)
    widget.engine.value = "munit"
    a = add_gray(viewer, rng, "fluorescence", (2, 64, 64))
    b = viewer.add_image(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), name="brightfield", rgb=True)
    originals = [a.data.copy(), b.data.copy()]
    widget.domain_a.value, widget.domain_b.value = [a], [b]
    widget.iterations.value, widget.device.value = 10_000, "cpu"
    widget.run_folder.value = run_dir = tmp_path / "run"

    widget.train()
    qtbot.waitUntil(lambda: widget.status.value.startswith("iteration"), timeout=TRAIN_TIMEOUT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=TRAIN_TIMEOUT_MS)
    model = run_dir / "model.safetensors"
    assert widget.status.value == (f"stopped; checkpoint saved in {run_dir}; the model so far: {model}. "
                                   "Tick Resume and Train to continue.")
    assert not (run_dir / "stop-requested").exists()  # served: a later run of the folder is not stopped
    done = torch.load(run_dir / "checkpoint.pt", weights_only=True)["iteration"]
    assert 1 <= done < 10_000
    assert read_model_info(model).provenance["training"]["stopped_at"] == done
    assert model in translate_widget.model.choices  # the model so far can be tried at once
    plot = widget.loss_plot
    terms = plot.terms()
    assert {"image", "content", "style", "gan"} <= set(terms)  # one curve per loss term
    assert [i for i, _ in plot.points(terms[0])] == list(range(1, done + 1))  # live: every iteration

    grid = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)  # as if the run had validated at iteration 7
    (run_dir / "validation").mkdir(exist_ok=True)
    PILImage.fromarray(grid).save(run_dir / "validation" / "00000007.png")
    widget.resume.value = True
    widget.iterations.value = done + 2
    widget.train()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=TRAIN_TIMEOUT_MS)
    assert [i for i, _ in plot.points(terms[0])] == list(range(1, done + 3))  # kept, then extended
    qtbot.waitUntil(lambda: plot.drawn(terms[0]) == len(plot.points(terms[0])), timeout=5000)
    preview = viewer.layers["training preview: run 00000007"]
    assert preview.rgb and np.array_equal(preview.data, grid)
    assert widget.status.value == f"done: {run_dir / 'model.safetensors'}"
    info = read_model_info(run_dir / "model.safetensors")
    assert info.engine == "munit" and info.config["channels_a"] == 1 and info.config["channels_b"] == 3
    assert info.provenance["training"]["iterations"] == done + 2
    np.testing.assert_array_equal(a.data, originals[0])
    np.testing.assert_array_equal(b.data, originals[1])
    assert any("model saved" in text for severity, text in notifications() if severity == NotificationSeverity.INFO)

    assert model in translate_widget.model.choices
    translate_widget.model.value = model
    assert translate_widget.model_path == model and translate_widget.engine.value == "munit"


def test_a_crashed_training_process_is_reported_with_its_last_messages(tmp_path, rng, monkeypatch):
    import sys

    from napari_i2i.frontends import train_job

    crash = "import sys; print('Traceback: it broke', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(train_job, "train_command", lambda request, folders: [sys.executable, "-c", crash])
    layers = {"domain_a": [gray(rng, (64, 64), "A")], "domain_b": [gray(rng, (64, 64), "B")]}
    request = TrainRequest(engine="munit", data=kind("unpaired"), run_dir=tmp_path / "run", iterations=2, layers=layers)
    with pytest.raises(train_job.TrainingCrashed, match="exit status 3(.|\n)*it broke"):
        drain(run_training(request))[0]


# --- the loss plot --------------------------------------------------------------------------


def test_logged_losses_are_the_loss_records_of_the_run_log(tmp_path):
    (tmp_path / "log.jsonl").write_text("\n".join([
        json.dumps({"iteration": 0, "event": "vgg_loss_off", "reason": "no weights"}),
        json.dumps({"iteration": 10, "seconds": 1.5, "gan": 0.5, "image": 2.0}),
        json.dumps({"iteration": 20, "seconds": 3.0, "gan": 0.4, "image": 1.5}),
        '{"iteration": 30, "seco',  # torn: the run was killed while writing
    ]))
    assert logged_losses(tmp_path) == ((10, {"gan": 0.5, "image": 2.0}), (20, {"gan": 0.4, "image": 1.5}))
    assert logged_losses(tmp_path / "no-run") == ()

    long = "\n".join(json.dumps({"iteration": i, "seconds": 0.1, "gan": 1 / i}) for i in range(1, 12_346))
    (tmp_path / "log.jsonl").write_text(long)
    thinned = [iteration for iteration, _ in logged_losses(tmp_path, most=1000)]
    assert len(thinned) <= 1000 and thinned[0] == 1 and thinned[-1] == 12_345  # a long log adds at once
    assert len(set(b - a for a, b in zip(thinned[:-2], thinned[1:-1]))) == 1  # evenly spaced


def test_plot_stores_points_at_once_and_draws_them_on_its_timer(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot.native)
    plot.add([(1, {"gan": 0.9, "image": 2.0}), (2, {"gan": float("nan"), "image": 1.8, "note": "text"})])
    plot.add([(i, {"gan": 1.0 / i}) for i in range(3, 3000)])
    assert plot.terms() == ["gan", "image"]
    assert plot.points("image") == [(1, 2.0), (2, 1.8)]
    assert len(plot.points("gan")) == 2998  # the NaN is left out
    assert plot.drawn("gan") == 0  # storing never draws: the timer does, a few times a second
    assert REDRAW_INTERVAL_MS >= 200
    qtbot.waitUntil(lambda: plot.drawn("gan") == 2998 and plot.drawn("image") == 2, timeout=5000)

    plot.add([(2, {"image": 1.7})])  # a resumed run redoes iteration 2 on: the old part goes
    assert plot.points("image") == [(1, 2.0), (2, 1.7)]
    plot.clear()
    assert plot.terms() == [] and plot.drawn("gan") == 0
    assert not [item for item in plot.native.getPlotItem().listDataItems()]


def test_resuming_in_a_new_widget_plots_the_logged_losses_and_a_new_run_clears_them(
        qtbot, tmp_path, viewer, rng, monkeypatch):
    import sys

    from napari_i2i.frontends import train_job

    fail = [sys.executable, "-c", "import sys; sys.exit(3)"]  # the plot is what is tested here
    monkeypatch.setattr(train_job, "train_command", lambda request, folders: fail)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"engine": "munit"}))
    (run_dir / "log.jsonl").write_text(json.dumps({"iteration": 10, "seconds": 1.0, "gan": 0.7}) + "\n")
    widget = TrainWidget(viewer)
    widget.run_folder.value, widget.resume.value = run_dir, True
    widget.train()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=30_000)  # a crash ends the run too
    assert widget.status.value.startswith("failed: training stopped with exit status 3")
    assert widget.loss_plot.points("gan") == [(10, 0.7)]

    widget.resume.value = False
    widget.domain_a.value = [add_gray(viewer, rng, "A")]
    widget.domain_b.value = [add_gray(viewer, rng, "B")]
    widget.run_folder.value = tmp_path / "new run"
    widget.train()
    assert widget.loss_plot.terms() == []
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=30_000)
