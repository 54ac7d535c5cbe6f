"""The contract: what engines and trainers implement and the host calls.

Hook specifications, the registry that loads plugins, the engine API and the
trainer API. It imports nothing from the rest of napari-i2i, ``engines`` or
``trainers``: everything else points at it.
"""
