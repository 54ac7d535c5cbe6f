"""The core's errors about the user's images, files, devices and model files, in a module
without torch: front ends catch them (one line, exit status 2) without importing the core."""

from __future__ import annotations


class LayerDataError(ValueError):
    """An image that cannot be fed to the model, and why."""


class ImageFileError(Exception):
    """An image file that cannot be read or written, with the file named."""


class TooManyPixelsError(ImageFileError):
    """An image over the pixel limit, refused from its header before decoding."""


class ModelFileError(Exception):
    """A model file that cannot be used, with the reason and the file named."""


class DeviceError(Exception):
    """A device that was asked for but is not available here."""
