"""MUNIT engine plugin (entry point ``munit`` in ``napari_i2i.engines``)."""

from engines.munit.engine import MunitEngine, MunitModel
from napari_i2i import hookimpl


@hookimpl
def i2i_register_engines(registry):
    registry.add(MunitEngine())


__all__ = ["MunitEngine", "MunitModel", "i2i_register_engines"]
