"""FUNIT engine plugin (entry point ``funit`` in ``napari_i2i.engines``)."""

from engines.funit.engine import FunitConditioning, FunitEngine, FunitModel
from napari_i2i import hookimpl


@hookimpl
def i2i_register_engines(registry):
    registry.add(FunitEngine())


__all__ = ["FunitConditioning", "FunitEngine", "FunitModel", "i2i_register_engines"]
