"""Diversity maps of results written as made (stores, lazy inputs): made band by band, equal to
the map of the result in memory."""

import numpy as np
import pytest
import tifffile
import zarr

from napari_i2i.core import image_io
from napari_i2i.core.diversity import DiversityBands, diversity_result, map_metadata, map_shape
from napari_i2i.core.image_metadata import Axis, ImageMetadata
from napari_i2i.core.layer_data import PixelSize
from napari_i2i.core.lazy_images import open_zarr
from napari_i2i.core.translate import TranslationResult
from napari_i2i.frontends.cli import main

RUN = ["--samples", "3", "--seed", "4", "--tile", "32", "--precision", "fp32", "--compile", "off", "--quiet"]


@pytest.mark.parametrize("shape, channels, axes", [
    ((3, 2, 40, 24, 3), 3, [None, 0, 1, 2]),  # samples, planes, Y, X, RGB
    ((2, 2, 4, 40, 24), 4, [None, 0, 1, 2, 3]),  # samples, planes, channels, Y, X
    ((4, 40, 24), 1, [None, 0, 1]),  # samples, Y, X
])
def test_bands_give_the_map_of_the_whole_result(shape, channels, axes):
    data = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    whole = diversity_result(TranslationResult("cells", data, channels == 3, axes, "a2b", (0.0, 255.0),
                                               {"n_samples": shape[0]}), channels).data
    samples, spread = np.zeros_like(data), np.full(map_shape(shape, channels), np.nan, np.float32)
    bands = DiversityBands(samples, spread, channels)
    planes = shape[1:-2] if channels == 1 else shape[1:-3]
    for plane in np.ndindex(*planes):
        for top in range(0, 40, 16):  # bands of 16 rows, the last one shorter
            rows = slice(top, top + 16)
            inner = {3: (rows, slice(None), slice(None)), 1: (rows, slice(None))}.get(
                channels, (slice(None), rows, slice(None)))
            index = (slice(None), *plane, *inner)
            bands[index] = data[index]
    np.testing.assert_array_equal(samples, data)
    np.testing.assert_array_equal(spread, whole)
    assert bands.shape == data.shape


def test_a_map_target_of_another_shape_is_refused():
    with pytest.raises(ValueError, match=r"is \(5, 6\), not \(5, 7\)"):
        DiversityBands(np.zeros((2, 5, 6, 3)), np.zeros((5, 7), np.float32), 3)


def test_map_metadata_drops_samples_and_channels():
    axes = (Axis("sample"), Axis("z", "space"), Axis("y", "space"), Axis("x", "space"), Axis("c", "channel"))
    mapped = map_metadata(ImageMetadata(axes, ("R", "G", "B")), 3)
    assert mapped == ImageMetadata(axes[1:4])
    assert map_metadata(None, 3) is None


@pytest.fixture
def slide(tmp_path):
    """A small OME-TIFF with a pixel size, large enough for several bands at tile 32."""
    path = tmp_path / "slide.ome.tif"
    image = np.random.default_rng(2).integers(0, 255, (140, 60), dtype=np.uint8)
    tifffile.imwrite(path, image, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5})
    return path


def test_cli_map_of_a_store_output_equals_the_in_memory_map(munit_file, slide, tmp_path, capsys):
    in_memory = tmp_path / "memory_map.tif"
    assert main(["translate", str(munit_file), str(slide), "-o", str(tmp_path / "out.tif"),
                 "--diversity-map", str(in_memory), *RUN]) == 0
    expected = tifffile.imread(in_memory)
    assert expected.shape == (140, 60) and expected.max() > 0
    stored_tiff, stored_zarr = tmp_path / "map.tif", tmp_path / "map.ome.zarr"
    for out, mapped in ((tmp_path / "out.ome.zarr", stored_tiff), (tmp_path / "out2.ome.zarr", stored_zarr)):
        assert main(["translate", str(munit_file), str(slide), "-o", str(out),
                     "--diversity-map", str(mapped), *RUN]) == 0
        assert str(mapped) in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(stored_tiff), expected)
    written = open_zarr(stored_zarr)
    np.testing.assert_array_equal(np.asarray(written.data), expected)
    multiscales = zarr.open_group(stored_zarr, mode="r").attrs["ome"]["multiscales"][0]
    assert [axis["name"] for axis in multiscales["axes"]] == ["y", "x"]
    assert written.pixel_size == PixelSize(0.5, 0.25)
    assert image_io.read_image(stored_tiff).pixel_size == PixelSize(0.5, 0.25)
    assert image_io.read_image(in_memory).pixel_size == PixelSize(0.5, 0.25)
    assert not [path.name for path in tmp_path.iterdir() if "partial" in path.name]


def test_cli_map_of_a_lazy_input_equals_the_in_memory_map(munit_file, slide, tmp_path, monkeypatch):
    in_memory = tmp_path / "memory_map.tif"
    assert main(["translate", str(munit_file), str(slide), "-o", str(tmp_path / "out.tif"),
                 "--diversity-map", str(in_memory), *RUN]) == 0
    monkeypatch.setattr(image_io, "LAZY_ABOVE_PIXELS", 0)  # read window by window, written as made
    lazy_map = tmp_path / "lazy_map.tif"
    assert main(["translate", str(munit_file), str(slide), "-o", str(tmp_path / "lazy.tif"),
                 "--diversity-map", str(lazy_map), *RUN]) == 0
    np.testing.assert_array_equal(tifffile.imread(lazy_map), tifffile.imread(in_memory))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "lazy.tif"), tifffile.imread(tmp_path / "out.tif"))


def test_cli_interrupted_leaves_neither_output_nor_map(munit_file, slide, tmp_path, monkeypatch):
    from napari_i2i.core import stores

    written, assign = [], stores.PendingOutput.__setitem__

    def interrupted_after_two_bands(self, index, values):
        if len(written) == 4:  # two bands of samples and two of the map are in their stores
            raise KeyboardInterrupt
        written.append(self.path.name)
        assign(self, index, values)

    monkeypatch.setattr(stores.PendingOutput, "__setitem__", interrupted_after_two_bands)
    assert main(["translate", str(munit_file), str(slide), "-o", str(tmp_path / "out.ome.zarr"),
                 "--diversity-map", str(tmp_path / "map.tif"), *RUN]) == 130
    assert written == ["out.ome.zarr", "map.tif"] * 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["munit_small.safetensors", "slide.ome.tif"]
