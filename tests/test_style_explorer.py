"""Style exploration: the engines' style axes (MUNIT, StEP, unified; none for UNIT), the newest-only
preview queue, and the explorer panel in a real viewer (Xvfb): sliders → preview, Apply → result."""

import threading

import numpy as np
import pytest
import torch

from engines.munit import MunitEngine
from engines.step.engine import StepEngine
from engines.unified import UnifiedEngine
from engines.unit import UnitEngine
from napari_i2i.contract.engine_api import EngineError, StyleAxes, StyleMode, StyleRequest
from napari_i2i.core.layer_data import ImageData
from napari_i2i.core.model_file import save_model
from napari_i2i.core.translate import TranslateOptions
from napari_i2i.frontends.style_explorer_job import (
    ExplorationJob,
    LatestOnly,
    PreviewRequest,
    preview,
    start_exploration,
)

TINY_UNIFIED = {"domains": ["he", "ihc"], "dim": 8, "n_res": 1, "mlp_dim": 16, "style_dim": 8,
                "latent_dim": 4, "style_downsample": 2, "flow_hidden": 8}
TIMEOUT_MS = 60_000


def build(engine, **overrides):
    torch.manual_seed(0)
    return engine.build(engine.config("small", **overrides)).eval()


def image(seed=0, size=16):
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_munit_axes_are_the_style_code_in_its_own_units():
    model = build(MunitEngine())
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=4))
    axes = model.style_axes(conditioning)
    assert len(axes.labels) == 8 and torch.equal(axes.values, conditioning.styles[0])
    moved = axes.values.clone()
    moved[2] = 1.5
    assert torch.equal(axes.place(moved).styles, moved[None])
    with torch.inference_mode():
        start, edited = (model.translate(image(), axes.place(v)) for v in (axes.values, moved))
    assert torch.equal(start, model.translate(image(), type(conditioning)("a2b", conditioning.styles[:1])))
    assert not torch.equal(start, edited)


def test_step_axes_are_principal_directions_in_standard_units():
    model = build(StepEngine())
    model.mark_mapper_trained()
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "a2b", seed=1))
    axes = model.style_axes(conditioning)
    assert axes.labels[0] == "principal direction 1" and 1 <= len(axes.labels) <= 8
    torch.testing.assert_close(axes.place(axes.values).styles, conditioning.styles, atol=1e-5, rtol=0)
    with torch.no_grad():  # the mapper's samples have mean 0 and deviation 1 along every axis
        samples = model.sample_styles(1024, 0)
    coordinates = torch.stack([model.style_axes(type(conditioning)(conditioning.mode, s[None])).values
                               for s in samples[:256]])
    assert coordinates.mean(0).abs().max() < 0.3 and (coordinates.std(0) - 1).abs().max() < 0.3


def test_untrained_step_mapper_takes_the_directions_between_references():
    model = build(StepEngine())
    references = [image(seed, 24) for seed in range(3)]
    conditioning = model.condition(StyleRequest(StyleMode.REFERENCE, "a2b", references=references))
    axes = model.style_axes(conditioning)
    assert axes.labels == ("reference direction 1", "reference direction 2")
    torch.testing.assert_close(axes.values, torch.zeros(2), atol=1e-5, rtol=0)  # the mean of the references
    codes = model.reference_codes(references)
    along = axes.place(torch.tensor([1.0, 0.0])).styles[0] - conditioning.styles[0]
    assert torch.linalg.matrix_rank(torch.stack([*(codes - codes.mean(0)), along]), atol=1e-5) == 2
    one = model.condition(StyleRequest(StyleMode.REFERENCE, "a2b", references=references[:1]))
    with pytest.raises(EngineError, match="two or more references"):
        model.style_axes(one)


def test_unified_axes_are_the_flow_components():
    model = build(UnifiedEngine(), **TINY_UNIFIED)
    conditioning = model.condition(StyleRequest(StyleMode.RANDOM, "to_ihc", n_samples=3, seed=2))
    axes = model.style_axes(conditioning)
    assert axes.labels == tuple(f"component {i}" for i in range(4))
    torch.testing.assert_close(axes.values, model.style_components(conditioning)[0])
    moved = axes.values.clone()
    moved[1] = -2.0
    first = type(conditioning)("to_ihc", 1, conditioning.styles[:1])
    torch.testing.assert_close(axes.place(moved).styles, model.edit_component(first, 1, -2.0).styles)
    torch.testing.assert_close(model.style_components(axes.place(moved))[0], moved, atol=1e-4, rtol=0)


def test_engines_without_styles_offer_no_axes():
    model = build(UnitEngine())
    assert model.style_axes(model.condition(StyleRequest(StyleMode.NONE, "a2b"))) is None
    assert StyleAxes.SPAN == 3.0


def test_step_offers_no_content_code_its_style_enters_at_the_input():
    model = build(StepEngine())
    assert model.encode_content(image(), "a2b") is None
    with pytest.raises(EngineError, match="no content code"):
        model.decode_content(None, None)


def explore(tmp_path, engine, direction, precision="fp32", **overrides):
    path = tmp_path / f"{engine.name}.safetensors"
    save_model(path, engine, build(engine, **overrides))
    options = TranslateOptions(direction=direction, mode=StyleMode.RANDOM, seed=1, precision=precision)
    return start_exploration(ExplorationJob(path, engine.name, "cpu", options, []))


def crop(seed, height=30, width=42):
    pixels = np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)
    return ImageData(pixels, "crop", rgb=True, contrast_limits=(0.0, 1.0))


@pytest.mark.parametrize("engine, direction, overrides", [(MunitEngine(), "a2b", {}),
                                                          (UnifiedEngine(), "to_ihc", TINY_UNIFIED)])
def test_cached_preview_equals_the_uncached_and_encodes_once_per_crop(tmp_path, engine, direction, overrides):
    exploration = explore(tmp_path, engine, direction, **overrides)
    first, second = crop(0), crop(1)
    requests = []
    for step, pixels in enumerate([first, first, first, second, second]):
        values = exploration.axes.values.clone()
        values[0] = -2.0 + step
        requests.append(PreviewRequest(values, pixels, (0, 0)))
    uncached = [preview(exploration, request, reuse_content=False).data for request in requests]
    model, encoded = exploration.model, []
    encode = model.encode_content
    model.encode_content = lambda images, direction: encoded.append(images.shape) or encode(images, direction)
    for request, expected in zip(requests, uncached):
        result = preview(exploration, request).data
        assert result.shape == (30, 42, 3)
        np.testing.assert_allclose(result, expected, atol=1e-6)
    assert len(encoded) == 2  # once per crop: slider moves reuse its content code
    assert len({array.tobytes() for array in uncached}) == 5  # every slider value its own preview


def test_preview_runs_in_the_jobs_precision_without_autograd(tmp_path):
    exploration = explore(tmp_path, MunitEngine(), "a2b", precision="bf16")
    assert exploration.precision == "bf16"
    model, seen = exploration.model, []
    decode = model.decode_content

    def watched(content, conditioning):
        seen.append((torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu"),
                     torch.get_autocast_dtype("cpu")))
        return decode(content, conditioning)

    model.decode_content = watched
    result = preview(exploration, PreviewRequest(exploration.axes.values, crop(0), (0, 0)))
    assert seen == [(True, True, torch.bfloat16)]
    full = explore(tmp_path, MunitEngine(), "a2b", precision="fp32")
    exact = preview(full, PreviewRequest(full.axes.values, crop(0), (0, 0)))
    assert 0 < np.abs(result.data - exact.data).max() < 0.1  # bf16: close to fp32, not equal


def test_queue_computes_only_the_newest_waiting_request(qtbot):
    release, computed, delivered = threading.Event(), [], []

    def compute(request):
        computed.append(request)
        if request == 0:
            release.wait(10)
        return request * 10

    queue = LatestOnly(compute, delivered.append, lambda message: delivered.append(message))
    queue.submit(0)
    qtbot.waitUntil(lambda: computed == [0], timeout=TIMEOUT_MS)
    for request in (1, 2, 3):  # while 0 runs: only 3 is kept
        queue.submit(request)
    release.set()
    qtbot.waitUntil(lambda: not queue.busy and delivered == [0, 30], timeout=TIMEOUT_MS)
    assert computed == [0, 3]
    queue.submit(-1)
    qtbot.waitUntil(lambda: not queue.busy and len(delivered) == 3, timeout=TIMEOUT_MS)


def test_failed_preview_is_reported_and_the_queue_goes_on(qtbot):
    outcomes = []

    def compute(request):
        if request == "bad":
            raise ValueError("bad crop")
        return request

    queue = LatestOnly(compute, outcomes.append, lambda message: outcomes.append(("failed", message)))
    queue.submit("bad")
    qtbot.waitUntil(lambda: not queue.busy and len(outcomes) == 1, timeout=TIMEOUT_MS)
    queue.submit("good")
    qtbot.waitUntil(lambda: not queue.busy and len(outcomes) == 2, timeout=TIMEOUT_MS)
    assert outcomes == [("failed", "bad crop"), "good"]


@pytest.fixture
def explorer_setup(make_napari_viewer, munit_file):
    from napari_i2i.frontends.translate_widget import TranslateWidget

    viewer = make_napari_viewer()
    data = np.random.default_rng(2).random((40, 52), dtype=np.float32)
    source = viewer.add_image(data.copy(), name="cells", scale=(0.5, 2.0), translate=(3.0, -4.0))
    widget = TranslateWidget(viewer)
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.RANDOM
    return viewer, widget, source, data


def wait_for_preview(qtbot, explorer, previous=None):
    qtbot.waitUntil(lambda: explorer.preview_layer is not None and not explorer.preview_busy
                    and (previous is None or not np.array_equal(explorer.preview_layer.data, previous)),
                    timeout=TIMEOUT_MS)
    return np.array(explorer.preview_layer.data)


def test_sliders_update_the_preview_and_apply_adds_a_result(qtbot, explorer_setup):
    viewer, widget, source, data = explorer_setup
    widget.explore_styles()
    explorer = widget.explorer
    qtbot.waitUntil(lambda: len(explorer.sliders) == 8, timeout=TIMEOUT_MS)
    first = wait_for_preview(qtbot, explorer)
    preview = explorer.preview_layer
    assert preview.data.shape == (40, 52, 3) and preview.rgb  # the whole (small) image is visible
    assert tuple(preview.scale) == (0.5, 2.0) and tuple(preview.translate) == (3.0, -4.0)
    others = {layer.name: np.array(layer.data) for layer in viewer.layers if layer is not preview}

    explorer.sliders[0].value = 2.5
    moved = wait_for_preview(qtbot, explorer, first)
    assert not np.array_equal(moved, first)
    assert {layer.name: np.array(layer.data) for layer in viewer.layers if layer is not preview}.keys() == others.keys()
    for layer in viewer.layers:
        if layer is not preview:
            np.testing.assert_array_equal(layer.data, others[layer.name])  # the source never changes
    np.testing.assert_array_equal(source.data, data)

    layers = len(viewer.layers)
    explorer.apply()
    qtbot.waitUntil(lambda: len(viewer.layers) == layers + 1 and explorer.apply_button.enabled,
                    timeout=TIMEOUT_MS)
    result = viewer.layers[-1]
    assert "explored: style 0 = 2.50" in result.name
    assert result.metadata["napari_i2i"]["style_axes"]["style 0"] == pytest.approx(2.5)
    assert tuple(result.scale) == (0.5, 2.0) and tuple(result.translate) == (3.0, -4.0)
    np.testing.assert_allclose(result.data, moved, atol=1e-4)  # the whole image in view: preview = result

    explorer.reset()
    wait_for_preview(qtbot, explorer, moved)
    np.testing.assert_allclose(explorer.preview_layer.data, first, atol=1e-6)


def test_the_explorer_starts_from_the_widgets_precision(qtbot, explorer_setup, monkeypatch):
    from napari_i2i.frontends import translate_widget

    viewer, widget, source, data = explorer_setup
    jobs = []
    monkeypatch.setattr(translate_widget, "dock_style_explorer", lambda _viewer, job, _source: jobs.append(job))
    widget.precision.value = "fp32"
    widget.explore_styles()
    assert [job.options.precision for job in jobs] == ["fp32"]


def test_preview_covers_only_the_visible_region(qtbot, explorer_setup, monkeypatch):
    from napari_i2i.frontends import style_explorer

    viewer, widget, source, _ = explorer_setup
    monkeypatch.setattr(style_explorer, "PREVIEW_SIDE", 16)
    widget.explore_styles()
    explorer = widget.explorer
    preview = wait_for_preview(qtbot, explorer)
    assert preview.shape == (16, 16, 3)
    # centred on the image: rows 12…28, columns 18…34, placed there in world coordinates
    assert tuple(explorer.preview_layer.translate) == (3.0 + 12 * 0.5, -4.0 + 18 * 2.0)


def test_explorer_refuses_styles_it_cannot_start_from(qtbot, explorer_setup):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    viewer, widget, source, _ = explorer_setup
    start = len(notification_manager.records)
    widget.style_mode.value = StyleMode.MATCHED
    widget.explore_styles()
    messages = [str(n.message) for n in notification_manager.records[start:]
                if n.severity == NotificationSeverity.ERROR]
    assert any("starts from a random, reference, interpolated or typical style" in m for m in messages)
    assert widget.explorer is None  # nothing was docked
