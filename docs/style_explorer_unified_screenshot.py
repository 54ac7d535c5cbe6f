"""Make docs/images/style_explorer.png: the style explorer on a unified model, two components moved.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/style_explorer_unified_screenshot.py \\
        MODEL.safetensors DOMAIN docs/images/style_explorer.png

The IHC sample tile is the source; the Translate widget is set to the model, the target domain
DOMAIN and one random style; *Explore styles…* docks the explorer, components 0 and 1 are moved
and the window is saved once the preview (over the source, the whole tile in view) has caught up.
"""

import sys
import time
from pathlib import Path

import napari
from PIL import Image as PILImage
from style_explorer_screenshot import wait  # the script beside this one (its folder is on sys.path)

from napari_i2i.contract.engine_api import StyleMode
from napari_i2i.frontends.demo import PLUGIN, WINDOW_SIZE


def main(model: Path, domain: str, out: Path) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW_SIZE)
    [source] = viewer.open_sample(PLUGIN, "ihc")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Translate")
    widget.model_file.value = model
    widget.sources.value = [source]
    widget.direction.value = f"to_{domain}"
    widget.style_mode.value = StyleMode.RANDOM
    widget.explore_styles()
    explorer = widget.explorer
    wait(lambda: explorer.sliders and explorer.preview_layer is not None and not explorer.preview_busy)
    explorer.sliders[0].value = 2.0
    explorer.sliders[1].value = -1.5
    wait(lambda: not explorer.preview_busy)
    app = napari.qt.get_qapp()
    for _ in range(10):  # let the canvas and the docks lay out and draw
        app.processEvents()
        time.sleep(0.05)
    status = explorer.status.value
    out.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out)
    viewer.close()
    # 256 colours keep the PNG small enough for the docs (well under 300 kB)
    PILImage.open(out).quantize(256).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1000} kB): {status}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
