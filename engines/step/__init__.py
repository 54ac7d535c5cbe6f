"""StEP engine plugin (entry point ``step`` in ``napari_i2i.engines``)."""

from engines.step.engine import StepConditioning, StepEngine, StepModel
from napari_i2i import hookimpl


@hookimpl
def i2i_register_engines(registry):
    registry.add(StepEngine())


__all__ = ["StepConditioning", "StepEngine", "StepModel", "i2i_register_engines"]
