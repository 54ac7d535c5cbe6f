"""Axis names and types, channel names and pixel size go from OME-TIFF / OME-Zarr inputs to outputs."""

import numpy as np
import pytest
import tifffile
import zarr
from conftest import build_munit

from napari_i2i.core.image_io import read_image
from napari_i2i.core.image_metadata import Axis, ImageMetadata, ome_tiff_axes, translated_metadata
from napari_i2i.core.layer_data import PixelSize
from napari_i2i.core.model_file import save_model
from napari_i2i.frontends.cli import main

NAMES = ["DAPI", "GFP"]


def model_file(tmp_path, channels):
    engine, model = build_munit(channels_a=channels, channels_b=channels)
    path = tmp_path / f"munit_{channels}.safetensors"
    save_model(path, engine, model, provenance={"note": "untrained test weights"})
    return path


def translate(model, source, out, *extra):
    assert main(["translate", str(model), str(source), "-o", str(out), "--quiet", "--tile", "64",
                 "--precision", "fp32", "--compile", "off", *extra]) == 0


def ome_tiff(path, data, axes, **metadata):
    tifffile.imwrite(path, data, ome=True, photometric="rgb" if axes.endswith("S") else "minisblack",
                     metadata={"axes": axes, "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5} | metadata)
    return path


def multiscales(store):
    return zarr.open_group(store, mode="r").attrs["ome"]


def channel(label):
    return {"label": label, "color": "FFFFFF", "window": {"min": 0, "max": 255, "start": 0, "end": 255}}


def ome_tiff_labels(path):
    with tifffile.TiffFile(path) as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        channels = pixels.get("Channel", [])
        return tif.series[0].axes, [c.get("Name") for c in (channels if isinstance(channels, list) else [channels])]


def test_an_ome_tiff_gives_its_axes_and_channel_names(tmp_path):
    source = ome_tiff(tmp_path / "in.ome.tif", np.zeros((2, 2, 30, 40), np.uint16), "TCYX",
                      Channel={"Name": NAMES})
    image = read_image(source)
    assert image.image_metadata == ImageMetadata(
        (Axis("t", "time"), Axis("c", "channel"), Axis("y", "space"), Axis("x", "space")), tuple(NAMES))
    rgb = read_image(ome_tiff(tmp_path / "rgb.ome.tif", np.zeros((30, 40, 3), np.uint8), "YXS"))
    assert [axis.name for axis in rgb.image_metadata.axes] == ["y", "x", "c"]  # colours last, as read
    assert rgb.image_metadata.channel_names == ()  # one OME Channel of 3 samples names no colour


def test_channel_names_are_dropped_unless_they_name_every_channel(tmp_path):
    # ome-zarr-py writes the store: its axes and omero labels are read as OME-NGFF gives them
    from ome_zarr.writer import write_image

    store = tmp_path / "in.ome.zarr"
    write_image(np.zeros((2, 3, 32, 32), np.uint8), zarr.open_group(store, mode="w"), axes="czyx",
                scale_factors=[], omero={"channels": [channel("only one")]})
    assert read_image(store).image_metadata.channel_names == ()
    write_image(np.zeros((2, 3, 32, 32), np.uint8), zarr.open_group(store, mode="w"), axes="czyx",
                scale_factors=[], omero={"channels": [channel(name) for name in NAMES]})
    metadata = read_image(store).image_metadata
    assert [(axis.name, axis.type) for axis in metadata.axes] == [  # channels moved after Z, as read
        ("z", "space"), ("c", "channel"), ("y", "space"), ("x", "space")]
    assert metadata.channel_names == tuple(NAMES)


def test_ome_tiff_channels_reach_ome_zarr_and_ome_tiff_outputs(tmp_path):
    """An ImageJ-style Z-before-C stack: the OME-TIFF output keeps its order, the OME-Zarr output
    puts the channels before Z (OME-NGFF orders axes time, channel, space) and validates."""
    from ome_zarr_models.v05.image import Image

    model = model_file(tmp_path, 2)
    data = np.random.default_rng(0).integers(0, 4000, (3, 2, 40, 36), dtype=np.uint16)
    source = ome_tiff(tmp_path / "in.ome.tif", data, "ZCYX", Channel={"Name": NAMES})
    translate(model, source, tmp_path / "out.ome.zarr")
    ome = multiscales(tmp_path / "out.ome.zarr")
    axes = ome["multiscales"][0]["axes"]
    assert [(axis["name"], axis.get("type")) for axis in axes] == [
        ("c", "channel"), ("z", "space"), ("y", "space"), ("x", "space")]
    assert axes[-1]["unit"] == "micrometer"
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 0.5, 0.25]
    assert [channel["label"] for channel in ome["omero"]["channels"]] == NAMES
    Image.from_zarr(zarr.open_group(tmp_path / "out.ome.zarr", mode="r"))
    translate(model, source, tmp_path / "out.ome.tif")
    assert ome_tiff_labels(tmp_path / "out.ome.tif") == ("ZCYX", NAMES)
    back = read_image(tmp_path / "out.ome.tif")
    assert back.pixel_size == PixelSize(0.5, 0.25)
    assert [axis.name for axis in back.image_metadata.axes] == ["z", "c", "y", "x"]
    stored = zarr.open_array(tmp_path / "out.ome.zarr" / "0", mode="r")
    np.testing.assert_array_equal(stored[:], np.moveaxis(back.data, 1, 0))
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "out.ome.zarr").data), back.data)  # as read


def test_ome_zarr_channels_translated_plane_by_plane_keep_their_names(tmp_path):
    """A 1-channel model translates each channel on its own: the channel axis stays, with its labels."""
    from napari_i2i.core.stores import write_ome_zarr

    model = model_file(tmp_path, 1)
    source = tmp_path / "in.ome.zarr"
    metadata = ImageMetadata((Axis("t", "time"), Axis("c", "channel"), Axis("y", "space"), Axis("x", "space")),
                             ("DAPI", "GFP", "RFP"))
    write_ome_zarr(source, np.random.default_rng(1).integers(0, 255, (2, 3, 40, 36), dtype=np.uint8), False,
                   PixelSize(0.3, 0.3, "nanometer"), metadata)
    translate(model, source, tmp_path / "out.ome.tif")
    assert ome_tiff_labels(tmp_path / "out.ome.tif") == ("TCYX", ["DAPI", "GFP", "RFP"])
    assert read_image(tmp_path / "out.ome.tif").pixel_size == PixelSize(0.3, 0.3, "nanometer")
    translate(model, source, tmp_path / "out.ome.zarr", "--samples", "2")
    back = read_image(tmp_path / "out.ome.zarr")
    time, *others = metadata.axes  # an OME-Zarr puts time first, the samples after it
    assert back.image_metadata == ImageMetadata((time, Axis("sample"), *others), metadata.channel_names)


def test_an_rgb_result_keeps_the_names_of_three_channels_and_labels_new_colours(tmp_path, munit_file):
    source = tmp_path / "in.ome.tif"
    ome_tiff(source, np.random.default_rng(2).integers(0, 255, (3, 40, 36), dtype=np.uint8), "CYX",
             Channel={"Name": ["red", "green", "blue"]})
    translate(munit_file, source, tmp_path / "out.ome.zarr")  # 3 → 3 channels: the same colours
    ome = multiscales(tmp_path / "out.ome.zarr")
    assert [axis["name"] for axis in ome["multiscales"][0]["axes"]] == ["c", "y", "x"]
    assert [channel["label"] for channel in ome["omero"]["channels"]] == ["red", "green", "blue"]
    assert zarr.open_array(tmp_path / "out.ome.zarr" / "0", mode="r").metadata.dimension_names == ("c", "y", "x")
    from ome_zarr_models.v05.image import Image

    Image.from_zarr(zarr.open_group(tmp_path / "out.ome.zarr", mode="r"))  # valid OME-NGFF 0.5
    gray = ome_tiff(tmp_path / "gray.ome.tif", np.zeros((40, 36), np.uint8), "YX")
    translate(munit_file, gray, tmp_path / "gray.ome.zarr")  # gray → RGB: new colours
    assert [c["label"] for c in multiscales(tmp_path / "gray.ome.zarr")["omero"]["channels"]] == ["R", "G", "B"]


def test_older_ome_zarr_axes_without_types_get_them_from_their_names():
    from napari_i2i.core.image_metadata import zarr_metadata

    metadata = zarr_metadata({"axes": ["t", "c", "y", "x"]}, {"channels": [{"label": "a"}, {"label": "b"}]},
                             (1, 2, 5, 5))  # OME-NGFF 0.3: names only
    assert [axis.type for axis in metadata.axes] == ["time", "channel", "space", "space"]
    assert metadata.channel_names == ("a", "b")
    assert zarr_metadata({"axes": ["y", "x"]}, None, (2, 5, 5)).axes[0] == Axis("dim_0")  # axes of another count


def test_a_changed_channel_count_names_no_channels():
    source = ImageMetadata((Axis("c", "channel"), Axis("y", "space"), Axis("x", "space")), ("a", "b"))
    # a 2 → 4 channel model: the output's channel axis comes from the source's, with another length
    result = translated_metadata(source, [0, 1, 2], False, False, (4, 10, 10))
    assert result == ImageMetadata(source.axes)
    assert translated_metadata(None, [0, 1, 2], False, False, (4, 10, 10)) is None


@pytest.mark.parametrize(("axes", "rgb", "letters"), [
    ([("t", "time"), ("z", "space")], False, "TZYX"),
    ([("sample", None), ("c", "channel")], False, "QCYX"),
    ([("dim_0", None), ("dim_1", None)], True, "QAYXS"),
])
def test_ome_tiff_letters(axes, rgb, letters):
    spatial = [Axis("y", "space"), Axis("x", "space")] + ([Axis("c", "channel")] if rgb else [])
    metadata = ImageMetadata((*(Axis(*axis) for axis in axes), *spatial))
    assert ome_tiff_axes(metadata, len(metadata.axes), rgb) == letters


def test_ome_tiff_axes_without_metadata_are_distinct_letters():
    assert ome_tiff_axes(None, 4, False) == "QAYX"  # tifffile refuses two Q axes
    with pytest.raises(ValueError, match="at most 6 axes before Y/X"):
        ome_tiff_axes(None, 9, False)


def test_many_files_outputs_keep_channel_names(tmp_path):
    """The worker of ``translate`` on many files writes stores (as it goes) and OME-TIFFs (whole) alike."""
    from napari_i2i.core.translate import TranslateOptions
    from napari_i2i.frontends.cli.batch_worker import OK, BatchJob, translate_file

    job = BatchJob(model_file(tmp_path, 2), "cpu", TranslateOptions("a2b", precision="fp32", compile="off"), (),
                   2**28, None)
    source = ome_tiff(tmp_path / "a.ome.tif", np.random.default_rng(3).integers(0, 4000, (2, 36, 36), np.uint16),
                      "CYX", Channel={"Name": NAMES})
    for out in (tmp_path / "a.ome.zarr", tmp_path / "a_out.ome.tif"):
        assert translate_file(job, source, out).status == OK
        assert read_image(out).image_metadata.channel_names == tuple(NAMES)


def test_napari_opens_named_channels_as_one_layer_each(make_napari_viewer, tmp_path):
    from napari_i2i.core.stores import write_ome_zarr
    from napari_i2i.frontends.reader import read_zarr

    path = tmp_path / "result.ome.zarr"
    metadata = ImageMetadata((Axis("t", "time"), Axis("c", "channel"), Axis("y", "space"), Axis("x", "space")),
                             tuple(NAMES))
    write_ome_zarr(path, np.zeros((3, 2, 300, 280), np.uint16), False, PixelSize(0.5, 0.25), metadata)
    ((_, attributes, _),) = read_zarr(str(path))
    assert attributes["channel_axis"] == 1 and attributes["name"] == NAMES
    assert attributes["axis_labels"] == [("t", "y", "x")] * 2
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-i2i")
    assert [layer.name for layer in layers] == NAMES
    assert all(layer.multiscale and layer.axis_labels == ("t", "y", "x") for layer in layers)
    np.testing.assert_allclose(layers[0].scale, (1.0, 0.5, 0.25))
    assert [level.shape for level in layers[1].data] == [(3, 300, 280), (3, 150, 140)]


def test_png_outputs_of_a_lazy_input_are_written_plane_by_plane_from_a_store(munit_file, tmp_path, monkeypatch):
    from PIL import Image

    from napari_i2i.core import image_io

    source = tmp_path / "in.tif"
    tifffile.imwrite(source, np.random.default_rng(4).integers(0, 255, (2, 40, 36), dtype=np.uint8))
    translate(munit_file, source, tmp_path / "eager.png")
    monkeypatch.setattr(image_io, "LAZY_ABOVE_PIXELS", 0)

    def whole(*args, **kwargs):
        raise AssertionError("written whole")

    monkeypatch.setattr(image_io, "_save", whole)
    translate(munit_file, source, tmp_path / "lazy.png")
    for plane in (0, 1):
        lazy, eager = (np.asarray(Image.open(tmp_path / f"{name}_{plane}.png")) for name in ("lazy", "eager"))
        assert lazy.shape == (40, 36, 3)
        np.testing.assert_array_equal(lazy, eager)
    assert sorted(path.name for path in tmp_path.glob("lazy*")) == ["lazy_0.png", "lazy_1.png"]  # no partial files


def test_matched_styles_write_their_output_as_made_equal_to_the_whole_path(munit_file, tmp_path):
    rng = np.random.default_rng(5)
    source, *references = (tmp_path / f"{name}.tif" for name in ("in", "ref1", "ref2"))
    for path in (source, *references):
        tifffile.imwrite(path, rng.integers(0, 255, (40, 36, 3), dtype=np.uint8), photometric="rgb")
    matched = ["--reference", *map(str, references), "--match"]
    translate(munit_file, source, tmp_path / "whole.tif", *matched)
    translate(munit_file, source, tmp_path / "made.zarr", *matched)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(read_image(tmp_path / "made.zarr").data), 0, -1),
                                  tifffile.imread(tmp_path / "whole.tif"))


def test_an_rgb_z_stack_is_stored_colours_first_and_opens_as_rgb(munit_file, tmp_path):
    from napari_i2i.frontends.reader import read_zarr

    source = ome_tiff(tmp_path / "in.ome.tif", np.random.default_rng(6).integers(0, 255, (2, 40, 36, 3), np.uint8),
                      "ZYXS")
    translate(munit_file, source, tmp_path / "out.ome.zarr")
    translate(munit_file, source, tmp_path / "out.tif")
    ome = multiscales(tmp_path / "out.ome.zarr")
    assert [axis["name"] for axis in ome["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]
    ((levels, attributes, _),) = read_zarr(str(tmp_path / "out.ome.zarr"))
    assert attributes["rgb"] and attributes["axis_labels"] == ("z", "y", "x")
    np.testing.assert_array_equal(np.asarray(levels), tifffile.imread(tmp_path / "out.tif"))


def test_an_ome_ngff_channel_axis_before_z_holds_the_model_channels(tmp_path):
    """OME-NGFF puts C before Z; the image rules want the channels just before Y/X: the input is
    read as Z, C, Y, X and the result stored as C, Z, Y, X again, equal to the same stack's TIFF."""
    from ome_zarr.writer import write_image

    model = model_file(tmp_path, 2)
    data = np.random.default_rng(7).integers(0, 255, (2, 3, 40, 36), dtype=np.uint8)  # c, z, y, x
    store = tmp_path / "in.ome.zarr"
    write_image(data, zarr.open_group(store, mode="w"), axes="czyx", scale_factors=[],
                omero={"channels": [channel(name) for name in NAMES]})
    image = read_image(store)
    assert image.data.shape == (3, 2, 40, 36) and [axis.name for axis in image.image_metadata.axes] == [
        "z", "c", "y", "x"]
    translate(model, store, tmp_path / "out.ome.zarr")
    stack = ome_tiff(tmp_path / "in.ome.tif", np.moveaxis(data, 0, 1), "ZCYX", Channel={"Name": NAMES})
    translate(model, stack, tmp_path / "out.tif")
    result = read_image(tmp_path / "out.ome.zarr")  # read back as z, c, y, x
    assert [c["label"] for c in multiscales(tmp_path / "out.ome.zarr")["omero"]["channels"]] == NAMES
    np.testing.assert_array_equal(np.asarray(result.data), tifffile.imread(tmp_path / "out.tif"))


def test_z_spacing_of_an_ome_tiff_reaches_ome_tiff_and_ome_zarr_outputs_and_napari(munit_file, tmp_path):
    from napari_i2i.frontends.reader import read_zarr

    stack = np.random.default_rng(8).integers(0, 255, (2, 40, 36), dtype=np.uint8)  # 2 planes: no channels
    source = ome_tiff(tmp_path / "in.ome.tif", stack, "ZYX", PhysicalSizeZ=2.0, PhysicalSizeZUnit="nm",
                      PhysicalSizeXUnit="nm", PhysicalSizeYUnit="nm")
    assert read_image(source).image_metadata.axes[0] == Axis("z", "space", 2.0, "nanometer")
    translate(munit_file, source, tmp_path / "out.ome.zarr")
    translate(munit_file, source, tmp_path / "out.ome.tif")
    ome = multiscales(tmp_path / "out.ome.zarr")["multiscales"][0]
    assert [axis["name"] for axis in ome["axes"]] == ["c", "z", "y", "x"]
    assert ome["axes"][1] == {"name": "z", "type": "space", "unit": "nanometer"}
    assert ome["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 2.0, 0.5, 0.25]
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert (pixels["PhysicalSizeZ"], pixels["PhysicalSizeZUnit"]) == (2.0, "nm")
    assert read_image(tmp_path / "out.ome.tif").image_metadata.axes[0] == Axis("z", "space", 2.0, "nanometer")
    ((_, attributes, _),) = read_zarr(str(tmp_path / "out.ome.zarr"))
    assert attributes["rgb"] and attributes["scale"] == (2.0, 0.5, 0.25)
    assert attributes["units"] == ("nanometer",) * 3


def test_z_spacing_of_an_ome_zarr_input_is_kept(tmp_path):
    model = model_file(tmp_path, 1)
    store = tmp_path / "in.ome.zarr"
    group = zarr.open_group(store, mode="w")
    group.create_array("0", data=np.random.default_rng(9).integers(0, 255, (2, 40, 36), dtype=np.uint8))
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": name, "type": "space", "unit": "micrometer"} for name in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [3.0, 0.5, 0.5]}]}]}]}
    assert read_image(store).image_metadata.axes[0] == Axis("z", "space", 3.0, "micrometer")
    translate(model, store, tmp_path / "out.ome.zarr")
    translate(model, store, tmp_path / "out.ome.tif")
    ome = multiscales(tmp_path / "out.ome.zarr")["multiscales"][0]
    assert ome["datasets"][0]["coordinateTransformations"][0]["scale"] == [3.0, 0.5, 0.5]
    assert ome["axes"][0] == {"name": "z", "type": "space", "unit": "micrometer"}
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert (pixels["PhysicalSizeZ"], pixels["PhysicalSizeZUnit"]) == (3.0, "µm")
    assert Axis("z", "space").scale is None  # no spacing unless a file or layer gives one


def test_a_layers_axes_and_types_in_ome_ngff_order():
    from napari_i2i.core.image_metadata import layer_metadata
    from napari_i2i.core.stores import ordered_types

    default = layer_metadata(("-3", "-2", "-1"), (1.0, 1.0, 1.0), ("pixel",) * 3, rgb=True)
    assert default.axes == (Axis("dim_0"), Axis("y", "space"), Axis("x", "space"), Axis("c", "channel"))
    named = layer_metadata(("t", "z", "y", "x"), (5.0, 2.0, 0.5, 0.5), ("second", "micrometer", "pixel", "pixel"),
                           rgb=False)
    assert named.axes[:2] == (Axis("t", "time", 5.0, "second"), Axis("z", "space", 2.0, "micrometer"))
    axes = [Axis("sample"), Axis("t", "time"), Axis("z", "space", 2.0), Axis("c", "channel"), Axis("y", "space"),
            Axis("x", "space")]
    assert ordered_types(axes) == [Axis("sample"), Axis("t"), Axis("z", None, 2.0), *axes[3:]]
