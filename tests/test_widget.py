"""The Translate dock widget in a real napari viewer (Xvfb via pytest-xvfb)."""

import numpy as np
import pytest
import torch
from napari.utils.notifications import NotificationSeverity, notification_manager
from PIL import Image as PILImage

from engines.munit import MunitEngine
from napari_i2i.frontends import translate_job
from napari_i2i.frontends import translate_widget as widget_module
from napari_i2i.core.bundled_models import STAIN_MODEL, bundled_model
from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.model_file import save_model
from napari_i2i.contract.registry import EngineRegistry
from napari_i2i.frontends.translate_widget import OPEN_FILE, TranslateWidget

RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer):
    return TranslateWidget(viewer)


@pytest.fixture
def notifications():
    """The notifications napari shows during the test, as (severity, message) pairs."""
    start = len(notification_manager.records)
    return lambda: [(n.severity, str(n.message)) for n in notification_manager.records[start:]]


def errors(notifications):
    return [text for severity, text in notifications() if severity == NotificationSeverity.ERROR]


def run_and_wait(qtbot, widget):
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=RUN_TIMEOUT_MS)


def add_gray(viewer, name="cells", shape=(48, 64), **kwargs):
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    return viewer.add_image(data, name=name, **kwargs)


def test_docks_from_the_manifest(viewer, munit_file):
    _, docked = viewer.window.add_plugin_dock_widget("napari-i2i", "Translate")
    assert isinstance(docked, TranslateWidget)
    assert docked.engine.value == "munit"

    docked.model_file.value = munit_file
    cells = add_gray(viewer)  # napari now calls reset_choices on the docked widget
    assert cells in docked.sources.choices
    assert set(docked.direction.choices) == {"a2b", "b2a"}


def test_model_file_fills_the_controls_and_warns_when_untrained(widget, munit_file, notifications):
    widget.model_file.value = munit_file

    assert widget.engine.value == "munit"
    assert set(widget.direction.choices) == {"a2b", "b2a"}
    assert set(widget.style_mode.choices) == {StyleMode.RANDOM, StyleMode.REFERENCE, StyleMode.MATCHED}
    assert any("untrained" in message for severity, message in notifications()
               if severity == NotificationSeverity.WARNING)

    widget.style_mode.value = StyleMode.RANDOM
    assert not widget.n_samples.native.isHidden() and not widget.seed.native.isHidden()
    assert widget.references.native.isHidden()
    widget.style_mode.value = StyleMode.REFERENCE
    assert widget.n_samples.native.isHidden() and widget.seed.native.isHidden()
    assert not widget.references.native.isHidden()
    widget.style_mode.value = StyleMode.MATCHED
    assert widget.n_samples.native.isHidden() and not widget.references.native.isHidden()
    assert widget.references.label == "Style references" and "closest" in widget.references.tooltip


def test_layer_lists_follow_the_viewer(viewer, widget):
    cells = add_gray(viewer)
    assert cells in widget.sources.choices and cells in widget.references.choices
    widget.sources.value = [cells]

    cells.name = "renamed"
    assert widget.sources.value == [cells]
    assert "renamed" in [widget.sources.native.item(i).text() for i in range(len(widget.sources))]

    viewer.add_points()
    assert len(widget.sources.choices) == 1  # image layers only
    viewer.layers.remove(cells)
    assert widget.sources.choices == ()


def test_random_styles_keep_placement_and_leave_the_source_alone(
    qtbot, viewer, widget, munit_file
):
    source = add_gray(
        viewer, scale=(0.5, 0.5), translate=(10, 20), units=("um", "um"), axis_labels=("y", "x")
    )
    original = source.data.copy()
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.RANDOM
    widget.n_samples.value = 2
    widget.seed.value = 7
    widget.device.value = "cpu"

    run_and_wait(qtbot, widget)

    assert len(viewer.layers) == 2
    result = viewer.layers[-1]
    assert result.name == "cells [a2b, 2 random styles (seed 7)]"
    assert result.rgb and result.data.shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(result.scale, (1, 0.5, 0.5))
    np.testing.assert_array_equal(result.translate, (0, 10, 20))
    assert [str(unit) for unit in result.units] == ["pixel", "micrometer", "micrometer"]
    assert result.axis_labels == ("sample", "y", "x")
    recorded = result.metadata["napari_i2i"]
    assert recorded["engine"] == "munit" and recorded["trained"] is False
    assert (recorded["style_mode"], recorded["n_samples"], recorded["seed"]) == ("random", 2, 7)
    np.testing.assert_array_equal(source.data, original)
    assert widget.status.value.startswith("done")


def test_reference_style_from_a_dropped_png(qtbot, tmp_path, viewer, widget, munit_file):
    source = add_gray(viewer)
    png = tmp_path / "texture.png"
    texture = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    PILImage.fromarray(texture).save(png)
    [reference] = viewer.open(png)  # as if dragged onto the viewer
    assert reference.rgb and reference in widget.references.choices

    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.REFERENCE
    widget.references.value = [reference]
    widget.device.value = "cpu"
    run_and_wait(qtbot, widget)

    result = viewer.layers[-1]
    assert result.name == "cells [a2b, style of texture]"
    assert result.data.shape == (48, 64, 3)
    assert result.metadata["napari_i2i"]["references"] == ["texture"]


def test_matched_styles_name_the_reference_each_layer_got(qtbot, viewer, widget, munit_file, notifications):
    source = add_gray(viewer)
    rng = np.random.default_rng(3)
    references = [viewer.add_image(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), name=name)
                  for name in ("tissue 1", "tissue 2")]
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.MATCHED
    widget.device.value = "cpu"
    widget.run()  # no references chosen: refused before any work
    assert errors(notifications) == [
        "matched mode chooses among style references: give them with the list of style references"
    ]

    widget.references.value = references
    run_and_wait(qtbot, widget)
    result = viewer.layers[-1]
    [chosen] = result.metadata["napari_i2i"]["matched_references"]
    assert chosen in ("tissue 1", "tissue 2")
    assert result.name == f"cells [a2b, style of {chosen} (closest of 2 references)]"


def test_batch_translates_every_selected_layer(qtbot, viewer, widget, munit_file):
    gray = add_gray(viewer, name="gray")
    colour = viewer.add_image(
        np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8), name="colour"
    )
    widget.model_file.value = munit_file
    widget.sources.value = [gray, colour]
    widget.style_mode.value = StyleMode.RANDOM
    widget.device.value = "cpu"
    run_and_wait(qtbot, widget)

    added = [layer.name for layer in viewer.layers[2:]]
    assert added == ["gray [a2b, 1 random style (seed 0)]", "colour [a2b, 1 random style (seed 0)]"]
    assert viewer.layers["colour [a2b, 1 random style (seed 0)]"].data.dtype == np.uint8


def test_corrupt_model_file_is_an_error_notification(tmp_path, widget, munit_file, notifications):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    widget.model_file.value = broken
    assert any("broken.safetensors" in message for message in errors(notifications))

    widget.model_file.value = munit_file  # the widget stays usable
    assert set(widget.direction.choices) == {"a2b", "b2a"}


def test_unsupported_channel_count_is_an_error_notification(
    qtbot, tmp_path, viewer, widget, notifications
):
    engine = MunitEngine()
    torch.manual_seed(0)
    two_channel = tmp_path / "two_channel.safetensors"
    save_model(two_channel, engine, engine.build(engine.config("small", channels_a=2)))
    colour = viewer.add_image(np.zeros((48, 64, 3), dtype=np.uint8), name="colour")
    widget.model_file.value = two_channel
    widget.sources.value = [colour]
    widget.device.value = "cpu"
    run_and_wait(qtbot, widget)

    [message] = errors(notifications)
    assert "has 3 channel(s), the model takes 2" in message
    assert len(viewer.layers) == 1
    assert widget.status.value.startswith("failed")


def test_running_with_another_engine_names_both(
    qtbot, monkeypatch, viewer, munit_file, notifications
):
    class OtherEngine(MunitEngine):
        name = "other"

    registry = EngineRegistry()
    registry.add(MunitEngine())
    registry.add(OtherEngine())
    monkeypatch.setattr(widget_module, "default_registry", lambda: registry)
    widget = TranslateWidget(viewer)
    widget.sources.value = [add_gray(viewer)]
    widget.model_file.value = munit_file
    widget.engine.value = "other"
    widget.device.value = "cpu"
    run_and_wait(qtbot, widget)

    [message] = errors(notifications)
    assert "'munit'" in message and "'other'" in message
    assert len(viewer.layers) == 1


def test_unexpected_failure_is_an_error_notification(
    qtbot, monkeypatch, viewer, widget, munit_file, notifications
):
    def broken_translation(*args, **kwargs):
        raise RuntimeError("a bug")
        yield

    monkeypatch.setattr(translate_job, "run_translation", broken_translation)
    widget.sources.value = [add_gray(viewer)]
    widget.model_file.value = munit_file
    widget.device.value = "cpu"
    run_and_wait(qtbot, widget)

    assert errors(notifications) == ["RuntimeError: a bug"]
    assert widget.status.value == "failed: RuntimeError: a bug"


def test_cancel_adds_nothing(qtbot, viewer, widget, munit_file):
    add_gray(viewer, shape=(512, 512))
    widget.model_file.value = munit_file
    widget.sources.value = list(viewer.layers)
    widget.style_mode.value = StyleMode.RANDOM
    widget.tile_size.value = 64
    widget.device.value = "cpu"

    widget.run()
    qtbot.waitUntil(lambda: "tile(s)" in widget.status.value, timeout=RUN_TIMEOUT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=RUN_TIMEOUT_MS)

    assert len(viewer.layers) == 1
    assert widget.status.value == "cancelled"


def test_unit_model_offers_style_none_without_style_controls(qtbot, tmp_path, viewer, widget):
    from engines.unit import UnitEngine

    engine = UnitEngine()
    torch.manual_seed(0)
    unit_file = tmp_path / "unit_small.safetensors"
    save_model(unit_file, engine, engine.build(engine.config("small")))
    source = add_gray(viewer)
    widget.model_file.value = unit_file

    assert widget.engine.value == "unit"
    assert widget.style_mode.choices == (StyleMode.NONE,)
    assert widget.style_mode.value is StyleMode.NONE
    for control in (widget.n_samples, widget.seed, widget.references):
        assert control.native.isHidden()
    widget.sources.value = [source]
    widget.device.value = "cpu"
    run_and_wait(qtbot, widget)

    assert len(viewer.layers) == 2
    result = viewer.layers[-1]
    assert result.name == "cells [a2b]"
    assert result.rgb and result.data.shape == (48, 64, 3)
    assert result.metadata["napari_i2i"]["style_mode"] == "none"


def test_bundled_stain_model_is_chosen_first_and_translates_the_sample(qtbot, viewer, widget):
    stain = bundled_model(STAIN_MODEL)
    assert widget.model.value == stain.path and widget.model_path == stain.path
    assert widget.model.current_choice == stain.display_name
    assert widget.model.tooltip == stain.description
    assert widget.model_file.native.isHidden()
    assert widget.engine.value == "munit"
    assert set(widget.style_mode.choices) == {StyleMode.RANDOM, StyleMode.REFERENCE, StyleMode.MATCHED}

    [source] = viewer.open_sample("napari-i2i", "ihc")  # File > Open Sample > napari-i2i
    [reference] = viewer.open_sample("napari-i2i", "he_reference")
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.REFERENCE
    widget.references.value = [reference]
    widget.device.value = "cpu"
    run_and_wait(qtbot, widget)

    assert len(viewer.layers) == 3
    result = viewer.layers[-1]
    assert result.name == "IHC [a2b, style of H&E-like reference]"
    assert result.rgb and result.data.shape == (256, 256, 3) and result.data.dtype == np.uint8
    assert result.data.std() > 1  # an image, not a constant
    recorded = result.metadata["napari_i2i"]
    assert recorded["model"] == str(stain.path) and recorded["trained"] is True
    assert recorded["references"] == ["H&E-like reference"]


def test_open_file_entry_shows_the_file_picker(tmp_path, viewer, widget, munit_file):
    stain = bundled_model(STAIN_MODEL)
    entries = [widget.model.native.itemText(i) for i in range(widget.model.native.count())]
    assert stain.display_name in entries and entries[-1] == OPEN_FILE
    widget.model.value = OPEN_FILE
    assert not widget.model_file.native.isHidden()
    assert widget.model_path is None and widget.status.value == "choose a model file"
    assert widget.direction.choices == ()

    widget.model_file.value = munit_file
    assert widget.model.value == OPEN_FILE and widget.model_path == munit_file

    widget.model.value = stain.path
    assert widget.model_file.native.isHidden() and widget.model_path == stain.path
    other = tmp_path / "other.safetensors"
    other.write_bytes(munit_file.read_bytes())
    widget.model_file.value = other  # choosing a file there selects "open file…"
    assert widget.model.current_choice == OPEN_FILE and widget.model_path == other
    assert not widget.model_file.native.isHidden()


@pytest.fixture
def funit_file(tmp_path):
    from engines.funit import FunitEngine

    engine = FunitEngine()
    torch.manual_seed(0)
    path = tmp_path / "funit_small.safetensors"
    save_model(path, engine, engine.build(engine.config("small", dim=8, n_res=1, mlp_dim=16, class_dim=8)))
    return path


def test_few_shot_mode_with_class_examples_of_different_sizes(
    qtbot, viewer, widget, funit_file, munit_file, notifications
):
    source = add_gray(viewer, scale=(0.5, 0.5))
    rng = np.random.default_rng(3)
    first = viewer.add_image(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), name="leaf a", rgb=True)
    second = viewer.add_image(rng.integers(0, 256, (36, 30, 3), dtype=np.uint8), name="leaf b", rgb=True)
    originals = [layer.data.copy() for layer in (source, first, second)]
    widget.model_file.value = funit_file

    assert widget.engine.value == "funit"
    assert widget.direction.choices == ("translate",)
    assert widget.style_mode.choices == (StyleMode.FEW_SHOT,)
    assert widget.references.label == "Class example(s)" and not widget.references.native.isHidden()
    assert widget.n_samples.native.isHidden() and widget.seed.native.isHidden()
    widget.sources.value = [source]
    widget.device.value = "cpu"
    widget.run()  # no class example chosen: an error, no run
    assert errors(notifications) == [
        "few-shot translation needs at least one class example: an image of the class to translate into "
        "(several images, or one stack whose planes are the examples)"
    ]
    assert widget.worker is None

    widget.references.value = [second, first]
    run_and_wait(qtbot, widget)

    assert len(viewer.layers) == 4
    result = viewer.layers[-1]
    assert result.name == "cells [translate, few-shot (K=2: leaf a, leaf b)]"
    assert result.rgb and result.data.shape == (48, 64, 3)
    np.testing.assert_array_equal(result.scale, (0.5, 0.5))
    recorded = result.metadata["napari_i2i"]
    assert recorded["engine"] == "funit" and recorded["style_mode"] == "few_shot"
    assert recorded["class_examples"] == [{"name": "leaf a", "planes": 1}, {"name": "leaf b", "planes": 1}]
    assert recorded["n_examples"] == 2
    for layer, original in zip((source, first, second), originals):
        np.testing.assert_array_equal(layer.data, original)

    stack = viewer.add_image(rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8), name="leaves", rgb=True)
    widget.references.value = [stack]  # one stack layer: K = its planes
    run_and_wait(qtbot, widget)
    result = viewer.layers[-1]
    assert result.name == "cells [translate, few-shot (K=3: leaves)]"
    assert result.data.shape == (48, 64, 3)
    assert result.metadata["napari_i2i"]["class_examples"] == [{"name": "leaves", "planes": 3}]

    widget.model_file.value = munit_file  # back to style references
    widget.style_mode.value = StyleMode.REFERENCE
    assert widget.references.label == "Style reference(s)"


@pytest.fixture
def step_file(tmp_path):
    from engines.step import StepEngine

    engine = StepEngine()
    torch.manual_seed(0)
    path = tmp_path / "step_small.safetensors"
    config = engine.config("small", channels_a=1, dim=8, n_res=1, style_encoder_dim=8, style_downsample=2)
    save_model(path, engine, engine.build(config))
    return path


def test_interpolation_mode_between_two_references(qtbot, viewer, widget, step_file, notifications):
    source = add_gray(viewer, scale=(0.5, 0.5), axis_labels=("y", "x"))
    rng = np.random.default_rng(4)
    calm = viewer.add_image(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), name="calm", rgb=True)
    busy = viewer.add_image(rng.integers(0, 256, (2, 20, 28, 3), dtype=np.uint8), name="busy", rgb=True)
    widget.model_file.value = step_file

    assert widget.engine.value == "step"
    assert widget.style_mode.choices == (StyleMode.REFERENCE, StyleMode.INTERPOLATE)  # no fitted mapper
    widget.style_mode.value = StyleMode.INTERPOLATE
    assert widget.references.label == "Interpolate between" and not widget.references.native.isHidden()
    assert widget.n_samples.label == "Steps" and not widget.n_samples.native.isHidden()
    assert widget.seed.native.isHidden()
    assert widget.n_samples.value == 2 and widget.n_samples.min == 2
    widget.sources.value = [source]
    widget.device.value = "cpu"
    widget.references.value = [calm]
    widget.run()  # one reference: an error, no run
    assert errors(notifications) == [
        "style interpolation goes from the style of one reference image to that of another: "
        "choose exactly 2 reference images, not 1"
    ]
    assert widget.worker is None

    widget.references.value = [busy, calm]  # the list's order counts, not the clicks'
    widget.n_samples.value = 4
    run_and_wait(qtbot, widget)

    assert len(viewer.layers) == 4
    result = viewer.layers[-1]
    assert result.name == "cells [a2b, 4 steps from calm to busy]"
    assert result.rgb and result.data.shape == (4, 48, 64, 3)
    np.testing.assert_array_equal(result.scale, (1, 0.5, 0.5))
    assert result.axis_labels == ("step", "y", "x")
    recorded = result.metadata["napari_i2i"]
    assert recorded["style_mode"] == "interpolate"
    assert recorded["interpolation"] == {"from": "calm", "to": "busy", "steps": 4}

    widget.style_mode.value = StyleMode.REFERENCE  # back: the spinbox is hidden again
    assert widget.n_samples.native.isHidden() and widget.n_samples.label == "Number of samples"


def test_precision_and_compile_reach_the_job_and_the_layer(qtbot, viewer, widget, munit_file, notifications):
    source = add_gray(viewer)
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.device.value = "cpu"
    assert widget.precision.value == "auto" and widget.compile.value == "auto"
    widget.precision.value, widget.compile.value = "bf16", "off"

    run_and_wait(qtbot, widget)

    recorded = viewer.layers[-1].metadata["napari_i2i"]
    assert (recorded["precision"], recorded["compiled"]) == ("bf16", False)
    widget.precision.value = "fp16"  # GPUs only: one error notification, nothing added
    run_and_wait(qtbot, widget)
    assert len(viewer.layers) == 2
    assert any("fp16 runs only on a GPU" in message for message in errors(notifications))


def test_results_are_added_with_their_contrast_limits(qtbot, viewer, widget, munit_file, monkeypatch):
    """napari computes no range over the full result (a stall of the viewer on large images)."""
    from napari.layers import Image

    computed = []
    monkeypatch.setattr(Image, "_calc_data_range", lambda self, mode="data": computed.append(mode) or (0, 1))
    source = add_gray(viewer, shape=(40, 40))
    computed.clear()
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.device.value = "cpu"
    visible_when_added = []
    viewer.layers.events.inserted.connect(lambda event: visible_when_added.append(event.value.visible))
    run_and_wait(qtbot, widget)
    assert viewer.layers[-1].contrast_limits == [0.0, 1.0] and computed == []
    assert visible_when_added == [False]
    # added hidden, shown a turn of the event loop later (its first draw apart from its creation)
    qtbot.waitUntil(lambda: viewer.layers[-1].visible, timeout=5000)
