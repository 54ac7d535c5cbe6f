"""`napari-i2i translate` never loses data and never shows a traceback (issue 12).

Every case checks that the input files are byte for byte what they were (SHA-256).
"""

import hashlib
import subprocess
import sys
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import tifffile
from PIL import Image

import napari_i2i.core.image_io as image_io
import napari_i2i.core.translate as core_translate
import napari_i2i.frontends.cli.progress as cli_progress
import napari_i2i.frontends.cli.translate as cli_translate
from napari_i2i.core.job_estimate import describe_duration
from napari_i2i.frontends.cli import main


def digests(folder):
    """SHA-256 of every file under *folder*, by path."""
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.fixture
def inputs(tmp_path, rng, munit_file):
    """A folder of inputs (and the model): their hashes are checked after every test that uses it."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(folder / "cells.png")
    tifffile.imwrite(folder / "gray16.tif", rng.integers(0, 4000, (20, 24), dtype=np.uint16))
    model = folder / "model.safetensors"
    model.write_bytes(munit_file.read_bytes())
    before = digests(folder)
    yield folder
    assert digests(folder) == before, "an input file changed"


@contextmanager
def no_warnings():
    """Fails if a warning (e.g. Pillow's DecompressionBombWarning) is raised inside."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    assert not seen, [str(warning.message) for warning in seen]


def translate(folder, *args):
    return main(["translate", str(folder / "model.safetensors"), *map(str, args), "--quiet"])


def one_error_line(capsys, message):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("napari-i2i: error:") and message in err[-1], err
    assert not any("Traceback" in line for line in err)
    return err[-1]


# --- 1. never over an input; existing outputs only with --overwrite; nothing half-written -------------


def test_output_onto_its_input_is_refused(inputs, capsys):
    cells = inputs / "cells.png"
    assert translate(inputs, cells, "-o", cells) == 2
    one_error_line(capsys, "is an input")
    assert translate(inputs, cells, "-o", inputs / "." / "cells.png", "--overwrite") == 2  # same after resolving
    one_error_line(capsys, "is an input")


def test_folder_output_landing_on_an_input_is_refused(inputs, tmp_path, capsys):
    named_like_an_output = tmp_path / "cells_a2b.png"
    named_like_an_output.write_bytes((inputs / "cells.png").read_bytes())
    before = digests(tmp_path)
    assert translate(inputs, inputs / "cells.png", named_like_an_output, "-o", tmp_path, "--overwrite") == 2
    one_error_line(capsys, "cells_a2b.png: is an input")
    assert digests(tmp_path) == before


def test_output_onto_a_symlinked_input_is_refused(inputs, tmp_path, capsys):
    link = tmp_path / "link.png"
    link.symlink_to(inputs / "cells.png")
    assert translate(inputs, inputs / "cells.png", "-o", link, "--overwrite") == 2
    one_error_line(capsys, "is an input")


def test_an_existing_output_needs_overwrite(inputs, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    assert translate(inputs, inputs / "cells.png", "-o", out) == 2
    one_error_line(capsys, "exists; --overwrite replaces it")
    assert out.read_bytes() == b"keep me"
    assert translate(inputs, inputs / "cells.png", "-o", out, "--overwrite") == 0
    assert np.asarray(Image.open(out)).shape == (24, 20, 3)


def test_an_interrupted_run_leaves_no_file(inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    saved = []

    def interrupt_second(path, data, rgb):  # Ctrl-C while the second file is written
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        Image.fromarray(data).save(path, format="PNG")

    monkeypatch.setattr(image_io, "_save", interrupt_second)
    assert translate(inputs, inputs / "cells.png", "-o", out, "--samples", "2") == 130
    assert "interrupted" in capsys.readouterr().err
    assert saved and list(out.iterdir()) == []  # the first, complete file was never renamed into place


def test_a_run_stopped_while_translating_writes_nothing(inputs, tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(core_translate, "run_translation", stop)
    assert translate(inputs, inputs / "cells.png", "-o", tmp_path / "out" / "x.png") == 130
    assert not (tmp_path / "out").exists()


# --- 2. small images are translated ------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(1, 1), (2, 2), (1, 500), (3, 200)])
def test_small_images_are_translated(inputs, tmp_path, height, width, rng):
    small = tmp_path / f"small_{height}x{width}.png"
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(small)
    out = tmp_path / "out.png"
    assert translate(inputs, small, "-o", out) == 0
    assert np.asarray(Image.open(out)).shape == (height, width, 3)


def test_the_widget_translates_a_thin_layer(qtbot, make_napari_viewer, munit_file):
    """The widget shares the job: a 3×200 layer, a traceback before, becomes a 3×200 result."""
    from napari_i2i.frontends.translate_widget import TranslateWidget

    viewer = make_napari_viewer()
    widget = TranslateWidget(viewer)
    source = viewer.add_image(np.random.default_rng(0).random((3, 200), dtype=np.float32), name="strip")
    widget.model_file.value = munit_file
    widget.sources.value = [source]
    widget.device.value = "cpu"
    widget.run()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=60_000)
    assert viewer.layers[-1].data.shape == (3, 200, 3) and widget.status.value.startswith("done")


def test_a_tiny_reference_is_refused_naming_the_minimum(inputs, tmp_path, capsys):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tiny)
    assert translate(inputs, inputs / "cells.png", "-o", tmp_path / "o.png", "--reference", tiny) == 2
    one_error_line(capsys, "must be at least 16×16 pixels")
    assert not (tmp_path / "o.png").exists()


# --- 3. pixel limit, checked on the header; long jobs announced ---------------------------------------


def test_a_decompression_bomb_is_refused_from_its_header(inputs, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(bomb)  # 900 megapixels, ~100 kB on disk
    with no_warnings():
        assert translate(inputs, bomb, "-o", tmp_path / "out.png") == 2
    line = one_error_line(capsys, "30000×30000 is 900 megapixels, over the limit of 268 megapixels")
    assert "--max-pixels" in line


def test_max_pixels_sets_the_limit_for_inputs_and_references(inputs, tmp_path, capsys):
    cells = inputs / "cells.png"  # 24 × 20 = 480 pixels
    assert translate(inputs, cells, "-o", tmp_path / "a.png", "--max-pixels", "479") == 2
    one_error_line(capsys, "24×20 is 0.00048 megapixels, over the limit")
    assert translate(inputs, cells, "-o", tmp_path / "a.png", "--max-pixels", "480") == 0
    assert translate(inputs, cells, "-o", tmp_path / "b.png", "--max-pixels", "479",
                     "--reference", cells) == 2


def test_pillow_warns_nowhere_below_the_limit(tmp_path):
    big = tmp_path / "big.png"
    Image.new("1", (10000, 9000)).save(big)  # above Pillow's own warning threshold (89 megapixels)
    with no_warnings():
        assert image_io.image_header(big, image_io.DEFAULT_MAX_PIXELS).shape == (9000, 10000)


def test_a_long_job_is_announced_first(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(core_translate, "TIMED_ABOVE_PIXELS", 0)
    monkeypatch.setattr(core_translate, "LONG_JOB_SECONDS", 0.0)
    assert translate(inputs, inputs / "cells.png", "-o", tmp_path / "a.png") == 0
    err = capsys.readouterr().err
    assert "translating 0.00048 megapixels; this will take about 1 seconds on cpu" in err
    monkeypatch.setattr(core_translate, "LONG_JOB_SECONDS", 3600.0)
    assert translate(inputs, inputs / "cells.png", "-o", tmp_path / "b.png") == 0
    assert "this will take" not in capsys.readouterr().err


def test_durations_read_naturally():
    assert describe_duration(30) == "about 30 seconds"
    assert describe_duration(400) == "about 7 minutes"
    assert describe_duration(3 * 3600) == "about 3 hours"


# --- 4. output types checked before work; missing folders made ----------------------------------------


def test_an_output_type_that_cannot_hold_the_result_is_refused_before_work(inputs, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.setattr(core_translate, "run_translation", None)  # any work would crash
    assert translate(inputs, inputs / "gray16.tif", "-o", tmp_path / "out.png") == 2
    one_error_line(capsys, "RGB uint16 data does not fit .png; write a .tif")
    assert translate(inputs, inputs / "gray16.tif", "-o", tmp_path / "out.jpg") == 2
    one_error_line(capsys, "JPEG holds 8-bit images only")
    assert list(tmp_path.glob("out*")) == []


def test_a_missing_output_folder_is_made_and_said(inputs, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    assert translate(inputs, inputs / "cells.png", "-o", out / "x.png") == 0
    assert f"made the output folder {out}" in capsys.readouterr().err
    assert (out / "x.png").is_file()


def test_an_output_folder_under_a_file_is_refused(inputs, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert translate(inputs, inputs / "cells.png", "-o", tmp_path / "file" / "x.png") == 2
    one_error_line(capsys, "is a file")


# --- 5. output names -----------------------------------------------------------------------------------


def test_default_names_and_a_name_template(inputs, tmp_path):
    out = tmp_path / "out"
    assert translate(inputs, inputs / "cells.png", inputs / "gray16.tif", "-o", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells_a2b.png", "gray16_a2b.tif"]
    assert translate(inputs, inputs / "cells.png", inputs / "gray16.tif", "-o", out, "--format", "tif",
                     "--name-template", "{index}-{direction}-{stem}{suffix}") == 0
    assert {"1-a2b-cells.tif", "2-a2b-gray16.tif"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("template, message", [
    ("{stem}{colour}.png", "unknown field {colour}; fields are {stem}, {direction}, {suffix}, {index}"),
    ("{}.png", "unknown field {}"),
    ("{stem", "--name-template '{stem'"),
    ("{stem}.txt", "which is no image type"),
    ("sub/{stem}{suffix}", "not a file name"),
    ("same{suffix}", "two outputs would be written to"),
])
def test_bad_name_templates_are_one_line(inputs, tmp_path, capsys, template, message):
    assert translate(inputs, inputs / "cells.png", inputs / "gray16.tif", "-o", tmp_path / "out",
                     "--format", "tif", "--name-template", template) == 2
    one_error_line(capsys, message)
    assert not (tmp_path / "out").exists()


def test_two_inputs_with_one_name_are_refused_before_work(inputs, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "cells.png").write_bytes((inputs / "cells.png").read_bytes())
    assert translate(inputs, inputs / "cells.png", other / "cells.png", "-o", tmp_path / "out") == 2
    one_error_line(capsys, "two outputs would be written to")


def test_stack_planes_count_as_outputs(inputs, tmp_path, capsys):
    """--samples 2 into PNG writes NAME_0.png and NAME_1.png: those are checked too."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells_a2b_1.png").write_bytes(b"keep")
    assert translate(inputs, inputs / "cells.png", "-o", out, "--samples", "2") == 2
    one_error_line(capsys, "cells_a2b_1.png: exists")


# --- 6. progress without a terminal ------------------------------------------------------------------


def test_progress_is_lines_without_a_terminal(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_progress, "PROGRESS_LINE_SECONDS", 0.0)
    assert main(["translate", str(inputs / "model.safetensors"), str(inputs / "cells.png"),
                 "-o", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("translating:")]
    assert "\r" not in err and len(lines) >= 2
    assert lines[0].startswith("translating: ") and "%" in lines[0] and lines[-1].startswith("translating: done")


# --- 7. --help imports no torch ----------------------------------------------------------------------


def test_translate_help_imports_no_torch():
    code = ("import sys\nfrom napari_i2i.frontends.cli import main\ntry:\n    main(['translate', '--help'])\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "--name-template" in done.stdout and done.stdout.strip().endswith("False")


def test_moved_constants_keep_their_old_names():
    from napari_i2i.core import constants, device, tiling

    assert image_io.SUFFIXES is constants.SUFFIXES and tiling.DEFAULT_TILE == constants.DEFAULT_TILE
    assert device.DEVICE_CHOICES == constants.DEVICE_CHOICES
    assert cli_translate.CLI_WORDS.front_end == "the command line"


# --- cases that held before: one line, exit 2, inputs unchanged ----------------------------------------


@pytest.mark.parametrize("make, extra, message", [
    (lambda p: tifffile.imwrite(p / "nan.tif", np.full((8, 8), np.nan, np.float32)), [], "not finite"),
    (lambda p: (p / "empty.png").write_bytes(b""), [], "cannot read image"),
    (lambda p: (p / "folder.tif").mkdir(), [], "is a folder"),
    (lambda p: None, ["--reference", "{missing}"], "no such file"),
], ids=["nan", "empty file", "folder as input", "missing reference"])
def test_bad_inputs_that_already_were_one_line(inputs, tmp_path, capsys, make, extra, message):
    case = tmp_path / "case"
    case.mkdir()
    make(case)
    given = [path for path in case.iterdir()] or [inputs / "cells.png"]
    extra = [a.format(missing=tmp_path / "nope.png") for a in extra]
    assert translate(inputs, *given, "-o", tmp_path / "out", *extra) == 2
    one_error_line(capsys, message)
    assert not (tmp_path / "out").exists()


def test_a_5d_stack_is_translated_plane_by_plane(inputs, tmp_path, rng):
    stack = tmp_path / "stack5d.tif"
    tifffile.imwrite(stack, rng.integers(0, 4000, (2, 2, 3, 12, 10), dtype=np.uint16))  # t, z, C, Y, X
    out = tmp_path / "out.tif"
    assert translate(inputs, stack, "-o", out) == 0
    assert tifffile.imread(out).shape == (2, 2, 12, 10, 3)
