"""Large, multiscale and dask layers are translated into an OME-Zarr store that napari shows
while it fills (core.filling_store, frontends.stored_results); Xvfb via pytest-xvfb."""

import threading

import dask.array as da
import numpy as np
import pytest
import zarr
from napari.layers import Image
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core import filling_store
from napari_i2i.core.filling_store import FillingStore, StoreLevel
from napari_i2i.core.job_progress import throttled
from napari_i2i.core.layer_data import PixelSize
from napari_i2i.core.lazy_images import open_zarr_levels
from napari_i2i.core.stores import write_ome_zarr
from napari_i2i.core.translate import Progress
from napari_i2i.frontends import stored_results, translate_job
from napari_i2i.frontends.reader import read_zarr
from napari_i2i.frontends.translate_widget import TranslateWidget

RUN_TIMEOUT_MS = 60_000
SHAPE = (300, 280)  # two levels: 300 × 280 and 150 × 140


@pytest.fixture
def results_folder(tmp_path, monkeypatch):
    """Stores of jobs without a Write into folder go here, not into the user's cache."""
    folder = tmp_path / "cache"
    monkeypatch.setattr(stored_results, "RESULTS_FOLDER", folder)
    return folder


@pytest.fixture
def notifications():
    start = len(notification_manager.records)
    return lambda: [(n.severity, str(n.message)) for n in notification_manager.records[start:]]


def image():
    return np.random.default_rng(1).random(SHAPE, dtype=np.float32)


def prepared(viewer, munit_file, source, tile=128, n_samples=1):
    widget = TranslateWidget(viewer)
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.style_mode.value = StyleMode.RANDOM
    widget.n_samples.value = n_samples
    widget.seed.value = 5
    widget.tile_size.value = tile
    widget.device.value = "cpu"
    widget.precision.value = "fp32"
    widget.compile.value = "off"
    return widget


def run_and_wait(qtbot, widget):
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=RUN_TIMEOUT_MS)


def test_store_fills_every_level_band_by_band_as_the_whole_image_pyramid(tmp_path, monkeypatch):
    monkeypatch.setattr(filling_store, "CHUNK", 96)  # several chunk columns per level
    result = np.random.default_rng(0).integers(0, 255, (600, 520, 3), dtype=np.uint8)
    store = FillingStore(tmp_path / "filled.ome.zarr", result.shape, np.uint8, rgb=True,
                         pixel_size=PixelSize(0.5, 0.25))
    levels = store.levels()
    assert [level.shape for level in levels] == [(600, 520, 3), (300, 260, 3), (150, 130, 3)]

    store[(slice(0, 100), slice(None), slice(None))] = result[:100]
    np.testing.assert_array_equal(levels[0][:100], result[:100])
    assert np.asarray(levels[1][25:50]).any() and not np.asarray(levels[1][50:]).any()  # 100 rows → 50 → 25
    assert not np.asarray(levels[2][25:]).any()
    with pytest.raises(ValueError, match="top to bottom"):
        store[(slice(200, 300), slice(None), slice(None))] = result[200:300]
    for top in range(100, 600, 100):
        store[(slice(top, top + 100), slice(None), slice(None))] = result[top : top + 100]
    assert store.bands_written == 6

    write_ome_zarr(tmp_path / "whole.ome.zarr", result, rgb=True, pixel_size=PixelSize(0.5, 0.25))
    whole = open_zarr_levels(tmp_path / "whole.ome.zarr")
    filled = open_zarr_levels(store.path)
    assert filled.axes == whole.axes and filled.pixel_size == whole.pixel_size
    for ours, expected in zip(filled.levels, whole.levels, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(expected))
    np.testing.assert_array_equal(levels[1][7, 3:9, 1], np.asarray(whole.levels[1])[1, 7, 3:9])  # colours last
    ((read, attributes, _),) = read_zarr(str(store.path))  # the plugin's reader opens it later
    assert attributes["rgb"] and attributes["multiscale"] and attributes["scale"] == (0.5, 0.25)
    store.discard()
    assert not store.path.exists()


def test_store_paths_never_reuse_a_name(tmp_path, results_folder):
    (tmp_path / "a_b_a2b.ome.zarr").mkdir()
    paths = stored_results.store_paths(["a b", "a b", "c"], [True, True, False], "a2b", tmp_path)
    assert paths == (tmp_path / "a_b_a2b-2.ome.zarr", tmp_path / "a_b_a2b-3.ome.zarr", None)
    (cached,) = stored_results.store_paths(["c"], [True], "b2a", None)
    assert cached.name == "c_b2a.ome.zarr" and cached.parent.parent == results_folder
    assert stored_results.store_paths(["c"], [False], "b2a", None) == ()


def test_dask_and_large_layers_translate_into_a_filling_store_equal_to_memory(
    qtbot, make_napari_viewer, munit_file, results_folder, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    pixels = image()
    placement = dict(scale=(0.5, 0.5), translate=(10, 20), units=("um", "um"), axis_labels=("y", "x"))
    in_memory = viewer.add_image(pixels, name="in memory", contrast_limits=(0.0, 1.0), **placement)
    lazy = viewer.add_image(da.from_array(pixels, chunks=(128, 128)), name="lazy", contrast_limits=(0.0, 1.0),
                            **placement)
    shown_while_running, redrawn_while_running, partly_drawn = [], [], threading.Event()
    viewer.layers.events.inserted.connect(
        lambda event: shown_while_running.append((event.value.name, widget.worker.is_running)))
    refresh = Image.refresh

    def counted_refresh(layer, *args, **kwargs):
        store = layer.metadata.get("napari_i2i", {}).get("store")
        if store and widget.worker.is_running:
            level = layer.data[0] if layer.multiscale else layer.data
            rows_written = np.asarray(level).any(axis=(-2, -1))  # per row (of each sample): pixels yet?
            redrawn_while_running.append((rows_written.any(), rows_written.all()))
            if rows_written.any() and not rows_written.all():
                partly_drawn.set()
        return refresh(layer, *args, **kwargs)

    write_band = FillingStore.__setitem__

    def write_band_once_drawn(store, index, values):
        """From the second band on, the worker lets the viewer draw the first: on a fast machine
        the job could otherwise end before the main thread handles a single progress signal."""
        if store.bands_written:
            partly_drawn.wait(timeout=5)
        write_band(store, index, values)

    monkeypatch.setattr(Image, "refresh", counted_refresh)
    monkeypatch.setattr(FillingStore, "__setitem__", write_band_once_drawn)
    monkeypatch.setattr(stored_results, "REFRESH_SECONDS", 0.0)
    monkeypatch.setattr(translate_job, "throttled", lambda steps: throttled(steps, interval=0.0))  # every band

    widget = prepared(viewer, munit_file, in_memory, n_samples=2)
    run_and_wait(qtbot, widget)
    expected = viewer.layers[-1].data
    assert isinstance(expected, np.ndarray) and expected.shape == (2, *SHAPE, 3)

    widget = prepared(viewer, munit_file, lazy, n_samples=2)
    run_and_wait(qtbot, widget)
    assert widget.status.value.startswith("done"), widget.status.value
    result = viewer.layers[-1]
    assert shown_while_running[-1] == ("lazy [translating…]", True)  # added before any tile
    assert (True, False) in redrawn_while_running  # redrawn with some bands written, before the last one
    assert result.name == "lazy [a2b, 2 random styles (seed 5)]"
    assert result.multiscale and all(isinstance(level, StoreLevel) for level in result.data)
    assert [level.shape for level in result.data] == [(2, *SHAPE, 3), (2, 150, 140, 3)]
    np.testing.assert_allclose(np.asarray(result.data[0]), expected, atol=1e-5)
    np.testing.assert_array_equal(result.scale, (1, 0.5, 0.5))
    np.testing.assert_array_equal(result.translate, (0, 10, 20))
    assert [str(unit) for unit in result.units] == ["pixel", "micrometer", "micrometer"]
    assert tuple(result.axis_labels) == ("sample", "y", "x")
    assert tuple(result.contrast_limits) == (0.0, 1.0)
    store = result.metadata["napari_i2i"]["store"]
    assert store.startswith(str(results_folder)) and result.metadata["napari_i2i"]["seed"] == 5
    assert open_zarr_levels(store).pixel_size == PixelSize(0.5, 0.5, "micrometer")

    # a numpy layer over the threshold goes into a store too, here into the chosen folder; one under
    # it in the same job stays in memory
    monkeypatch.setattr(translate_job, "STORE_ABOVE_PIXELS", 100 * 100)
    small = viewer.add_image(pixels[:64, :64], name="small", contrast_limits=(0.0, 1.0))
    widget = prepared(viewer, munit_file, in_memory, n_samples=2)
    widget.sources.value = [in_memory, small]
    widget.write_into.value = tmp_path / "mine"
    run_and_wait(qtbot, widget)
    large, small_result = viewer.layers[-2:]
    assert large.name == "in memory [a2b, 2 random styles (seed 5)] [1]" and large.multiscale  # napari's [1]
    assert large.metadata["napari_i2i"]["store"] == str(tmp_path / "mine" / "in_memory_a2b.ome.zarr")
    np.testing.assert_allclose(np.asarray(large.data[0]), expected, atol=1e-5)
    assert small_result.name == "small [a2b, 2 random styles (seed 5)]"
    assert isinstance(small_result.data, np.ndarray) and "store" not in small_result.metadata["napari_i2i"]

    # one plane: napari keeps the coarsest level of 2-D pyramids in memory; it must show the written result
    widget = prepared(viewer, munit_file, lazy)
    run_and_wait(qtbot, widget)
    single = viewer.layers[-1]
    assert single.multiscale and single.ndim == 2 and single.thumbnail[..., :3].any()


def test_the_store_carries_the_layers_axes_units_and_spacing(qtbot, make_napari_viewer, munit_file, results_folder):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(3).integers(0, 255, (2, 64, 48), dtype=np.uint8)  # uint8 results: RGB
    layer = viewer.add_image(da.from_array(stack, chunks=(1, 32, 32)), name="stack", contrast_limits=(0, 255),
                             scale=(2.0, 0.5, 0.25), units=("um", "um", "um"), axis_labels=("z", "y", "x"))
    widget = prepared(viewer, munit_file, layer, n_samples=2)
    run_and_wait(qtbot, widget)
    assert widget.status.value.startswith("done"), widget.status.value
    store = viewer.layers[-1].metadata["napari_i2i"]["store"]
    multiscales = zarr.open_group(store, mode="r").attrs["ome"]["multiscales"][0]
    # colours before Y/X, so the Z axis (space) may not keep its type before them (OME-NGFF's order)
    assert multiscales["axes"] == [{"name": "sample"}, {"name": "z", "unit": "micrometer"},
                                   {"name": "c", "type": "channel"},
                                   {"name": "y", "type": "space", "unit": "micrometer"},
                                   {"name": "x", "type": "space", "unit": "micrometer"}]
    assert multiscales["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 2.0, 1.0, 0.5, 0.25]
    ((_, attributes, _),) = read_zarr(store)
    assert attributes["rgb"] and attributes["axis_labels"] == ("sample", "z", "y", "x")
    assert attributes["scale"] == (1.0, 2.0, 0.5, 0.25)
    assert attributes["units"] == ("pixel", "micrometer", "micrometer", "micrometer")
    np.testing.assert_array_equal(layer.data, stack)

    plain = viewer.add_image(da.from_array(stack[0], chunks=32), name="plain", contrast_limits=(0, 255))
    widget = prepared(viewer, munit_file, plain)
    run_and_wait(qtbot, widget)
    multiscales = zarr.open_group(viewer.layers[-1].metadata["napari_i2i"]["store"], mode="r").attrs["ome"]
    assert [axis["name"] for axis in multiscales["multiscales"][0]["axes"]] == ["c", "y", "x"]
    assert multiscales["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0] * 3


def test_cancel_removes_the_partial_result_and_its_store(
    qtbot, make_napari_viewer, munit_file, results_folder, notifications
):
    viewer = make_napari_viewer()
    full = np.random.default_rng(2).random((512, 512), dtype=np.float32)
    pyramid = viewer.add_image([full, full[::2, ::2]], multiscale=True, name="slide", contrast_limits=(0, 1))
    widget = prepared(viewer, munit_file, pyramid, tile=64)

    widget.run()
    qtbot.waitUntil(lambda: "tile(s)" in widget.status.value, timeout=RUN_TIMEOUT_MS)
    assert [layer.name for layer in viewer.layers] == ["slide", "slide [translating…]"]
    widget.cancel()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=RUN_TIMEOUT_MS)

    assert list(viewer.layers) == [pyramid] and widget.status.value == "cancelled"
    assert not results_folder.exists() or not any(results_folder.iterdir())
    assert any("removed the unfinished result(s) slide [translating…]" in text
               for severity, text in notifications() if severity == NotificationSeverity.INFO)
    np.testing.assert_array_equal(pyramid.data[0], full)


def test_failure_removes_the_partial_result_and_reports(
    qtbot, make_napari_viewer, munit_file, results_folder, monkeypatch, notifications
):
    def failing_translation(*args, **kwargs):
        yield Progress(0.1, "slide: plane 1/1, 4 tile(s), 10%")
        raise ValueError("disk full")

    monkeypatch.setattr(translate_job, "run_translation", failing_translation)
    viewer = make_napari_viewer()
    layer = viewer.add_image(da.zeros((64, 64), chunks=32), name="slide", contrast_limits=(0, 1))
    widget = prepared(viewer, munit_file, layer)
    run_and_wait(qtbot, widget)

    assert list(viewer.layers) == [layer]
    assert widget.status.value.startswith("failed:") and "disk full" in widget.status.value
    assert not any(path.suffix == ".zarr" for path in results_folder.rglob("*"))


def test_diversity_map_and_a_file_as_folder_are_refused_before_a_stored_job(
    make_napari_viewer, munit_file, results_folder, tmp_path, notifications
):
    viewer = make_napari_viewer()
    layer = viewer.add_image(da.zeros((64, 64), chunks=32), name="slide", contrast_limits=(0, 1))
    widget = prepared(viewer, munit_file, layer, n_samples=2)
    widget.diversity_map.value = True
    widget.run()
    widget.diversity_map.value = False
    (tmp_path / "a file").write_text("")
    widget.write_into.value = tmp_path / "a file"
    widget.run()

    assert widget.worker is None
    refusals = [text for severity, text in notifications() if severity == NotificationSeverity.ERROR]
    assert refusals == ["Diversity map needs the results in memory; the results of large, multiscale or dask "
                        "layers are written into stores", f"Write into: {tmp_path / 'a file'} is a file, not a folder"]
