"""Make docs/screenshot.png: the Translate widget after a run on skimage's astronaut.

The model is a small MUNIT with untrained weights (so the outputs are noise,
and the README says so); the point is to show the widget and its layers.
Run with a display, e.g. ``xvfb-run -a python docs/make_screenshot.py``.
"""

import tempfile
import time
from pathlib import Path

import torch  # before Qt, as everywhere in napari-i2i

import napari
from PIL import Image
from skimage import data

from engines.munit import MunitEngine
from napari_i2i.engine_api import StyleMode
from napari_i2i.model_file import save_model

OUTPUT = Path(__file__).with_name("screenshot.png")
MAX_BYTES = 300_000


def untrained_model(folder: Path) -> Path:
    torch.manual_seed(0)
    engine = MunitEngine()
    path = folder / "munit-small-untrained.safetensors"
    save_model(path, engine, engine.build(engine.config("small")))
    return path


def wait_for_run(widget, timeout_s: float = 300) -> None:
    app = napari.qt.get_qapp()
    deadline = time.monotonic() + timeout_s
    while not widget.run_button.enabled:
        if time.monotonic() > deadline:
            raise TimeoutError("the translation did not finish")
        app.processEvents()
        time.sleep(0.05)
    app.processEvents()


def save_small_png(array, path: Path) -> None:
    """Save with a 256-colour palette, shrinking until the PNG is small enough for a README."""
    image = Image.fromarray(array).convert("RGB")
    while True:
        image.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
        if path.stat().st_size <= MAX_BYTES:
            return
        image = image.resize((image.width * 4 // 5, image.height * 4 // 5), Image.LANCZOS)


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 860)
    astronaut = viewer.add_image(data.astronaut(), name="astronaut")
    _, widget = viewer.window.add_plugin_dock_widget("napari-i2i", "Translate")
    with tempfile.TemporaryDirectory() as folder:
        widget.model_file.value = untrained_model(Path(folder))
        widget.sources.value = [astronaut]
        widget.style_mode.value = StyleMode.RANDOM
        widget.n_samples.value = 2
        widget.run()
        wait_for_run(widget)
    viewer.canvas.grid.enabled = True  # source and translation side by side
    viewer.reset_view()
    napari.qt.get_qapp().processEvents()
    save_small_png(viewer.screenshot(canvas_only=False), OUTPUT)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size // 1000} kB)")
    viewer.close()


if __name__ == "__main__":
    main()
