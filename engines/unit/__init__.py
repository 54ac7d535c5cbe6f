"""UNIT engine plugin (entry point ``unit`` in ``napari_i2i.engines``)."""

from engines.unit.engine import UnitEngine, UnitModel
from napari_i2i import hookimpl


@hookimpl
def i2i_register_engines(registry):
    registry.add(UnitEngine())


__all__ = ["UnitEngine", "UnitModel", "i2i_register_engines"]
