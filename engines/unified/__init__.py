"""Unified-style-space engine plugin (entry point ``unified`` in ``napari_i2i.engines``)."""

from engines.unified.engine import UnifiedConditioning, UnifiedEngine, UnifiedModel
from napari_i2i import hookimpl


@hookimpl
def i2i_register_engines(registry):
    registry.add(UnifiedEngine())


__all__ = ["UnifiedConditioning", "UnifiedEngine", "UnifiedModel", "i2i_register_engines"]
