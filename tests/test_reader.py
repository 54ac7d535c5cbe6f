"""napari opens OME-Zarr / zarr results as lazily loaded multiscale layers (the npe2 reader),
and the Translate widget reads a multiscale layer's full level window by window."""

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.core.layer_data import PixelSize
from napari_i2i.core.lazy_images import open_zarr_levels
from napari_i2i.core.stores import write_ome_zarr
from napari_i2i.frontends import stored_results
from napari_i2i.frontends.reader import get_reader, read_zarr
from napari_i2i.frontends.translate_widget import TranslateWidget

RUN_TIMEOUT_MS = 60_000


class CountingArray:
    """A level napari takes as layer data, recording the shape of every read."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim, self.size = data, data.shape, data.dtype, data.ndim, data.size
        self.reads = []

    def __getitem__(self, index):
        block = np.asarray(self.data[index])
        self.reads.append(block.shape)
        return block


@pytest.fixture
def rgb_result(tmp_path):
    """An RGB result as napari-i2i writes it: 600×520 → levels 600, 300, 150 rows, channels before Y/X."""
    image = np.random.default_rng(0).integers(0, 255, (600, 520, 3), dtype=np.uint8)
    path = tmp_path / "stained.ome.zarr"
    write_ome_zarr(path, image, rgb=True, pixel_size=PixelSize(0.5, 0.25))
    return path, image


def test_rgb_ome_zarr_is_a_lazy_multiscale_rgb_layer_with_pixel_size(rgb_result):
    path, image = rgb_result
    assert get_reader(str(path)) is read_zarr and get_reader([str(path)]) is read_zarr
    ((levels, attributes, kind),) = read_zarr(str(path))
    assert kind == "image"
    assert attributes["multiscale"] and attributes["rgb"] and attributes["name"] == "stained"
    assert [level.shape for level in levels] == [(600, 520, 3), (300, 260, 3), (150, 130, 3)]
    assert all(isinstance(level, da.Array) for level in levels)
    assert attributes["scale"] == (0.5, 0.25)
    assert attributes["units"] == ("micrometer", "micrometer")
    assert attributes["axis_labels"] == ("y", "x")
    np.testing.assert_array_equal(np.asarray(levels[0][100:140, 7:30]), image[100:140, 7:30])


def test_stack_keeps_leading_axes_with_unit_scale(tmp_path):
    path = tmp_path / "stack.zarr"
    stack = np.arange(2 * 300 * 280, dtype=np.uint16).reshape(2, 300, 280)
    write_ome_zarr(path, stack, rgb=False, pixel_size=PixelSize(2.0, 3.0, "nanometer"))
    ((levels, attributes, _),) = read_zarr(str(path))
    assert not attributes["rgb"] and attributes["multiscale"]
    assert [level.shape for level in levels] == [(2, 300, 280), (2, 150, 140)]
    assert attributes["scale"] == (1.0, 2.0, 3.0)
    assert attributes["units"] == ("pixel", "nanometer", "nanometer")
    assert attributes["axis_labels"] == ("dim_0", "y", "x")


def test_single_level_and_plain_zarr_array_are_plain_lazy_layers(tmp_path):
    small = tmp_path / "small.ome.zarr"
    write_ome_zarr(small, np.ones((40, 30), dtype=np.float32), rgb=False)
    plain = tmp_path / "plain.zarr"
    zarr.create_array(plain, shape=(20, 10), dtype=np.uint8, chunks=(10, 10), fill_value=3)
    for path, shape in [(small, (40, 30)), (plain, (20, 10))]:
        ((data, attributes, _),) = read_zarr(str(path))
        assert isinstance(data, da.Array) and data.shape == shape
        assert not attributes["multiscale"] and attributes["scale"] == (1.0, 1.0)
    ((data, attributes, _),) = read_zarr(str(plain))
    assert "units" not in attributes and attributes["axis_labels"] == ("dim_0", "dim_1")
    assert open_zarr_levels(small).pixel_size is None  # written without a pixel size: not read back as 1 µm
    assert np.asarray(data).max() == 3


def test_unreadable_paths_are_left_to_other_readers(tmp_path):
    not_image = tmp_path / "labels.zarr"
    zarr.open_group(not_image, mode="w").attrs["note"] = "no multiscales"
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    line = tmp_path / "line.zarr"
    zarr.create_array(line, shape=(20,), dtype=np.uint8, fill_value=0)
    for path in (not_image, empty, line, tmp_path / "missing.zarr"):
        assert read_zarr(str(path)) is None
    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader([str(not_image), str(empty)]) is None


def test_viewer_opens_the_result_as_a_multiscale_layer(make_napari_viewer, rgb_result):
    path, image = rgb_result
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-i2i")
    assert layer.multiscale and layer.rgb and layer.name == "stained"
    assert [level.shape for level in layer.data] == [(600, 520, 3), (300, 260, 3), (150, 130, 3)]
    assert isinstance(layer.data[0], da.Array)
    np.testing.assert_allclose(layer.scale, (0.5, 0.25))
    assert [str(unit) for unit in layer.units] == ["micrometer", "micrometer"]


def test_translate_widget_reads_a_multiscale_layer_window_by_window(
    qtbot, make_napari_viewer, munit_file, tmp_path, monkeypatch
):
    monkeypatch.setattr(stored_results, "RESULTS_FOLDER", tmp_path)  # a multiscale layer's result is stored
    viewer = make_napari_viewer()
    full = np.random.default_rng(2).random((384, 320), dtype=np.float32)
    level0 = CountingArray(full)
    pyramid = viewer.add_image([level0, full[::2, ::2], full[::4, ::4]], multiscale=True, name="slide")
    in_memory = viewer.add_image(full, name="in memory", contrast_limits=pyramid.contrast_limits)
    results = []
    for source in (pyramid, in_memory):
        widget = TranslateWidget(viewer)
        widget.model_file.value = munit_file
        widget.sources.value = [source]
        widget.style_mode.value = StyleMode.RANDOM
        widget.n_samples.value = 1
        widget.seed.value = 3
        widget.tile_size.value = 64
        widget.device.value = "cpu"
        level0.reads.clear()
        widget.run()
        qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=RUN_TIMEOUT_MS)
        assert widget.status.value.startswith("done"), widget.status.value
        result = viewer.layers[-1]
        results.append(np.asarray(result.data[0] if result.multiscale else result.data))
        if source is pyramid:
            assert level0.reads and max(rows * cols for rows, cols in level0.reads) < full.size // 4
    assert results[0].shape == results[1].shape
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)
