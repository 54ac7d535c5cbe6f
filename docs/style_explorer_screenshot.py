"""Make docs/style_explorer.png: the style explorer on the bundled stain model (MUNIT), one slider moved.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/style_explorer_screenshot.py docs/style_explorer.png

The Translate widget is set up as `napari-i2i demo` sets it (the IHC sample tile and the
bundled model), with one random style; *Explore styles…* docks the explorer, the first
slider is moved and the window is saved once the preview has caught up.
"""

import sys
import time
from pathlib import Path

import napari
from PIL import Image as PILImage

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.frontends.demo import WINDOW_SIZE, screenshot, set_up

TIMEOUT_S = 300.0


def wait(condition) -> None:
    app, started = napari.qt.get_qapp(), time.monotonic()
    while not condition():
        if time.monotonic() - started > TIMEOUT_S:
            raise TimeoutError("the style explorer did not finish in time")
        app.processEvents()
        time.sleep(0.05)


def main(out: Path) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW_SIZE)
    widget, _, reference = set_up(viewer)
    viewer.layers.remove(reference)
    widget.style_mode.value = StyleMode.RANDOM
    widget.explore_styles()
    explorer = widget.explorer
    wait(lambda: explorer.sliders and explorer.preview_layer is not None and not explorer.preview_busy)
    explorer.sliders[0].value = 2.0
    wait(lambda: not explorer.preview_busy)
    status = explorer.status.value
    screenshot(viewer, out)
    viewer.close()
    # 256 colours keep the PNG small enough for the docs (well under 300 kB)
    PILImage.open(out).quantize(256).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1000} kB): {status}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
