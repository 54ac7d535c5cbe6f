"""Models shipped inside the package, in ``napari_i2i/bundled/*.safetensors``.

They are ordinary model files (written by :func:`napari_i2i.core.model_file.save_model`,
usually through ``napari-i2i convert``); their chooser name and description
come from the file's metadata. ``napari_i2i/bundled/README.md`` records the
command that made each one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from napari_i2i.core.model_file import ModelFileError, ModelInfo, read_model_info

BUNDLED_DIR = Path(__file__).parents[1] / "bundled"
#: The model the demo and the sample data are made for.
STAIN_MODEL = "stain_munit"


@dataclass(frozen=True)
class BundledModel:
    """A bundled model file and what a model chooser shows for it."""

    key: str  # the file name without .safetensors
    path: Path
    info: ModelInfo

    @property
    def display_name(self) -> str:
        return self.info.display_name or self.key

    @property
    def description(self) -> str:
        return self.info.description or f"{self.info.engine} model {self.path.name}"


def bundled_models(folder: Path | None = None) -> list[BundledModel]:
    """Every readable model in *folder* (default :data:`BUNDLED_DIR`), by file name.

    An unreadable file is skipped with a warning, so one bad file cannot take
    the others (or the widget) down.
    """
    folder = BUNDLED_DIR if folder is None else folder
    models = []
    for path in sorted(folder.glob("*.safetensors")):
        try:
            models.append(BundledModel(path.stem, path, read_model_info(path)))
        except ModelFileError as error:
            warnings.warn(f"napari-i2i: skipping a bundled model: {error}", stacklevel=2)
    return models


def bundled_model(key: str, folder: Path | None = None) -> BundledModel:
    """The bundled model *key* (e.g. ``"stain_munit"``); ModelFileError names those there are."""
    folder = BUNDLED_DIR if folder is None else folder
    models = bundled_models(folder)
    for model in models:
        if model.key == key:
            return model
    there = ", ".join(model.key for model in models) or "none"
    raise ModelFileError(f"no bundled model {key!r} in {folder} (bundled: {there})")
