"""Make docs/train_widget.png: the Train widget after a whole StEP `small` run on two layers.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/train_widget_screenshot.py RUN_DIR docs/train_widget.png

The layers are napari-i2i's IHC sample tile and its H&E-like re-staining
(``napari_i2i.frontends.sample_data.he_like_restain``): a registered pair, pixel for
pixel. RUN_DIR must be new or empty; the run trains on the CPU.
"""

import sys
import time
from pathlib import Path

import napari
import numpy as np

from napari_i2i.frontends.demo import screenshot
from napari_i2i.frontends.sample_data import he_like_restain, ihc_tile


def main(run_dir: Path, out: Path) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    ((data, kwargs, _),) = ihc_tile()
    ihc = viewer.add_image(data, **kwargs)
    he = viewer.add_image(he_like_restain(np.asarray(data)), name="H&E-like (registered)", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-i2i", "Train")
    widget.engine.value = "step"
    widget.pairs_a.value, widget.pairs_b.value = ihc, he
    widget.device.value = "cpu"
    widget.run_folder.value = run_dir
    started = time.perf_counter()
    widget.train()
    app = napari.qt.get_qapp()
    while widget.worker is None or widget.worker.is_running or not widget.train_button.enabled:
        app.processEvents()
        time.sleep(0.2)
    print(f"{widget.iterations.value} iterations in {time.perf_counter() - started:.0f} s: {widget.status.value}")
    screenshot(viewer, out)
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
