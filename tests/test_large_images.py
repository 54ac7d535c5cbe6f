"""Whole slides with bounded memory: lazy inputs, activations on disk, outputs written as made."""

import tempfile

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
import zarr
from conftest import build_munit, drain

from napari_i2i.contract.engine_api import StyleMode, StyleRequest
from napari_i2i.core import image_io, tiling
from napari_i2i.core.image_io import read_image
from napari_i2i.core.layer_data import ImageData, PixelSize
from napari_i2i.core.lazy_images import open_zarr
from napari_i2i.core.model_file import load_model
from napari_i2i.core.stores import PendingOutput, write_ome_zarr
from napari_i2i.core.tiling import TilePlan, padded_indices, translate_tiled
from napari_i2i.core.translate import TranslateOptions, run_translation
from napari_i2i.frontends.cli import main

OPTIONS = TranslateOptions(direction="a2b", n_samples=2, seed=1, tile=64, precision="fp32", compile="off")


class CountingArray:
    """A lazy array that records the size of every read (to show nothing reads it whole)."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

    def __getitem__(self, index):
        block = np.asarray(self.data[index])
        self.reads.append(block.size)
        return block


class IndexedWindows:
    """A tiling WindowSource over a tensor, padding each window by index as a lazy reader does."""

    def __init__(self, image):
        self.image = image

    def window(self, plan, rows, cols):
        rows, cols = padded_indices(plan, 0, *rows), padded_indices(plan, 1, *cols)
        return self.image[..., rows[:, None], cols[None, :]]


@pytest.fixture(scope="module")
def munit():
    return build_munit()[1]


@pytest.fixture
def no_spill_threshold(monkeypatch):
    monkeypatch.setattr(tiling, "SPILL_ABOVE_PIXELS", 0)


@pytest.mark.parametrize("height, width", [(301, 259), (5, 9)])  # reflected and replicated borders
def test_windows_read_one_by_one_with_activations_on_disk_equal_in_memory(munit, height, width, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    conditioning = munit.condition(StyleRequest(StyleMode.RANDOM, "a2b", n_samples=2, seed=3))
    image = torch.rand(1, 3, height, width) * 2 - 1
    plan = TilePlan.make(height, width, tile=64, context=munit.capabilities.context,
                         multiple=munit.capabilities.size_multiple)
    bands = []
    with torch.inference_mode():
        memory, _ = drain(translate_tiled(munit.stages(conditioning), image, plan, munit.shared_statistics(),
                                          torch.device("cpu")))
        steps = translate_tiled(munit.stages(conditioning), IndexedWindows(image), plan, munit.shared_statistics(),
                                torch.device("cpu"), output=lambda top, block: bands.append((top, block)),
                                spill=True)
        assert drain(steps)[0] is None
    assert [top for top, _ in bands] == sorted(top for top, _ in bands) and bands[0][0] == 0
    assert (torch.cat([block for _, block in bands], dim=2) - memory).abs().max() <= 1e-5
    assert list(tmp_path.iterdir()) == []  # the activations' folder is gone


def test_store_backed_translation_equals_in_memory(munit_file, no_spill_threshold, tmp_path):
    loaded = load_model(munit_file)
    data = np.random.default_rng(0).normal(100, 20, (2, 150, 131)).astype(np.float32)
    limits = (40.0, 160.0)  # the range a lazy image would otherwise sample (a test of its own)
    [memory] = drain(run_translation(loaded, [ImageData(data, "cells", contrast_limits=limits)], OPTIONS))[0]
    counting = CountingArray(da.from_array(data, chunks=(1, 64, 64)))
    pending = PendingOutput(tmp_path / "out.ome.zarr", memory.data.shape, memory.data.dtype, memory.rgb)
    lazy = ImageData(counting, "cells", contrast_limits=limits)
    [stored] = drain(run_translation(loaded, [lazy], OPTIONS, outputs=[pending]))[0]
    assert stored.data is pending and max(counting.reads) < data[0].size  # windows, never a whole plane
    [written] = pending.finish()
    level = np.moveaxis(np.asarray(zarr.open_group(written, mode="r")["0"]), -3, -1)  # colours last again
    assert level.shape == memory.data.shape
    assert np.abs(level - memory.data).max() <= 1e-5 * np.ptp(memory.data)


def test_ome_tiff_pixel_size_reaches_ome_zarr_and_tiff_outputs(munit_file, tmp_path):
    source = tmp_path / "slide.ome.tif"
    image = np.random.default_rng(1).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    tifffile.imwrite(source, image, photometric="rgb", ome=True,
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5})
    outputs = [tmp_path / name for name in ("out.ome.zarr", "out.tif", "out.ome.tif")]
    for out in outputs:
        assert main(["translate", str(munit_file), str(source), "-o", str(out), "--quiet", "--tile", "64"]) == 0
    multiscales = zarr.open_group(outputs[0], mode="r").attrs["ome"]["multiscales"][0]
    assert [axis["name"] for axis in multiscales["axes"]] == ["c", "y", "x"]
    assert multiscales["axes"][-1]["unit"] == "micrometer"
    assert multiscales["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.5, 0.25]
    for tiff in outputs[1:]:
        assert read_image(tiff).pixel_size == PixelSize(0.5, 0.25)
    assert open_zarr(outputs[0]).pixel_size == PixelSize(0.5, 0.25)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(open_zarr(outputs[0]).data), 0, -1),
                                  tifffile.imread(outputs[1]))


def test_pyramidal_tiff_is_read_lazily_with_its_range_from_a_coarse_level(tmp_path):
    path = tmp_path / "pyramid.tif"
    full = np.random.default_rng(2).integers(0, 4000, (300, 260), dtype=np.uint16)
    full[:150] += 30000  # a coarse level sees the same two populations
    with tifffile.TiffWriter(path) as tif:
        tif.write(full, subifds=1, tile=(64, 64))
        tif.write(full[::2, ::2], subfiletype=1, tile=(64, 64))
    image = read_image(path, lazy=True)
    assert isinstance(image.data, da.Array) and image.overview.shape == (150, 130)
    from napari_i2i.core.layer_data import layout

    low, high = layout(image, 1).intensity_range
    assert (low, high) == tuple(np.percentile(full[::2, ::2].astype(np.float32), (0.1, 99.9)))
    assert np.array_equal(np.asarray(image.data[100:110, 7:9]), full[100:110, 7:9])


def test_ome_zarr_input_is_read_with_its_levels_and_pixel_size(tmp_path):
    path = tmp_path / "input.ome.zarr"
    data = np.random.default_rng(3).integers(0, 255, (2, 600, 520), dtype=np.uint8)
    write_ome_zarr(path, data, rgb=False, pixel_size=PixelSize(0.3, 0.3, "nanometer"))
    image = read_image(path)
    assert image.lazy and image.data.shape == data.shape and image.overview.shape == (2, 300, 260)
    assert image.pixel_size == PixelSize(0.3, 0.3, "nanometer")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    [node, *_] = Reader(parse_url(str(path)))()  # ome-zarr-py reads what we wrote
    assert [level.shape for level in node.data] == [(2, 600, 520), (2, 300, 260), (2, 150, 130)]


def test_cancelling_leaves_no_output_and_no_activations(munit_file, no_spill_threshold, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    loaded = load_model(munit_file)
    data = np.random.default_rng(4).integers(0, 255, (150, 140, 3), dtype=np.uint8)
    (tmp_path / "out").mkdir()
    pending = PendingOutput(tmp_path / "out" / "x.ome.zarr", (2, 150, 140, 3), np.uint8, True)
    job = run_translation(loaded, [ImageData(da.from_array(data), "x", rgb=True)], OPTIONS, outputs=[pending])
    for _ in range(5):
        next(job)
    assert list((tmp_path / "tmp").iterdir())  # activations on disk while it runs
    job.close()
    pending.discard()
    assert list((tmp_path / "tmp").iterdir()) == [] and list((tmp_path / "out").iterdir()) == []


def test_cli_interrupted_writes_nothing(munit_file, tmp_path, monkeypatch):
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, np.random.default_rng(5).integers(0, 255, (300, 260), dtype=np.uint8))
    calls = []

    def interrupt(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(tiling._Blender, "add", interrupt)
    assert main(["translate", str(munit_file), str(source), "-o", str(tmp_path / "out" / "x.ome.zarr"), "--quiet",
                 "--tile", "64"]) == 130
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "munit_small.safetensors", "out"]
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_lazy_tiff_to_tiled_tiff_equals_the_eager_path(munit_file, tmp_path, monkeypatch):
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, np.random.default_rng(6).integers(0, 60000, (2, 140, 130), dtype=np.uint16),
                     resolution=(2.0, 2.0), resolutionunit="MICROMETER")
    arguments = ["translate", str(munit_file), str(source), "--quiet", "--tile", "64", "--precision", "fp32"]
    assert main([*arguments, "-o", str(tmp_path / "eager.tif")]) == 0
    monkeypatch.setattr(image_io, "LAZY_ABOVE_PIXELS", 0)
    monkeypatch.setattr(tiling, "SPILL_ABOVE_PIXELS", 0)
    assert main([*arguments, "-o", str(tmp_path / "lazy.tif")]) == 0
    with tifffile.TiffFile(tmp_path / "lazy.tif") as tif:
        assert tif.pages[0].is_tiled
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "lazy.tif"), tifffile.imread(tmp_path / "eager.tif"))
    assert read_image(tmp_path / "lazy.tif").pixel_size == PixelSize(0.5, 0.5)


def test_a_lazy_image_without_pyramid_takes_its_range_from_a_strided_subsample(monkeypatch):
    from napari_i2i.core import layer_data

    monkeypatch.setattr(layer_data, "RANGE_SAMPLES", 1000)
    data = np.random.default_rng(7).gamma(2.0, 100.0, (2, 200, 150)).astype(np.float32)
    counting = CountingArray(da.from_array(data, chunks=(1, 50, 50)))
    plan = layer_data.layout(ImageData(counting), 1)
    step = int(np.ceil(np.sqrt(data.size / 1000)))  # 8: 2 × 25 × 19 samples
    assert plan.intensity_range == tuple(np.percentile(data[:, ::step, ::step], (0.1, 99.9)))
    assert counting.reads == [data[:, ::step, ::step].size]


def test_spilled_activations_round_trip_and_overwrite_while_mapped(tmp_path):
    spilled = tiling.SpilledActivations(tmp_path)
    first, second = torch.randn(1, 4, 9, 7, dtype=torch.bfloat16), torch.randn(1, 2, 5, 5)
    spilled[0] = first
    mapped = spilled[0]  # a stage's input, still mapped while its output is written over it
    spilled[0] = second
    assert torch.equal(mapped, first) and mapped.dtype == torch.bfloat16
    assert torch.equal(spilled[0], second)
    spilled.close()
    assert not spilled.folder.exists()
