"""Built-in translation engines, one sub-package per method (pure torch, no Qt).

Each sub-package is a napari-i2i plugin registered through the
``napari_i2i.engines`` entry-point group, exactly like a third-party engine.
"""
