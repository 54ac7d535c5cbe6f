"""`napari-i2i demo`: the sample, the bundled stain model and the widget, in a real viewer."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from napari_i2i.core import bundled_models
from napari_i2i.frontends import demo
from napari_i2i.frontends.cli import main


@pytest.fixture
def demo_viewer(monkeypatch, make_napari_viewer):
    """The demo opens its viewer through the fixture; returns the layers it adds."""
    added = []

    def new_viewer():
        viewer = make_napari_viewer(show=True)
        viewer.layers.events.inserted.connect(lambda event: added.append(event.value))
        return viewer

    monkeypatch.setattr(demo, "new_viewer", new_viewer)
    return added


def test_demo_screenshot_translates_the_sample_and_writes_the_window(demo_viewer, tmp_path, capsys):
    png = tmp_path / "shots" / "demo.png"
    assert main(["demo", "--screenshot", str(png)]) == 0

    names = [layer.name for layer in demo_viewer]
    assert names == ["IHC", "H&E-like reference", "IHC [a2b, style of H&E-like reference]"]
    result = demo_viewer[-1]
    assert result.rgb and result.data.shape == (256, 256, 3) and result.data.std() > 1
    recorded = result.metadata["napari_i2i"]
    assert recorded["model"].endswith("stain_munit.safetensors")
    assert (recorded["style_mode"], recorded["references"]) == ("reference", ["H&E-like reference"])

    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 500  # the window, not only the canvas
    assert pixels.std() > 20
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 1000  # images on the canvas, not a blank or flat window
    out = capsys.readouterr().out
    assert f"wrote {png}" in out and "IHC [a2b, style of H&E-like reference]" in out


def test_demo_without_the_bundled_model_is_one_line_and_status_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bundled_models, "BUNDLED_DIR", tmp_path)
    monkeypatch.setattr(demo, "new_viewer", lambda: pytest.fail("no window without a model"))
    assert main(["demo", "--screenshot", str(tmp_path / "x.png")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("napari-i2i: error: no bundled model 'stain_munit'")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="displays are an X11/Wayland matter")
def test_demo_without_a_display_is_one_line_and_status_2(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run(
        [sys.executable, "-m", "napari_i2i", "demo", "--screenshot", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("napari-i2i: error: no display") and "xvfb-run" in line
