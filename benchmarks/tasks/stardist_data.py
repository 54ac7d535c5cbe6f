"""stardist's sample images as a data source, found without importing stardist.

Importing stardist pulls TensorFlow; only its data files are used. Install it
with ``pip install --no-deps stardist``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .task import MissingData


def stardist_data_file(name: str) -> Path | None:
    """Path of ``stardist/data/images/NAME`` without importing stardist, or None."""
    spec = importlib.util.find_spec("stardist")  # top-level: finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "images" / name
        if path.is_file():
            return path
    return None


def require_stardist_file(name: str, task: str) -> Path:
    path = stardist_data_file(name)
    if path is None:
        raise MissingData(
            f"task {task!r} needs the sample image stardist/data/images/{name} from the "
            "'stardist' package, which is not installed. Install its data files without "
            "TensorFlow: `pip install --no-deps stardist` (only the data is used; stardist "
            "is never imported)."
        )
    return path
