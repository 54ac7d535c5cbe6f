"""`napari-i2i translate` end to end, on real files."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_i2i.frontends.cli import main


@pytest.fixture
def images(tmp_path, rng):
    rgb = tmp_path / "cells.png"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(rgb)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, rng.integers(0, 4000, (2, 40, 36), dtype=np.uint16))
    reference = tmp_path / "ref.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(reference)
    return rgb, stack, reference


def test_translate_files_to_a_folder(munit_file, images, tmp_path, capsys):
    rgb, stack, _ = images
    out = tmp_path / "out"
    code = main(["translate", str(munit_file), str(rgb), str(stack), "-o", str(out),
                 "--samples", "2", "--seed", "3", "--quiet", "--tile", "64"])
    assert code == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["cells_a2b_0.png", "cells_a2b_1.png", "stack_a2b.tif"]
    tif = tifffile.imread(out / "stack_a2b.tif")
    assert tif.shape == (2, 2, 40, 36, 3) and tif.dtype == np.uint16
    assert np.asarray(Image.open(out / "cells_a2b_0.png")).shape == (50, 70, 3)
    assert "untrained" in capsys.readouterr().err


def test_reference_and_seed_determinism(munit_file, images, tmp_path):
    rgb, _, reference = images
    first, second = tmp_path / "1.tif", tmp_path / "2.tif"
    for out in (first, second):
        assert main(["translate", str(munit_file), str(rgb), "-o", str(out), "--quiet",
                     "--reference", str(reference), "--direction", "b2a"]) == 0
    np.testing.assert_array_equal(tifffile.imread(first), tifffile.imread(second))


def test_match_picks_among_references(munit_file, images, tmp_path):
    """--match gives the style of one reference (the closest), not the mean of all."""
    rgb, _, reference = images
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(flat)
    outputs = {}
    for name, args in {"match": ["--reference", str(reference), str(flat), "--match"],
                       "ref": ["--reference", str(reference)], "flat": ["--reference", str(flat)],
                       "mean": ["--reference", str(reference), str(flat)]}.items():
        outputs[name] = tmp_path / f"{name}.tif"
        assert main(["translate", str(munit_file), str(rgb), "-o", str(outputs[name]), "--quiet", *args]) == 0
    matched, mean = tifffile.imread(outputs["match"]), tifffile.imread(outputs["mean"])
    assert any(np.array_equal(matched, tifffile.imread(outputs[one])) for one in ("ref", "flat"))
    assert not np.array_equal(matched, mean)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{model}", "{missing}", "-o", "{out}/x.png"], "no such file"),
        (["{rgb}", "{rgb}", "-o", "{out}/x.png"], "not a readable safetensors"),
        (["{model}", "{rgb}", "-o", "{out}/x.png", "--device", "cuda"], "no CUDA GPU"),
        (["{model}", "{rgb}", "-o", "{out}/x.png", "--device", "tpu"], "unknown device"),
        (["{model}", "{rgb}", "-o", "{out}/x.png", "--direction", "b2c"], "not 'b2c'"),
        (["{model}", "{rgb}", "{rgb}", "-o", "{out}/x.png"], "must be a folder"),
        (["{model}", "{rgb}", "-o", "{out}/x.bmp"], "unsupported output type"),
        (["{model}", "{rgb}", "-o", "{out}/x.png", "--reference", "{rgb}", "--samples", "3"], "--samples"),
        (["{model}", "{rgb}", "-o", "{out}/x.png", "--match"], "--match chooses among style references"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(munit_file, images, tmp_path, capsys, args, message):
    rgb, _, _ = images
    values = {"model": munit_file, "rgb": rgb, "missing": tmp_path / "nope.png", "out": tmp_path}
    assert main(["translate", *[a.format(**values) for a in args]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("napari-i2i: error:") and message in err[-1]


def test_console_script_runs(munit_file, images, tmp_path):
    rgb, _, _ = images
    out = tmp_path / "cli.png"
    done = subprocess.run(
        [sys.executable, "-m", "napari_i2i", "translate", str(munit_file), str(rgb), "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.exists() and "translating" in done.stderr  # the progress bar


def test_convert_to_fp16_with_a_name(munit_file, tmp_path, capsys):
    from napari_i2i.core.model_file import load_model, read_model_info

    out = tmp_path / "half.safetensors"
    assert main(["convert", str(munit_file), str(out), "--dtype", "float16",
                 "--display-name", "Demo", "--description", "what it does"]) == 0
    assert f"{out}: munit model, float16 weights" in capsys.readouterr().out
    info = read_model_info(out)
    assert (info.display_name, info.description) == ("Demo", "what it does")
    assert info.provenance["note"] == "untrained test weights" and not info.trained
    assert out.stat().st_size < 0.6 * munit_file.stat().st_size
    assert next(load_model(out).model.parameters()).dtype.is_floating_point

    assert main(["convert", str(munit_file), str(tmp_path / "model.pt")]) == 2
    assert "write model files as .safetensors" in capsys.readouterr().err
