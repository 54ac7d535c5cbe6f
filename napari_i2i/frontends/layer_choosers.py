"""The base of the dock widgets: image-layer choosers that follow the viewer's layers, and
one way of reporting a worker's failure."""

from __future__ import annotations

from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, Label, Select
from napari.layers import Image
from napari.utils.notifications import notification_manager, show_error
from qtpy.QtWidgets import QSizePolicy

from napari_i2i.core.image_metadata import layer_metadata
from napari_i2i.core.layer_data import ImageData, PixelSize

PROGRESS_STEPS = 1000  # resolution of the widgets' progress bars
LIST_HEIGHT = 96  # pixels: room for a few layers; the dock must fit on a laptop screen


class LayerChoosersWidget(Container):
    """A magicgui container whose :meth:`layer_choosers` list the viewer's image layers.

    Adding, removing, reordering or renaming a layer re-lists them, keeping
    what was chosen (magicgui matches list items by text, so without this a
    renamed layer would drop out of a selection).
    """

    # Errors about the user's files, layers and settings, whose message says it all.
    user_errors: tuple[type[Exception], ...] = ()
    status: Label  # the subclass's status line

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer

    def layer_choosers(self) -> list[Select | ComboBox]:
        """The widgets whose choices are :meth:`image_layers`."""
        raise NotImplementedError

    def fit_dock(self) -> None:
        """Once the controls are added: layer lists of a fixed height, a status line that wraps
        (long paths and errors must not widen the dock), spare dock height below the controls."""
        for chooser in self.layer_choosers():
            if isinstance(chooser, Select):
                chooser.native.setFixedHeight(LIST_HEIGHT)
        self.status.native.setWordWrap(True)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.native.layout().addStretch()

    def follow_layers(self) -> None:
        """Re-list the layers whenever the viewer's change; call once the choosers exist."""
        layers = self._viewer.layers
        layers.events.inserted.connect(self._on_layer_inserted)
        layers.events.removed.connect(self._on_layer_removed)
        layers.events.reordered.connect(self.reset_choices)
        for layer in layers:
            layer.events.name.connect(self.reset_choices)

    def image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        """Every Image layer, including one made by dropping a PNG on the viewer."""
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _on_layer_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self.reset_choices)
        self.reset_choices()

    def _on_layer_removed(self, event: Any) -> None:
        event.value.events.name.disconnect(self.reset_choices)
        self.reset_choices()

    def reset_choices(self, *_: Any) -> None:
        """Re-list the layers (napari calls this too when docked), keeping what was chosen."""
        choosers = self.layer_choosers()
        chosen = [chooser.value for chooser in choosers]
        super().reset_choices()
        for chooser, value in zip(choosers, chosen):
            if isinstance(chooser, Select):
                chooser.value = [layer for layer in value if layer in chooser.choices]
            elif value is not None and value in chooser.choices:
                chooser.value = value

    def selected(self, layer_list: Select) -> list[Image]:
        """The layers chosen in *layer_list*, in the viewer's order (so results are predictable)."""
        chosen = layer_list.value
        return [layer for layer in self._viewer.layers if layer in chosen]

    def show_failure(self, error: Exception) -> None:
        """A worker's error: the user's problems read as plain messages; bugs keep their traceback."""
        if isinstance(error, self.user_errors):
            show_error(str(error))
        else:
            notification_manager.receive_error(type(error), error, error.__traceback__)
        self.status.value = f"failed: {error}"


def snapshot(layer: Image) -> ImageData:
    """The layer's pixels (base level of a pyramid, read window by window where it is not in memory),
    how napari displays them, its pixel size, when its units are lengths (napari's default: pixels),
    and its axes (labels, and the spacing of leading axes such as Z) for the stores results go into."""
    unit = str(layer.units[-1])
    return ImageData(
        data=layer.data[0] if layer.multiscale else layer.data,
        name=layer.name,
        rgb=layer.rgb,
        contrast_limits=tuple(layer.contrast_limits),
        pixel_size=None if unit == "pixel" else PixelSize(float(layer.scale[-2]), float(layer.scale[-1]), unit),
        image_metadata=layer_metadata(layer.axis_labels, layer.scale, [str(unit) for unit in layer.units], layer.rgb),
    )
