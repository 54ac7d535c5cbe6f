"""napari-i2i: image-to-image translation for napari.

Importing this package is cheap (no torch, no Qt): plugins only need
:data:`hookimpl`; everything else lives in its submodule.
"""

from napari_i2i.contract.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
